-- What detect_capabilities.yml found on each server (databases, their storage and logins, Redis,
-- Docker, LVM/btrfs), the newest detection only, with its date.
CREATE TABLE server_capabilities (
  server_id INT NOT NULL PRIMARY KEY,
  detected_at DATETIME NOT NULL,
  data_json MEDIUMTEXT NOT NULL,
  FOREIGN KEY (server_id) REFERENCES servers(id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- server_stats grows by a row per server per stats interval: the recorder thins it (every sample of
-- the last two days, one an hour for a month, one a day for a year), so the history charts read a
-- few hundred rows a server.
ALTER TABLE server_stats MODIFY data_json MEDIUMTEXT NOT NULL;
