"""The scheduler process: fires a due job within a second, one active instance, missed runs
reported, cron evaluated in the job's time zone across DST."""
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from rq import Queue

from borgfleet_ui import db as dbm
from borgfleet_ui import queue as q
from borgfleet_ui.fleet import backup_jobs
from borgfleet_ui.scheduler import LOCK
from uilib import REPO, drop_local_backup, make_local_backup, wait_for, worker_env


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


@pytest.fixture()
def schedulers(tmp_path):
    procs = []

    def start():
        log = open(tmp_path / f"scheduler-{len(procs)}.log", "w")
        p = subprocess.Popen([sys.executable, "-m", "borgfleet_ui", "scheduler"], env=worker_env(),
                             stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        procs.append(p)
        return p
    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=20)


def scheduled_jobs(db, bj_id):
    return dbm.query(db, "SELECT * FROM jobs WHERE backup_job_id=%s ORDER BY seq", (bj_id,))


def test_due_job_fires_within_a_second_once(api, db, redis, schedulers, tmp_path):
    cl, bj = make_local_backup(api, tmp_path, "sched-cl", schedule="0 3 * * *")
    first, second = schedulers(), schedulers()
    wait_for(lambda: redis.get(LOCK), what="a scheduler to take the lock")
    time.sleep(1)
    holder = redis.get(LOCK).decode()
    assert holder.endswith(str(first.pid)) or holder.endswith(str(second.pid))
    # Make it due in 2 s (as if 03:00 were near) and tell the scheduler the schedule changed.
    due = (utcnow() + timedelta(seconds=2)).replace(microsecond=0)
    dbm.execute(db, "UPDATE backup_jobs SET next_run_at=%s WHERE id=%s", (due, bj["id"]))
    q.wake_scheduler(redis)
    rows = wait_for(lambda: scheduled_jobs(db, bj["id"]), timeout=15, what="the due job to be queued")
    time.sleep(2)   # a second (idle) scheduler must not queue it again
    rows = scheduled_jobs(db, bj["id"])
    assert len(rows) == 1 and rows[0]["kind"] == "backup" and rows[0]["status"] == "queued"
    late = (rows[0]["created_at"] - due).total_seconds()
    assert 0 <= late < 1.0, late
    after = dbm.query(db, "SELECT next_run_at, last_run_at FROM backup_jobs WHERE id=%s", (bj["id"],), one=True)
    assert after["last_run_at"] == due and after["next_run_at"] > utcnow()
    assert rows[0]["id"] in Queue(q.queue_name("backup"), connection=redis, serializer=q.SERIALIZER).job_ids
    # Stop the active one (systemctl stop sends SIGTERM): it hands the lock back and the idle
    # one takes over within its next renewal (a crashed one's lock expires after LOCK_TTL).
    active = first if holder.endswith(str(first.pid)) else second
    active.terminate()
    assert active.wait(timeout=10) == 0
    wait_for(lambda: redis.get(LOCK) and redis.get(LOCK).decode() != holder, timeout=10,
             what="the second scheduler to take over")
    cleanup(api, db, redis, cl, bj)


def test_missed_runs_are_reported(api, db, redis, schedulers, tmp_path):
    cl, bj = make_local_backup(api, tmp_path, "miss-cl", schedule="*/5 * * * *")
    # The scheduler was down for the last 30 minutes: six 5-minute slots passed unseen.
    stale = (utcnow() - timedelta(minutes=30)).replace(second=0, microsecond=0)
    stale -= timedelta(minutes=stale.minute % 5)
    dbm.execute(db, "UPDATE backup_jobs SET next_run_at=%s WHERE id=%s", (stale, bj["id"]))
    schedulers()
    rows = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(scheduled_jobs(db, bj["id"])), timeout=15,
                    what="missed report and catch-up run")
    missed = [r for r in rows if r["status"] == "missed"]
    assert len(missed) == 1 and "catch-up" in missed[0]["error"]
    n = int(missed[0]["error"].split()[0])
    assert n in (6, 7), missed[0]["error"]
    assert any(r["status"] == "queued" for r in rows)
    assert missed[0]["id"] in [j["id"] for j in api("viewer").get("/api/jobs", query_string={"status": "missed"}).json["items"]]
    cleanup(api, db, redis, cl, bj)


def test_due_verification_fires_and_backups_stay_on_their_own_schedule(api, db, redis, schedulers, tmp_path):
    op = api("operator")
    cl = api("admin").post("/api/servers", json={"name": "vsched-cl", "role": "client", "connection": "local",
                                                 "local_pool_path": str(tmp_path / "repos")}).json
    bj = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "pg", "passphrase": "pg-pass-123",
                                           "databases": [{"engine": "postgresql"}],
                                           "schedule": "0 3 * * *", "verify_schedule": "0 6 * * 0"}).json
    schedulers()
    wait_for(lambda: redis.get(LOCK), what="a scheduler to take the lock")
    due = (utcnow() + timedelta(seconds=2)).replace(microsecond=0)
    dbm.execute(db, "UPDATE backup_jobs SET verify_next_run_at=%s WHERE id=%s", (due, bj["id"]))
    q.wake_scheduler(redis)
    rows = wait_for(lambda: scheduled_jobs(db, bj["id"]), timeout=15, what="the due verification to be queued")
    time.sleep(1)
    rows = scheduled_jobs(db, bj["id"])
    assert [(r["kind"], r["status"]) for r in rows] == [("verify", "queued")]
    assert 0 <= (rows[0]["created_at"] - due).total_seconds() < 1.0
    assert json.loads(rows[0]["params_json"])["extravars"] == {"borgfleet_backup": "pg"}
    after = dbm.query(db, "SELECT next_run_at, verify_next_run_at, verify_last_run_at, last_run_at"
                          " FROM backup_jobs WHERE id=%s", (bj["id"],), one=True)
    assert after["verify_last_run_at"] == due and after["verify_next_run_at"] > utcnow()
    assert after["last_run_at"] is None and after["next_run_at"] > utcnow()   # the backup did not fire
    assert rows[0]["id"] in Queue(q.queue_name("verify"), connection=redis, serializer=q.SERIALIZER).job_ids
    cleanup(api, db, redis, cl, bj)


def test_cron_in_time_zone_across_dst():
    # 03:00 Europe/Berlin is 02:00 UTC in winter (CET) and 01:00 UTC in summer (CEST).
    before = datetime(2026, 3, 28, 12, 0, tzinfo=timezone.utc)
    assert backup_jobs.next_run("0 3 * * *", "Europe/Berlin", before) == datetime(2026, 3, 29, 1, 0)
    assert backup_jobs.next_run("0 3 * * *", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=timezone.utc)) \
        == datetime(2026, 3, 28, 2, 0)
    # Autumn: back to CET.
    assert backup_jobs.next_run("0 3 * * *", "Europe/Berlin", datetime(2026, 10, 25, 12, tzinfo=timezone.utc)) \
        == datetime(2026, 10, 26, 2, 0)
    assert backup_jobs.next_run("30 1 * * *", "UTC", before) == datetime(2026, 3, 29, 1, 30)


def cleanup(api, db, redis, cl, bj):
    for row in scheduled_jobs(db, bj["id"]):
        if row["status"] == "queued":
            api("operator").post(f"/api/jobs/{row['id']}/cancel")
    for kind in ("backup", "verify"):
        Queue(q.queue_name(kind), connection=redis, serializer=q.SERIALIZER).empty()
    drop_local_backup(api, cl, bj)
