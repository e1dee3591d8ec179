"""The web/scheduler side of the queue: enqueueing, repository locks, heartbeats, job logs.

What each job kind is (playbook, queue, budget, retry, lock) is in kinds.py. Jobs are enqueued
by dotted path so this side never imports worker code. A job's row in `jobs` is keyed by its
RQ job id and written before the RQ job exists.
"""
import json
import logging
import os
import uuid

import pymysql
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from .contract import contract
from .db import execute, query, retrying
from .kinds import KINDS, queue_order

log = logging.getLogger("borgfleet.queue")

FINAL = ("succeeded", "failed", "abandoned", "canceled", "missed")
STATUSES = ("queued", "waiting", "running") + FINAL
# After a playbook is stopped (cancel, timeout) borg on the hosts gets SIGINT, then SIGKILL after
# the collection's BORG_STOP_GRACE seconds; the worker keeps the repository locked until that is
# over, plus a margin for noticing the playbook gone.
STOP_HOLD = contract.BORG_STOP_GRACE + 10
# RQ kills a work horse past its job_timeout: that must never happen to a running playbook, so
# RQ's timeout is the job's budget plus the stop hold plus time to record the outcome.
RQ_MARGIN = STOP_HOLD + 120


def rq_timeout(kind):
    return KINDS[kind].timeout + RQ_MARGIN


# A running job refreshes its heartbeat every TTL/3 s; without one for TTL s it is abandoned.
HEARTBEAT_TTL = int(os.environ.get("BORGFLEET_HEARTBEAT_TTL", "30"))


# Jobs are stored in Redis as JSON, never pickle: whoever can write to Redis must not be able to run
# code in a worker. Every Queue, Worker and Job.fetch of the service passes this serializer.
SERIALIZER = JSONSerializer


def queue_name(kind):
    return KINDS[kind].queue


# Notifications are not a job kind (no playbook): their queue comes first, it holds only quick sends.
NOTIFY_QUEUE = "borgfleet-notify"


def queue_names():
    """Every queue of the service, in the order workers take them."""
    return [NOTIFY_QUEUE] + queue_order()


def queues(r):
    return [Queue(name, connection=r, serializer=SERIALIZER) for name in queue_names()]


def create_job(db, r, kind, params=None, server_id=None, backup_job_id=None, archive_id=None,
               user=None, repository=None):
    """Insert the job row and enqueue it; returns the job id. repository (client/backup) names
    the repository lock, taken by the worker when the kind takes one (kinds.py)."""
    return create_jobs(db, r, kind, [dict(params=params, server_id=server_id, backup_job_id=backup_job_id,
                                          archive_id=archive_id, user=user, repository=repository)])[0]


# Rows per INSERT and RQ jobs per Redis pipeline in create_jobs (a bounded statement and reply).
BATCH = 500


def create_jobs(db, r, kind, runs):
    """create_job for many runs of one kind (dicts of create_job's keyword arguments), in batches:
    one multi-row INSERT of the rows, then one Redis pipeline (MULTI/EXEC) enqueueing their RQ jobs.
    Returns the job ids in the order of `runs`. As for one job, every row exists before its RQ job;
    a batch whose enqueue fails has all its rows marked failed (a worker skips a failed row, so an
    RQ job that did land despite the error runs nothing) and the error is raised."""
    spec = KINDS[kind]
    rows = []
    for run in runs:
        params = dict(run.get("params") or {})
        if spec.locks_repository:
            if not run.get("repository"):
                raise ValueError(f"a {kind} job needs the repository it locks")
            params["lock"] = run["repository"]
        rows.append(dict(kind=kind, params=params, **{k: run.get(k) for k in
                                                      ("server_id", "backup_job_id", "archive_id", "user")}))
    queue = Queue(spec.queue, connection=r, serializer=SERIALIZER)
    ids = []
    for i in range(0, len(rows), BATCH):
        batch = create_job_rows(db, rows[i:i + BATCH])
        try:
            pipe = r.pipeline()
            pipe.sadd(Queue.redis_queues_keys, queue.key)   # as Queue.enqueue registers its queue
            queue.enqueue_many([Queue.prepare_data(
                "borgfleet_ui.jobs.run_job", (job_id,), job_id=job_id, timeout=rq_timeout(kind),
                retry=Retry(max=2, interval=[10, 60]) if spec.retry else None,
                result_ttl=86400, failure_ttl=7 * 86400) for job_id in batch], pipeline=pipe)
            pipe.execute()
        except Exception as e:
            for job_id in batch:
                finish(db, job_id, "failed", error=f"could not enqueue: {e}", r=r)
            raise
        ids += batch
    return ids


