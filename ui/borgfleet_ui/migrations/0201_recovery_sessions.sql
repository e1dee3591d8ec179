-- Instant recovery sessions as the hosts last reported them (the instant_recovery module's
-- `session`/`sessions`): written by the recovery job kinds (kinds.py), read by the sessions page.
-- A session belongs to the host running it; backup job and archive are set when the service
-- knows them (a session started from the command line of a repository it does not hold has neither).
CREATE TABLE recovery_sessions (
  id INT AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL,
  name VARCHAR(64) NOT NULL,
  backup_job_id INT NULL,
  archive_id BIGINT NULL,
  archive VARCHAR(255) NULL,
  repository VARCHAR(2048) NULL,
  engine VARCHAR(32) NULL,
  address VARCHAR(64) NULL,
  port INT NULL,
  socket_dir VARCHAR(255) NULL,
  datadir VARCHAR(1024) NULL,
  state VARCHAR(32) NULL,
  pid INT NULL,
  started_at DATETIME NULL,
  layer_bytes BIGINT NULL,
  health_json TEXT NULL,
  checked_at DATETIME(3) NOT NULL,
  UNIQUE KEY uq_recovery_session (server_id, name),
  FOREIGN KEY (server_id) REFERENCES servers(id) ON DELETE CASCADE,
  FOREIGN KEY (backup_job_id) REFERENCES backup_jobs(id) ON DELETE SET NULL,
  FOREIGN KEY (archive_id) REFERENCES archives(id) ON DELETE SET NULL
) ENGINE=InnoDB;
