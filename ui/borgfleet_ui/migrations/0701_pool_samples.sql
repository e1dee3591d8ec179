-- Storage pool usage over time (analyze_pools.yml, run with the stats schedule): numbers only, so a
-- year of samples of many pools stays small (older samples are thinned to one a day by the recorder);
-- the newest analysis of each pool, with its repositories, is kept whole in pool_latest.
CREATE TABLE pool_samples (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  server_id INT NOT NULL,
  pool_name VARCHAR(64) NOT NULL,
  sampled_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP(),
  total_bytes BIGINT NULL,
  used_bytes BIGINT NULL,
  free_bytes BIGINT NULL,
  repositories_size_bytes BIGINT NULL,
  KEY ix_pool_samples (server_id, pool_name, sampled_at),
  FOREIGN KEY (server_id) REFERENCES servers(id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE pool_latest (
  server_id INT NOT NULL,
  pool_name VARCHAR(64) NOT NULL,
  sampled_at DATETIME NOT NULL,
  warn_percent INT NOT NULL,
  data_json MEDIUMTEXT NOT NULL,
  PRIMARY KEY (server_id, pool_name),
  FOREIGN KEY (server_id) REFERENCES servers(id) ON DELETE CASCADE
) ENGINE=InnoDB;
