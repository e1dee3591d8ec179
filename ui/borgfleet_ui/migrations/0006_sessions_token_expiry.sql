-- Login sessions kept server-side (the cookie holds only a random id): logout, a password
-- change or disabling the user deletes the rows, so an old cookie opens nothing.
CREATE TABLE user_sessions (
  id INT AUTO_INCREMENT PRIMARY KEY,
  user_id INT NOT NULL,
  sid_hash CHAR(64) NOT NULL UNIQUE,
  created_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP(),
  expires_at DATETIME NOT NULL,
  KEY ix_user_sessions_expiry (expires_at),
  FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- API tokens may expire (NULL: never).
ALTER TABLE api_tokens ADD COLUMN expires_at DATETIME NULL;
