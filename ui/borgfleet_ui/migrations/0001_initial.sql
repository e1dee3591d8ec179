-- BorgFleet service schema, version 1. Times are UTC.
CREATE TABLE users (
  id INT AUTO_INCREMENT PRIMARY KEY,
  username VARCHAR(64) NOT NULL UNIQUE,
  password_hash VARCHAR(255) NOT NULL,
  role ENUM('admin','operator','viewer') NOT NULL,
  disabled TINYINT(1) NOT NULL DEFAULT 0,
  created_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP()
) ENGINE=InnoDB;

CREATE TABLE api_tokens (
  id INT AUTO_INCREMENT PRIMARY KEY,
  user_id INT NOT NULL,
  name VARCHAR(100) NOT NULL,
  token_hash CHAR(64) NOT NULL UNIQUE,
  created_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP(),
  last_used_at DATETIME NULL,
  FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE settings (
  name VARCHAR(64) PRIMARY KEY,
  value TEXT NOT NULL
) ENGINE=InnoDB;
INSERT INTO settings (name, value) VALUES ('app_name', 'BorgFleet'), ('stats_interval_minutes', '15');

CREATE TABLE servers (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) NOT NULL UNIQUE,
  role ENUM('client','backup_server') NOT NULL,
  address VARCHAR(255) NOT NULL,
  port INT NOT NULL DEFAULT 22,
  ssh_user VARCHAR(64) NOT NULL DEFAULT 'root',
  connection ENUM('ssh','local') NOT NULL DEFAULT 'ssh',
  backup_server_id INT NULL,
  local_pool_path VARCHAR(1024) NULL,
  vars_json TEXT NULL,
  setup_status VARCHAR(20) NULL,
  setup_at DATETIME NULL,
  created_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP(),
  KEY ix_servers_role (role, name),
  FOREIGN KEY (backup_server_id) REFERENCES servers(id) ON DELETE RESTRICT
) ENGINE=InnoDB;

CREATE TABLE storage_pools (
  id INT AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL,
  name VARCHAR(64) NOT NULL,
  path VARCHAR(1024) NOT NULL,
  created_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP(),
  UNIQUE KEY uq_pool (server_id, name),
  FOREIGN KEY (server_id) REFERENCES servers(id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE backup_jobs (
  id INT AUTO_INCREMENT PRIMARY KEY,
  client_id INT NOT NULL,
  name VARCHAR(64) NOT NULL,
  paths_json TEXT NOT NULL,
  exclude_json TEXT NOT NULL,
  compression VARCHAR(32) NOT NULL DEFAULT 'lz4',
  passphrase VARCHAR(1024) NOT NULL,
  retention_json TEXT NULL,
  pool_id INT NULL,
  schedule VARCHAR(100) NULL,
  timezone VARCHAR(64) NOT NULL DEFAULT 'UTC',
  enabled TINYINT(1) NOT NULL DEFAULT 1,
  next_run_at DATETIME NULL,
  last_run_at DATETIME NULL,
  created_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP(),
  UNIQUE KEY uq_backup (client_id, name),
  KEY ix_backup_due (enabled, next_run_at),
  FOREIGN KEY (client_id) REFERENCES servers(id) ON DELETE CASCADE,
  FOREIGN KEY (pool_id) REFERENCES storage_pools(id) ON DELETE RESTRICT
) ENGINE=InnoDB;

CREATE TABLE repositories (
  id INT AUTO_INCREMENT PRIMARY KEY,
  backup_job_id INT NOT NULL UNIQUE,
  client_id INT NOT NULL,
  server_id INT NULL,
  location VARCHAR(2048) NOT NULL,
  created_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP(),
  FOREIGN KEY (backup_job_id) REFERENCES backup_jobs(id) ON DELETE CASCADE,
  FOREIGN KEY (client_id) REFERENCES servers(id) ON DELETE CASCADE,
  FOREIGN KEY (server_id) REFERENCES servers(id) ON DELETE RESTRICT
) ENGINE=InnoDB;

CREATE TABLE archives (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  repository_id INT NOT NULL,
  name VARCHAR(255) NOT NULL,
  borg_id CHAR(64) NULL,
  start_at DATETIME NULL,
  end_at DATETIME NULL,
  duration DOUBLE NULL,
  nfiles BIGINT NULL,
  original_size BIGINT NULL,
  compressed_size BIGINT NULL,
  deduplicated_size BIGINT NULL,
  created_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP(),
  UNIQUE KEY uq_archive (repository_id, name),
  KEY ix_archives_list (id),
  KEY ix_archives_repo_start (repository_id, start_at),
  FOREIGN KEY (repository_id) REFERENCES repositories(id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE jobs (
  id CHAR(36) PRIMARY KEY,
  seq BIGINT AUTO_INCREMENT UNIQUE,
  kind VARCHAR(32) NOT NULL,
  status ENUM('queued','waiting','running','succeeded','failed','abandoned','canceled','missed') NOT NULL,
  server_id INT NULL,
  backup_job_id INT NULL,
  archive_id BIGINT NULL,
  params_json TEXT NULL,
  created_by VARCHAR(64) NULL,
  created_at DATETIME(3) NOT NULL DEFAULT UTC_TIMESTAMP(3),
  started_at DATETIME(3) NULL,
  finished_at DATETIME(3) NULL,
  worker VARCHAR(255) NULL,
  rc INT NULL,
  error TEXT NULL,
  result_json TEXT NULL,
  KEY ix_jobs_status (status, seq),
  KEY ix_jobs_backup (backup_job_id, seq),
  KEY ix_jobs_server (server_id, seq)
) ENGINE=InnoDB;

CREATE TABLE job_log (
  job_id CHAR(36) NOT NULL,
  n INT NOT NULL,
  line MEDIUMTEXT NOT NULL,
  PRIMARY KEY (job_id, n),
  FOREIGN KEY (job_id) REFERENCES jobs(id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE server_stats (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL,
  collected_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP(),
  data_json TEXT NOT NULL,
  KEY ix_stats_server (server_id, collected_at),
  FOREIGN KEY (server_id) REFERENCES servers(id) ON DELETE CASCADE
) ENGINE=InnoDB;
