-- The archives list's client and server sorts (fleet/archives.py LISTING) read from an index: the
-- names they sort by live in other tables, so each archive row carries its own copy, written with
-- the row (results.upsert_archive) and refreshed when a server is renamed (fleet/archives.py
-- OWNER_KEYS holds the expressions; this backfill repeats them once). Without it a page of
-- 1,000,000 archives by client sorted the whole joined table (seconds).
ALTER TABLE archives
  ADD COLUMN sort_client VARCHAR(129) NOT NULL DEFAULT '',
  ADD COLUMN sort_server VARCHAR(64) NOT NULL DEFAULT '';
UPDATE archives a JOIN repositories r ON r.id=a.repository_id JOIN backup_jobs b ON b.id=r.backup_job_id
  JOIN servers c ON c.id=r.client_id LEFT JOIN servers s ON s.id=r.server_id
  SET a.sort_client=CONCAT(c.name, '/', b.name), a.sort_server=COALESCE(s.name, 'local');
ALTER TABLE archives
  ADD KEY ix_archives_sort_client (sort_client),
  ADD KEY ix_archives_sort_server (sort_server);