def create_job_row(db, kind, server_id=None, backup_job_id=None, archive_id=None, params=None, user=None,
                   status="queued", error=None):
    return create_job_rows(db, [dict(kind=kind, server_id=server_id, backup_job_id=backup_job_id,
                                     archive_id=archive_id, params=params, user=user, status=status,
                                     error=error)])[0]


def create_job_rows(db, rows):
    """Insert job rows (dicts of create_job_row's arguments) in one statement; returns their ids."""
    ids = [str(uuid.uuid4()) for _ in rows]
    values = []
    for job_id, row in zip(ids, rows):
        status = row.get("status", "queued")
        values += [job_id, row["kind"], status, row.get("server_id"), row.get("backup_job_id"),
                   row.get("archive_id"), json.dumps(row.get("params") or {}), row.get("user"), row.get("error"),
                   status]
    execute(db, "INSERT INTO jobs (id, kind, status, server_id, backup_job_id, archive_id, params_json,"
                " created_by, error, finished_at) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, IF(%s = 'queued', NULL, UTC_TIMESTAMP(3)))"]
                            * len(rows)), values)
    ended = [job_id for job_id, row in zip(ids, rows) if row.get("status", "queued") in FINAL]
    if ended:   # born final (a missed run): it ended here
        _ended(db, ended)
    return ids


def finish(db, job_id, status, error=None, rc=None, result=None, r=None, only_from=None):
    """Record a job's final status: the one place every kind ends (create_job_rows writes rows born
    final), so what follows a job's end -- its backup job's newest figures, the notifications (one per
    incident, a recovery) -- is decided here once. only_from: the statuses the row must still have (the
    sweeps': a worker may have finished it meanwhile); returns whether the row was changed."""
    sql = ("UPDATE jobs SET status=%s, error=%s, rc=%s, result_json=%s, finished_at=UTC_TIMESTAMP(3)"
           " WHERE id=%s" + (" AND status IN %s" if only_from else ""))
    n = execute(db, sql, (status, error, rc, json.dumps(result) if result is not None else None, job_id)
                + ((tuple(only_from),) if only_from else ()))
    if only_from and not n:
        return False
    _ended(db, [job_id])
    notify(db, r, job_id, status)
    return True


def _ended(db, job_ids):
    """These jobs became final (backup_latest never raises)."""
    from . import backup_latest   # imported here: it reads FINAL from this module
    backup_latest.jobs_ended(db, job_ids)


def notify(db, r, job_id, status):
    """Tell the notifications a job is final (events.job_finished never raises)."""
    if status not in ("succeeded", "failed", "abandoned"):
        return
    from .notifications import events
    if r is None:
        from .config import load_config
        from .db import connect_redis
        r = connect_redis(load_config())
    events.job_finished(db, r, job_id)


DUPLICATE_KEY = 1062   # MariaDB ER_DUP_ENTRY


class JobLog:
    """A job's log, appended in order. The line numbers are counted here: the log's end is read
    from the table once, and again only after a write that may or may not have landed (a lost
    connection) or that met lines another process added (the sweep of an abandoned job)."""

    def __init__(self, db, job_id):
        self.db, self.job_id, self.n = db, job_id, None

    def append(self, lines, retry=None):
        """Append lines; returns how many the log now has (retry: as db.query)."""
        if not lines:
            return self.n
        return retrying(self.db, lambda: self._write(lines), retry)

    def _write(self, lines):
        try:
            if self.n is None:
                self.n = self._end()
            try:
                self._insert(lines)
            except pymysql.err.IntegrityError as e:
                if e.args[0] != DUPLICATE_KEY:
                    raise
                self.n = self._end()   # another writer numbered lines meanwhile: continue after them
                self._insert(lines)
        except pymysql.err.Error:
            self.n = None   # written or not is unknown: the next attempt reads the end again
            raise
        self.n += len(lines)
        return self.n

    def _end(self):
        return query(self.db, "SELECT COALESCE(MAX(n), 0) AS n FROM job_log WHERE job_id=%s",
                     (self.job_id,), one=True, retry=0)["n"]

    def _insert(self, lines):
        with self.db.cursor() as cur:
            cur.executemany("INSERT INTO job_log (job_id, n, line) VALUES (%s, %s, %s)",
                            [(self.job_id, self.n + i + 1, line) for i, line in enumerate(lines)])


