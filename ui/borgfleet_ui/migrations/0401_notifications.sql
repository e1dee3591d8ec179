-- Notifications (notifications/): mail over SMTP and a signed webhook for failed/abandoned runs and
-- their recovery, and digests. One settings row; secrets (smtp_password, webhook_secret) are
-- encrypted like passphrases (secret_store.py, `bf1:` tokens), NULL when not set.
CREATE TABLE notification_settings (
  id INT PRIMARY KEY,
  smtp_host VARCHAR(255) NOT NULL DEFAULT '',
  smtp_port INT NOT NULL DEFAULT 25,
  smtp_security ENUM('none','starttls','tls') NOT NULL DEFAULT 'starttls',
  smtp_user VARCHAR(255) NOT NULL DEFAULT '',
  smtp_password VARCHAR(1024) NULL,
  smtp_sender VARCHAR(255) NOT NULL DEFAULT '',
  base_url VARCHAR(255) NOT NULL DEFAULT '',
  webhook_url VARCHAR(1024) NOT NULL DEFAULT '',
  webhook_secret VARCHAR(1024) NULL,
  digest_frequency ENUM('off','daily','weekly') NOT NULL DEFAULT 'off',
  digest_time CHAR(5) NOT NULL DEFAULT '08:00',
  digest_weekday TINYINT NOT NULL DEFAULT 0,
  digest_timezone VARCHAR(64) NOT NULL DEFAULT 'UTC',
  -- A scheduled backup with no success by its next due time after the last one plus this many
  -- minutes is stale (0: never).
  stale_margin_minutes INT NOT NULL DEFAULT 120,
  -- The due time (UTC) of the last digest queued: claimed by compare-and-set, so it is sent once.
  digest_last_due DATETIME NULL
) ENGINE=InnoDB;
INSERT INTO notification_settings (id) VALUES (1);

-- What each user wants by mail: events (JSON list of failure, recovery, stale, digest) and backup jobs
-- (JSON list of ids; NULL: all of them).
CREATE TABLE notification_subscriptions (
  user_id INT PRIMARY KEY,
  email VARCHAR(255) NOT NULL,
  events_json VARCHAR(255) NOT NULL,
  backup_job_ids_json TEXT NULL,
  enabled TINYINT(1) NOT NULL DEFAULT 1,
  FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- One row per incident: a kind (backup, prune, check, verify) of a backup job failing from its
-- first failure until its next success, or a backup job gone stale (kind 'stale': no job of its own,
-- closed by the next successful backup). is_open is 1 while open and NULL once closed, so the
-- unique key allows one open incident per backup job and kind (INSERT IGNORE opens it once).
CREATE TABLE notification_incidents (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  backup_job_id INT NOT NULL,
  kind VARCHAR(32) NOT NULL,
  is_open TINYINT(1) NULL DEFAULT 1,
  first_job_id CHAR(36) NULL,
  last_job_id CHAR(36) NULL,
  failures INT NOT NULL DEFAULT 1,
  opened_at DATETIME(3) NOT NULL DEFAULT UTC_TIMESTAMP(3),
  closed_job_id CHAR(36) NULL,
  closed_at DATETIME(3) NULL,
  UNIQUE KEY uq_open_incident (backup_job_id, kind, is_open),
  KEY ix_incident_job (backup_job_id, id),
  FOREIGN KEY (backup_job_id) REFERENCES backup_jobs(id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- A healthchecks-style ping URL per backup job: POSTed to <url>/start when a backup starts running,
-- <url> when it succeeds, <url>/fail when it fails or is abandoned.
CREATE TABLE notification_pings (
  backup_job_id INT PRIMARY KEY,
  url VARCHAR(1024) NOT NULL,
  FOREIGN KEY (backup_job_id) REFERENCES backup_jobs(id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- Each message to send (one recipient, the webhook or a ping), sent by a queued job with retries.
CREATE TABLE notification_deliveries (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  event VARCHAR(32) NOT NULL,
  channel ENUM('email','webhook','ping') NOT NULL,
  recipient VARCHAR(1024) NOT NULL,
  job_id CHAR(36) NULL,
  incident_id BIGINT NULL,
  backup_job_id INT NULL,
  period_start DATETIME(3) NULL,
  period_end DATETIME(3) NULL,
  status ENUM('queued','retrying','sent','failed') NOT NULL DEFAULT 'queued',
  attempts INT NOT NULL DEFAULT 0,
  error TEXT NULL,
  created_at DATETIME(3) NOT NULL DEFAULT UTC_TIMESTAMP(3),
  sent_at DATETIME(3) NULL,
  KEY ix_delivery_job (job_id),
  KEY ix_delivery_status (status, id)
) ENGINE=InnoDB;
