-- Job-log retention (fleet/runs.py purge_job_logs): the log lines of a finished job older than the
-- setting job_log_retention_days are deleted and the job marked, so a purge never scans them again.
ALTER TABLE jobs ADD COLUMN log_purged_at DATETIME NULL,
  ADD KEY ix_jobs_log_purge (log_purged_at, finished_at);
INSERT IGNORE INTO settings (name, value) VALUES ('job_log_retention_days', '90');
