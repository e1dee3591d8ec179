-- Passphrases are stored encrypted ('bf1:' + Fernet token, secret_store.py): a 1024-character
-- passphrase takes about 1,470 characters. `db upgrade` encrypts plain-text rows after this.
ALTER TABLE backup_jobs MODIFY passphrase TEXT NOT NULL;
