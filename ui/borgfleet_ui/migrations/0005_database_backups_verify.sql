-- Database backups (`databases` of the inventory contract: one database per backup, no paths) and
-- their verification schedule (verify.yml: start the newest archive, query it, tear it down).
ALTER TABLE backup_jobs
  ADD COLUMN databases_json TEXT NULL AFTER exclude_json,
  ADD COLUMN verify_schedule VARCHAR(100) NULL AFTER timezone,
  ADD COLUMN verify_next_run_at DATETIME NULL AFTER last_run_at,
  ADD COLUMN verify_last_run_at DATETIME NULL AFTER verify_next_run_at,
  ADD KEY ix_verify_due (enabled, verify_next_run_at);
