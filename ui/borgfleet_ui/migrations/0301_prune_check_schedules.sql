-- Retention applied by the service (prune.yml: on prune_schedule, or after each successful backup
-- when it is NULL) and repository checks (check.yml) on their own schedule, with their options.
ALTER TABLE backup_jobs
  ADD COLUMN prune_schedule VARCHAR(100) NULL AFTER verify_schedule,
  ADD COLUMN prune_next_run_at DATETIME NULL AFTER verify_last_run_at,
  ADD COLUMN prune_last_run_at DATETIME NULL AFTER prune_next_run_at,
  ADD COLUMN check_schedule VARCHAR(100) NULL AFTER prune_schedule,
  ADD COLUMN check_scope VARCHAR(16) NOT NULL DEFAULT 'all' AFTER check_schedule,
  ADD COLUMN check_verify_data TINYINT(1) NOT NULL DEFAULT 0 AFTER check_scope,
  ADD COLUMN check_next_run_at DATETIME NULL AFTER prune_last_run_at,
  ADD COLUMN check_last_run_at DATETIME NULL AFTER check_next_run_at,
  ADD KEY ix_prune_due (enabled, prune_next_run_at),
  ADD KEY ix_check_due (enabled, check_next_run_at);
