-- When the playbook itself started (its first event): queue latency = this - created_at.
ALTER TABLE jobs ADD COLUMN playbook_started_at DATETIME(3) NULL AFTER started_at;
