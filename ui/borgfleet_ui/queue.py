"""The web/scheduler side of the queue: job kinds, enqueueing, repository locks, heartbeats.

Jobs are enqueued by dotted path so this side never imports worker code. A job's row in
`jobs` is keyed by its RQ job id and written before the RQ job exists.
"""
import json
import logging
import os
import uuid

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from .db import execute, query, retrying

log = logging.getLogger("borgfleet.queue")

# playbook, the job's time budget in seconds (the wait for its repository lock and the playbook
# run both count) and whether a retry is safe (idempotent playbooks only).
KINDS = {
    "setup": {"playbook": "setup.yml", "timeout": 3600, "retry": True},
    "backup": {"playbook": "backup.yml", "timeout": 6 * 3600, "retry": False},
    "delete_archive": {"playbook": "delete_archive.yml", "timeout": 1800, "retry": False},
    "list_archives": {"playbook": "list_archives.yml", "timeout": 900, "retry": True},
    "collect_stats": {"playbook": "collect_stats.yml", "timeout": 900, "retry": True},
    # A retry could turn a flaky restore into a pass: a verification runs once.
    "verify": {"playbook": "verify.yml", "timeout": 2 * 3600, "retry": False},
}
# Workers take queues in this order: user-facing quick work first, long backups last.
QUEUE_ORDER = ["delete_archive", "setup", "list_archives", "collect_stats", "verify", "backup"]
FINAL = ("succeeded", "failed", "abandoned", "canceled", "missed")
# After a playbook is stopped (cancel, timeout) borg on the hosts gets SIGINT, then SIGKILL after
# this many seconds (plugins/module_utils/_process.py STOP_GRACE); the worker keeps the repository
# locked until that is over, plus a margin for noticing the playbook gone.
BORG_STOP_GRACE = 20
STOP_HOLD = BORG_STOP_GRACE + 10
# RQ kills a work horse past its job_timeout: that must never happen to a running playbook, so
# RQ's timeout is the job's budget plus the stop hold plus time to record the outcome.
RQ_MARGIN = STOP_HOLD + 120


def rq_timeout(kind):
    return KINDS[kind]["timeout"] + RQ_MARGIN
# A running job refreshes its heartbeat every TTL/3 s; without one for TTL s it is abandoned.
HEARTBEAT_TTL = int(os.environ.get("BORGFLEET_HEARTBEAT_TTL", "30"))


# Jobs are stored in Redis as JSON, never pickle: whoever can write to Redis must not be able to run
# code in a worker. Every Queue, Worker and Job.fetch of the service passes this serializer.
SERIALIZER = JSONSerializer


def queue_name(kind):
    return f"borgfleet-{kind}"


def redis_conn(cfg):
    """A Redis client with connect/read timeouts that reconnects while Redis restarts.

    Only connection errors (and refused connects) are retried, for about REDIS_RETRY_SECONDS:
    a read timeout means a command hung, and running it again could pop a job twice. RQ's worker
    raises the read timeout of its own connection above its blocking dequeue; the scheduler keeps
    its own above its BLPOP wait (scheduler.RENEW).
    """
    budget = float(cfg.get("REDIS_RETRY_SECONDS", 30))
    return Redis.from_url(cfg["REDIS_URL"], socket_connect_timeout=cfg.get("REDIS_CONNECT_TIMEOUT", 5),
                          socket_timeout=cfg.get("REDIS_SOCKET_TIMEOUT", 30), socket_keepalive=True,
                          retry=RedisRetry(ExponentialBackoff(cap=1.0, base=0.1), int(budget) + 3,
                                           supported_errors=(RedisConnectionError, OSError)),
                          retry_on_error=[RedisConnectionError])


def queues(r):
    return [Queue(queue_name(k), connection=r, serializer=SERIALIZER) for k in QUEUE_ORDER]


def create_job(db, r, kind, params=None, server_id=None, backup_job_id=None, archive_id=None,
               user=None, lock=None):
    """Insert the job row and enqueue it; returns the job id."""
    spec = KINDS[kind]
    params = dict(params or {})
    if lock:
        params["lock"] = lock
    job_id = create_job_row(db, kind, server_id, backup_job_id, archive_id, params, user)
    try:
        Queue(queue_name(kind), connection=r, serializer=SERIALIZER).enqueue(
            "borgfleet_ui.jobs.run_job", job_id, job_id=job_id, job_timeout=rq_timeout(kind),
            retry=Retry(max=2, interval=[10, 60]) if spec["retry"] else None,
            result_ttl=86400, failure_ttl=7 * 86400)
    except Exception as e:
        finish(db, job_id, "failed", error=f"could not enqueue: {e}")
        raise
    return job_id


def create_job_row(db, kind, server_id=None, backup_job_id=None, archive_id=None, params=None, user=None,
                   status="queued", error=None):
    job_id = str(uuid.uuid4())
    execute(db, "INSERT INTO jobs (id, kind, status, server_id, backup_job_id, archive_id, params_json,"
                " created_by, error, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " IF(%s = 'queued', NULL, UTC_TIMESTAMP(3)))",
            (job_id, kind, status, server_id, backup_job_id, archive_id, json.dumps(params or {}), user,
             error, status))
    return job_id


def finish(db, job_id, status, error=None, rc=None, result=None):
    execute(db, "UPDATE jobs SET status=%s, error=%s, rc=%s, result_json=%s,"
                " finished_at=UTC_TIMESTAMP(3) WHERE id=%s",
            (status, error, rc, json.dumps(result) if result is not None else None, job_id))


def append_log(db, job_id, lines, retry=None):
    """Append lines to a job's log; returns how many the log now has (retry: as db.query)."""
    if not lines:
        return None

    def append():
        # Numbered from the log's end at each attempt, so a retry after a reconnect continues it.
        n = query(db, "SELECT COALESCE(MAX(n), 0) AS n FROM job_log WHERE job_id=%s", (job_id,), one=True, retry=0)["n"]
        with db.cursor() as cur:
            cur.executemany("INSERT INTO job_log (job_id, n, line) VALUES (%s, %s, %s)",
                            [(job_id, n + i + 1, line) for i, line in enumerate(lines)])
        return n + len(lines)
    return retrying(db, append, retry)


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
        n = execute(db, "UPDATE jobs SET status='abandoned', finished_at=UTC_TIMESTAMP(3),"
                        " error=%s WHERE id=%s AND status IN ('running','waiting')",
                    ("The worker running this job stopped (killed or crashed) before it finished; "
                     "check the host's borg state, then run it again.", row["id"]))
        if n:
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
            if execute(db, "UPDATE jobs SET status='failed', error=%s, finished_at=UTC_TIMESTAMP(3)"
                           " WHERE id=%s AND status='queued'", (why, row["id"])):
                marked.append(row["id"])
    return marked


def wake_scheduler(r):
    """Tell the scheduler a schedule changed so it recomputes its next wake-up at once."""
    r.lpush("borgfleet:scheduler:wake", "1")
    r.ltrim("borgfleet:scheduler:wake", 0, 0)
