-- The archive index (fleet/archive_index.py): every item of an archive, loaded once from the
-- index_archive job's `borg list --json-lines`, so that a level or a path's versions are a few
-- indexed reads instead of a borg run.
--
-- A tree of directory listings addressed by content (a Merkle tree): a listing is the sorted entries
-- of one directory, a subdirectory's entry points at its own listing (child_id), and a listing's
-- digest covers its entries and, through child digests, everything below. Listings are shared by
-- every archive of a repository holding that same directory: a new archive adds rows only for the
-- directories that changed (and their parents), so 100 archives of a 300,000-file tree cost about
-- one tree plus the changes. Listings no archive reaches any more are removed after archives go
-- (archive_index.collect_garbage), under the repository's index lock (GET_LOCK).
CREATE TABLE index_listings (
  id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  repository_id INT NOT NULL,
  digest BINARY(16) NOT NULL,
  entries INT UNSIGNED NOT NULL,
  UNIQUE KEY uq_index_listing (repository_id, digest),
  FOREIGN KEY (repository_id) REFERENCES repositories(id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- One row per entry of a listing, in the order a page shows them (directories first, then by name):
-- a page of a large directory is one range of the primary key. user/grp are borg's names (or ids
-- as text); linktarget NULL for anything but a link; mode, user, grp, size, mtime NULL for the
-- implied parents of a backed-up path (borg stores no item for them).
CREATE TABLE index_entries (
  listing_id INT UNSIGNED NOT NULL,
  pos INT UNSIGNED NOT NULL,
  name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  type CHAR(1) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  mode VARCHAR(10) CHARACTER SET ascii COLLATE ascii_bin NULL,
  user VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  grp VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  size BIGINT UNSIGNED NULL,
  mtime DATETIME(6) NULL,
  linktarget TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  child_id INT UNSIGNED NULL,
  PRIMARY KEY (listing_id, pos),
  KEY ix_index_entry_name (listing_id, name),
  -- The garbage collector's walk reads only this index.
  KEY ix_index_entry_child (listing_id, child_id),
  FOREIGN KEY (listing_id) REFERENCES index_listings(id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- An indexed archive: its top listing. Removed with the archive row (delete_archive, prune,
-- refresh-archives, backup job deletion all delete that row).
CREATE TABLE index_archives (
  archive_id BIGINT PRIMARY KEY,
  root_id INT UNSIGNED NOT NULL,
  items INT UNSIGNED NOT NULL,
  dirs INT UNSIGNED NOT NULL,
  new_listings INT UNSIGNED NOT NULL,
  seconds DOUBLE NOT NULL,
  indexed_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP(),
  FOREIGN KEY (archive_id) REFERENCES archives(id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- The pages look for an archive's pending index job.
ALTER TABLE jobs ADD KEY ix_jobs_archive (archive_id, seq);
