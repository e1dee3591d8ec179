-- Each backup job's newest figures, for /metrics (fleet/metrics.py): the end of its newest succeeded
-- backup run, the status of its newest finished backup run and its repository's newest archive's
-- duration and sizes. Computed afresh where jobs end and archives are written (backup_latest.py, whose
-- statement this backfill repeats once), so a scrape reads one row a backup job instead of three index
-- dives into jobs and archives for each of thousands (~150 ms at 5,000 backup jobs).
CREATE TABLE backup_job_latest (
  backup_job_id INT PRIMARY KEY,
  success_at DATETIME(3) NULL,
  status ENUM('succeeded','failed','abandoned','canceled','missed') NULL,
  duration DOUBLE NULL,
  original_size BIGINT NULL,
  deduplicated_size BIGINT NULL,
  FOREIGN KEY (backup_job_id) REFERENCES backup_jobs(id) ON DELETE CASCADE
) ENGINE=InnoDB;
INSERT INTO backup_job_latest (backup_job_id, success_at, status, duration, original_size, deduplicated_size)
  SELECT x.id, x.success_at, x.status, a.duration, a.original_size, a.deduplicated_size FROM (SELECT bj.id,
  (SELECT j.finished_at FROM jobs j WHERE j.backup_job_id=bj.id AND j.kind='backup' AND j.status='succeeded'
   AND j.finished_at IS NOT NULL ORDER BY j.finished_at DESC LIMIT 1) AS success_at,
  (SELECT j.status FROM jobs j FORCE INDEX (ix_jobs_backup_newest) WHERE j.backup_job_id=bj.id
   AND j.kind='backup' AND j.status IN ('succeeded','failed','abandoned','canceled','missed')
   ORDER BY j.seq DESC LIMIT 1) AS status,
  (SELECT a.id FROM repositories r JOIN archives a ON a.repository_id=r.id WHERE r.backup_job_id=bj.id
   AND a.start_at IS NOT NULL ORDER BY a.start_at DESC, a.id DESC LIMIT 1) AS newest
  FROM backup_jobs bj) x LEFT JOIN archives a ON a.id=x.newest;
