-- A backup job's newest finished backup run (/metrics, fleet/metrics.py BACKUPS_SQL) read newest
-- first from an index that also holds the status: one short walk a backup job instead of grouping
-- the whole history of every job. The count by kind and status of /metrics reads the narrowest
-- index that has both (the wider one of 0953 served the grouping this replaces).
ALTER TABLE jobs ADD KEY ix_jobs_backup_newest (backup_job_id, kind, seq, status),
  DROP KEY ix_jobs_kind_status, ADD KEY ix_jobs_kind_status (kind, status);
