-- Notifications beyond backup jobs (notifications/alerts.py): a pool above its threshold or forecast
-- full, a server's disk/RAM/CPU above its threshold are incidents too, keyed by server and subject
-- (the pool's name; disk, memory or cpu) instead of a backup job. backup_job_id is NULL for them, so
-- the old unique key does not apply; the new one allows one open incident per kind, server and subject
-- (server_id is NULL for backup job incidents, so it does not apply to those).
ALTER TABLE notification_incidents
  MODIFY backup_job_id INT NULL,
  ADD COLUMN server_id INT NULL,
  ADD COLUMN subject VARCHAR(255) NULL,
  ADD UNIQUE KEY uq_open_alert (kind, server_id, subject, is_open),
  ADD CONSTRAINT fk_incident_server FOREIGN KEY (server_id) REFERENCES servers(id) ON DELETE CASCADE;

-- What a message said when it was queued (figures of a pool or server, a session's name and place):
-- the rows it describes may be gone when it is sent (a removed session). Names and figures only.
ALTER TABLE notification_deliveries ADD COLUMN server_id INT NULL, ADD COLUMN detail_json TEXT NULL;

-- Thresholds: a pool forecast full within this many days (0: off) is reported like one above its
-- warning threshold (settings.pool_warn_percent); a server's disk (any filesystem), memory or CPU at
-- or above these percentages in two consecutive samples (0: off).
ALTER TABLE notification_settings
  ADD COLUMN pool_full_days INT NOT NULL DEFAULT 14,
  ADD COLUMN server_disk_percent INT NOT NULL DEFAULT 90,
  ADD COLUMN server_memory_percent INT NOT NULL DEFAULT 95,
  ADD COLUMN server_cpu_percent INT NOT NULL DEFAULT 95;
