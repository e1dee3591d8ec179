-- A backup job's newest run and newest success (fleet/backup_jobs.py health, /metrics) read from an
-- index that covers them, and the count by kind and status of /metrics from an index alone: with
-- 200,000 jobs both read the whole table otherwise.
ALTER TABLE jobs
  ADD KEY ix_jobs_backup_kind (backup_job_id, kind, status, finished_at, seq),
  ADD KEY ix_jobs_kind_status (kind, status, backup_job_id, seq);
