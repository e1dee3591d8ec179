-- The archives list sorts by these (fleet/archives.py LISTING): indexed, a page of 1,000,000
-- archives in any order is read from an index instead of sorting the whole table. The COALESCEs are
-- the listing's own (a missing value sorts last, and a keyset cursor still compares).
ALTER TABLE archives
  ADD COLUMN sort_start DATETIME AS (COALESCE(start_at, TIMESTAMP'1000-01-01 00:00:00')) VIRTUAL,
  ADD COLUMN sort_files BIGINT AS (COALESCE(nfiles, -1)) VIRTUAL,
  ADD COLUMN sort_original BIGINT AS (COALESCE(original_size, -1)) VIRTUAL,
  ADD COLUMN sort_deduplicated BIGINT AS (COALESCE(deduplicated_size, -1)) VIRTUAL,
  ADD KEY ix_archives_name (name),
  ADD KEY ix_archives_sort_start (sort_start),
  ADD KEY ix_archives_sort_files (sort_files),
  ADD KEY ix_archives_sort_original (sort_original),
  ADD KEY ix_archives_sort_deduplicated (sort_deduplicated);
