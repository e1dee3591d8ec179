-- A backup job's newest finished backup run (/metrics, fleet/metrics.py BACKUPS_SQL) read newest
-- first from an index that also holds the status: one short walk a backup job instead of grouping
-- the whole history of every job.
ALTER TABLE jobs ADD KEY ix_jobs_backup_newest (backup_job_id, kind, seq, status);
