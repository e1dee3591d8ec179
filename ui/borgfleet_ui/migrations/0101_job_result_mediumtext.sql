-- A browse job's result holds a directory listing (up to 1000 entries) and a restore's the files
-- written: more than TEXT's 64 KiB.
ALTER TABLE jobs MODIFY result_json MEDIUMTEXT NULL;
