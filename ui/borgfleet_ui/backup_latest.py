"""Each backup job's newest figures, kept in the backup_job_latest table (migration 0964) so that
/metrics (fleet/metrics.py) reads one row a backup job instead of searching 5,000 histories at each
scrape: the end of its newest succeeded backup run, the status of its newest finished backup run (by
seq, as the jobs list orders runs), and duration and sizes of its repository's newest archive (by
start time, then id).

The row is computed afresh from jobs and archives, never adjusted by a difference, wherever those
change: a job's end (queue.finish, and create_job_rows for rows born final) and a recorder's archive
writes (results.py). It is one statement, INSERT ... SELECT: InnoDB reads its source rows as locking
reads (the newest committed ones) and the row it writes stays locked until it commits, so of two
refreshes of one backup job at once the later one sees what the earlier one saw and more.
"""
import logging

import pymysql

from .db import execute
from .queue import FINAL

log = logging.getLogger(__name__)

# The newest figures of the backup jobs that `x` selects (as `bj`): one index dive each
# (ix_jobs_backup_kind, ix_jobs_backup_newest of migration 0962, ix_archives_repo_start). Migration 0964
# repeats it once for its backfill. The optimizer would rather read the newest finished run through
# ix_jobs_backup_kind and sort the job's whole history, hence FORCE INDEX.
_REFRESH = (
    "INSERT INTO backup_job_latest (backup_job_id, success_at, status, duration, original_size, deduplicated_size)"
    " SELECT x.id, x.success_at, x.status, a.duration, a.original_size, a.deduplicated_size FROM (SELECT bj.id,"
    " (SELECT j.finished_at FROM jobs j WHERE j.backup_job_id=bj.id AND j.kind='backup' AND j.status='succeeded'"
    "  AND j.finished_at IS NOT NULL ORDER BY j.finished_at DESC LIMIT 1) AS success_at,"
    " (SELECT j.status FROM jobs j FORCE INDEX (ix_jobs_backup_newest) WHERE j.backup_job_id=bj.id"
    "  AND j.kind='backup' AND j.status IN %(final)s ORDER BY j.seq DESC LIMIT 1) AS status,"
    " (SELECT a.id FROM repositories r JOIN archives a ON a.repository_id=r.id WHERE r.backup_job_id=bj.id"
    "  AND a.start_at IS NOT NULL ORDER BY a.start_at DESC, a.id DESC LIMIT 1) AS newest"
    " FROM backup_jobs bj WHERE bj.id IN ({which})) x LEFT JOIN archives a ON a.id=x.newest"
    " ON DUPLICATE KEY UPDATE success_at=VALUES(success_at), status=VALUES(status), duration=VALUES(duration),"
    " original_size=VALUES(original_size), deduplicated_size=VALUES(deduplicated_size)")
_OF_JOBS = _REFRESH.format(which="SELECT backup_job_id FROM jobs WHERE id IN %(ids)s AND kind='backup'")
_OF_REPOSITORY = _REFRESH.format(which="SELECT backup_job_id FROM repositories WHERE id=%(ids)s")
_ALL = _REFRESH.format(which="SELECT id FROM backup_jobs")

DEADLOCK = 1213   # MariaDB ER_LOCK_DEADLOCK: the statement was rolled back, running it again is safe


def _refresh(db, sql, ids):
    args = {"final": FINAL, "ids": ids}
    try:
        try:
            execute(db, sql, args)
        except pymysql.err.OperationalError as e:
            if e.args[0] != DEADLOCK:
                raise
            execute(db, sql, args)
    except pymysql.err.Error as e:
        # What happened is recorded; a later refresh of the backup job puts its figures right.
        log.error("newest figures of backup jobs (%s) not refreshed: %s", ids, e)


def jobs_ended(db, job_ids):
    """These jobs just became final: the backup jobs of those that are backup runs."""
    if job_ids:
        _refresh(db, _OF_JOBS, tuple(job_ids))


def archives_changed(db, repository_id):
    """The archive rows of this repository were written or deleted."""
    _refresh(db, _OF_REPOSITORY, repository_id)


def refresh_all(db):
    """Every backup job's row afresh, as migration 0964 did once: for rows loaded around the service
    (bench/scale's seed)."""
    execute(db, _ALL, {"final": FINAL})