def append_log(db, job_id, lines):
    """Append lines to the log of a job this process is not running (one read of its end)."""
    return JobLog(db, job_id).append(lines)


# --- per-repository lock: SET NX with the holder's job id; released only by its holder ---
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def lock_key(name):
    return f"borgfleet:lock:{name}"


def try_lock(r, name, job_id, ttl):
    if r.set(lock_key(name), job_id, nx=True, ex=ttl):
        return None
    holder = r.get(lock_key(name))
    return holder.decode() if holder else "?"


def release_lock(r, name, job_id):
    release_lock_raw(r, lock_key(name), job_id)


def release_lock_raw(r, key, holder):
    r.eval(_RELEASE, 1, key, holder)


def heartbeat_key(job_id):
    return f"borgfleet:hb:{job_id}"


def cancel_key(job_id):
    return f"borgfleet:cancel:{job_id}"


def sweep_abandoned(db, r, grace=HEARTBEAT_TTL):
    """Mark running/waiting jobs whose worker stopped heart-beating as abandoned; free their locks.

    Called by workers on startup and by the scheduler periodically, so a killed worker never
    leaves a job "running" forever. Returns the ids marked.
    """
    # A restarted Redis has lost every heartbeat; running jobs write theirs again within
    # HEARTBEAT_TTL/3 s (Heartbeat retries while Redis is down). Judge none before then.
    if int(r.info("server").get("uptime_in_seconds", grace)) < grace:
        log.info("Redis restarted less than %s s ago: no job is judged abandoned yet", grace)
        return []
    rows = query(db, "SELECT id, params_json FROM jobs WHERE status IN ('running','waiting')"
                     " AND started_at < UTC_TIMESTAMP(3) - INTERVAL %s SECOND", (grace,))
    marked = []
    for row in rows:
        if r.exists(heartbeat_key(row["id"])):
            continue
        # Free the lock first (only if this job still holds it), so once the row reads
        # 'abandoned' the repository is already usable.
        lock = json.loads(row["params_json"] or "{}").get("lock")
        if lock:
            release_lock(r, lock, row["id"])
        append_log(db, row["id"], ["*** job abandoned: its worker stopped heart-beating ***"])
        if finish(db, row["id"], "abandoned", r=r, only_from=("running", "waiting"),
                  error="The worker running this job stopped (killed or crashed) before it finished; "
                        "check the host's borg state, then run it again."):
            marked.append(row["id"])
    return marked


def sweep_lost(db, r, grace=60):
    """Queued rows whose RQ job is gone (Redis restarted without persistence) or failed before
    our code ran (e.g. the work horse died at start) are marked failed with that reason."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job
    marked = []
    for row in query(db, "SELECT id FROM jobs WHERE status='queued'"
                         " AND created_at < UTC_TIMESTAMP(3) - INTERVAL %s SECOND", (grace,)):
        try:
            status = Job.fetch(row["id"], connection=r, serializer=SERIALIZER).get_status()
        except NoSuchJobError:
            status, why = None, "the queue lost this job (Redis restarted or was flushed); run it again"
        else:
            why = "the worker failed before running the job (see the worker's log); run it again"
        if status in (None, "failed", "stopped", "canceled"):
            if finish(db, row["id"], "failed", error=why, r=r, only_from=("queued",)):
                marked.append(row["id"])
    return marked


def wake_scheduler(r):
    """Tell the scheduler a schedule changed so it recomputes its next wake-up at once."""
    r.lpush("borgfleet:scheduler:wake", "1")
    r.ltrim("borgfleet:scheduler:wake", 0, 0)
