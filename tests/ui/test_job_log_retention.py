"""Job-log retention: the scheduler's sweep deletes the log lines of finished jobs older than the
job_log_retention_days setting, keeps newer ones and never touches a job still running."""
import uuid

from borgfleet_ui import db as dbm
from borgfleet_ui import queue as q
from borgfleet_ui.fleet import runs
from borgfleet_ui.scheduler import Scheduler


def make_job(db, status, days_ago, finished, lines):
    job_id = str(uuid.uuid4())
    dbm.execute(db, "INSERT INTO jobs (id, kind, status, created_at, started_at, finished_at) VALUES"
                    " (%s, 'backup', %s, UTC_TIMESTAMP(3) - INTERVAL %s DAY, UTC_TIMESTAMP(3) - INTERVAL %s DAY,"
                    " IF(%s, UTC_TIMESTAMP(3) - INTERVAL %s DAY, NULL))",
                (job_id, status, days_ago, days_ago, finished, days_ago))
    with db.cursor() as cur:
        cur.executemany("INSERT INTO job_log (job_id, n, line) VALUES (%s, %s, %s)",
                        [(job_id, n, f"line {n}") for n in range(1, lines + 1)])
    return job_id


def log_lines(db, job_id):
    return dbm.query(db, "SELECT COUNT(*) AS n FROM job_log WHERE job_id=%s", (job_id,), one=True)["n"]


def test_scheduler_sweep_purges_old_finished_job_logs_only(api, db, redis, ui_env):
    assert api("admin").put("/api/settings", json={"job_log_retention_days": "30"}).status_code == 200
    # More lines than one DELETE removes: the purge goes on in batches until the job is empty.
    old_ok = make_job(db, "succeeded", 31, True, runs.PURGE_LINES_PER_DELETE + 7)
    old_failed = make_job(db, "failed", 400, True, 20)
    recent = make_job(db, "succeeded", 29, True, 20)
    running = make_job(db, "running", 200, False, 20)   # started long ago, still running
    redis.set(q.heartbeat_key(running), "1", ex=60)      # its worker alive: the sweep leaves it running
    try:
        Scheduler(ui_env).tick()   # its first tick sweeps
        assert log_lines(db, old_ok) == 0 and log_lines(db, old_failed) == 0
        assert log_lines(db, recent) == 20 and log_lines(db, running) == 20
        purged = {r["id"]: r for r in dbm.query(db, "SELECT id, status, log_purged_at FROM jobs WHERE id IN"
                                                    " (%s, %s, %s, %s)", (old_ok, old_failed, recent, running))}
        assert purged[old_ok]["log_purged_at"] and purged[old_failed]["log_purged_at"]
        assert purged[recent]["log_purged_at"] is None and purged[running]["log_purged_at"] is None
        assert purged[old_ok]["status"] == "succeeded"   # the job row itself stays
        # A bounded call stops early and the next one carries on.
        more = [make_job(db, "succeeded", 60, True, 10) for _ in range(3)]
        assert runs.purge_job_logs(db, 30, max_lines=10) == 10
        assert sorted(log_lines(db, j) for j in more) == [0, 10, 10]
        assert runs.purge_job_logs(db, 30) == 20
        assert runs.purge_job_logs(db, 0) == 0 and log_lines(db, recent) == 20   # 0: kept forever
    finally:
        api("admin").put("/api/settings", json={"job_log_retention_days": "90"})
        redis.delete(q.heartbeat_key(running))
        dbm.execute(db, "UPDATE jobs SET status='failed', finished_at=UTC_TIMESTAMP(3) WHERE id=%s", (running,))
