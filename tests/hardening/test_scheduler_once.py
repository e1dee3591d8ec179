"""Issue 10, scheduler: a due run fires at most once (compare-and-set on next_run_at before
anything is enqueued, also when a tick outlives the leader lock), and a job that missed 10,000
runs is handled in a bounded number of cron evaluations.

Real MariaDB and Redis, real Scheduler objects: the slow tick is made real by holding the job's
row lock in another MariaDB transaction, as a slow or overloaded database would."""
import threading
from datetime import datetime, timedelta, timezone

import pytest
from rq import Queue

from borgfleet_ui import db as dbm
from borgfleet_ui import queue as q
from borgfleet_ui.fleet import backup_jobs
from borgfleet_ui.kinds import KINDS
from borgfleet_ui import scheduler as schedmod
from uilib import drop_local_backup, make_local_backup, wait_for


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def jobs_of(db, bj_id):
    return dbm.query(db, "SELECT * FROM jobs WHERE backup_job_id=%s ORDER BY seq", (bj_id,))


@pytest.fixture()
def sched_env(api, db, redis, tmp_path):
    """A local backup job and a clean scheduler lock; afterwards its queued runs are dropped."""
    made = []

    def make(name, schedule):
        cl, bj = make_local_backup(api, tmp_path, name, schedule=schedule)
        made.append((cl, bj))
        return bj
    redis.delete(schedmod.LOCK)
    yield make
    redis.delete(schedmod.LOCK)
    for cl, bj in made:
        for row in jobs_of(db, bj["id"]):
            if row["status"] == "queued":
                q.finish(db, row["id"], "canceled", error="test cleanup")
        drop_local_backup(api, cl, bj)
    Queue(q.queue_name("backup"), connection=redis).empty()


def scheduler(cfg, name):
    s = schedmod.Scheduler(cfg)
    s.me = f"{s.me}:{name}"   # two schedulers in one test process
    s.next_sweep = float("inf")
    return s


def lock_waits(db, dbname):
    row = dbm.query(db, "SELECT COUNT(*) AS n FROM information_schema.innodb_trx t"
                        " JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id"
                        " WHERE t.trx_state = 'LOCK WAIT' AND p.db = %s", (dbname,), one=True)
    return row["n"]


def test_tick_slower_than_the_lock_ttl_fires_a_due_run_once(ui_env, db, redis, sched_env, monkeypatch):
    bj = sched_env("once-cl", "*/5 * * * *")
    due = (utcnow() - timedelta(seconds=5)).replace(microsecond=0)
    dbm.execute(db, "UPDATE backup_jobs SET next_run_at=%s WHERE id=%s", (due, bj["id"]))
    monkeypatch.setattr(schedmod, "LOCK_TTL", 2)
    first, second = scheduler(ui_env, "first"), scheduler(ui_env, "second")
    waits = {}

    def tick(s):
        waits[s.me] = s.tick()

    # Another transaction holds the job's row: the first scheduler's tick stalls on it past the TTL.
    holder = dbm.connect(ui_env)
    holder.begin()
    dbm.query(holder, "SELECT id FROM backup_jobs WHERE id=%s FOR UPDATE", (bj["id"],))
    try:
        assert first.hold_lock()
        t1 = threading.Thread(target=tick, args=(first,))
        t1.start()
        wait_for(lambda: lock_waits(db, ui_env["DB_NAME"]) >= 1, timeout=20, what="the first tick to stall")
        # The lock expires while the first tick is stuck; the second scheduler takes over and
        # reads the same due time (the first one has not written anything yet).
        wait_for(lambda: redis.get(schedmod.LOCK) is None, timeout=10, what="the leader lock to expire")
        assert second.hold_lock() and not first.hold_lock()
        t2 = threading.Thread(target=tick, args=(second,))
        t2.start()
        wait_for(lambda: lock_waits(db, ui_env["DB_NAME"]) >= 2, timeout=20, what="the second tick to stall")
    finally:
        holder.rollback()
        holder.close()
    t1.join(60)
    t2.join(60)
    assert not t1.is_alive() and not t2.is_alive()
    rows = jobs_of(db, bj["id"])
    assert [(r["kind"], r["status"]) for r in rows] == [("backup", "queued")], rows
    assert Queue(q.queue_name("backup"), connection=redis).job_ids == [rows[0]["id"]]
    after = dbm.query(db, "SELECT next_run_at, last_run_at FROM backup_jobs WHERE id=%s", (bj["id"],), one=True)
    assert after["last_run_at"] == due and after["next_run_at"] > utcnow()
    # Neither tick leaves anything due behind it (a zero wait would spin the loop).
    assert all(w > 0 for w in waits.values()), waits


def test_stale_scheduler_losing_the_compare_and_set_enqueues_nothing(ui_env, db, redis, sched_env):
    """The row a scheduler read is stale once another one has fired it: its claim fails and
    nothing is queued or recorded (the active one's run stays the only one)."""
    bj = sched_env("stale-cl", "*/5 * * * *")
    due = (utcnow() - timedelta(seconds=5)).replace(microsecond=0)
    dbm.execute(db, "UPDATE backup_jobs SET next_run_at=%s WHERE id=%s", (due, bj["id"]))
    active, stale = scheduler(ui_env, "active"), scheduler(ui_env, "stale")
    # Both see it due; the stale one's view is kept from before the active one fired.
    sched = KINDS["backup"]
    seen = dbm.query(db, "SELECT id, next_run_at FROM backup_jobs WHERE id=%s AND next_run_at <= %s",
                     (bj["id"], utcnow()), one=True)
    assert seen and seen["next_run_at"] == due
    assert active.hold_lock()
    active.fire_due(sched, utcnow())
    assert len(jobs_of(db, bj["id"])) == 1
    # The stale scheduler acts on what it read (holding the lock, as after a takeover).
    redis.delete(schedmod.LOCK)
    assert stale.hold_lock()
    now = utcnow()
    row = dbm.query(db, "SELECT b.id, b.name, b.schedule, b.timezone FROM backup_jobs b WHERE id=%s",
                    (bj["id"],), one=True)
    row["next_run_at"] = seen["next_run_at"]
    assert stale.fire_row(sched, row, now) is False
    rows = jobs_of(db, bj["id"])
    assert len(rows) == 1 and rows[0]["status"] == "queued"
    assert Queue(q.queue_name("backup"), connection=redis).count == 1


def test_ten_thousand_missed_runs_cost_a_bounded_number_of_cron_steps(ui_env, db, redis, sched_env, monkeypatch):
    bj = sched_env("many-cl", "* * * * *")
    now = utcnow().replace(second=0, microsecond=0)
    missed_true = 12_345
    stale = now - timedelta(minutes=missed_true - 1)   # runs at stale, stale+1 min, ..., now
    dbm.execute(db, "UPDATE backup_jobs SET next_run_at=%s WHERE id=%s", (stale, bj["id"]))
    calls = []
    real = backup_jobs.next_run

    def counted(*a, **kw):
        calls.append(a)
        return real(*a, **kw)
    monkeypatch.setattr(schedmod.backup_jobs, "next_run", counted)
    s = scheduler(ui_env, "many")
    assert s.hold_lock()
    wait = s.tick()
    # The backup schedule: one evaluation for the next due time and a few (scheduler.MISSED_STEPS)
    # to count what was missed; the original walked croniter once per missed run, 10,000 times.
    assert len(calls) <= 20, len(calls)
    rows = jobs_of(db, bj["id"])
    assert sorted(r["status"] for r in rows) == ["missed", "queued"], rows
    msg = next(r["error"] for r in rows if r["status"] == "missed")
    words = msg.split()
    assert words[0] == "about", msg
    assert abs(int(words[1]) - missed_true) <= 2, msg
    after = dbm.query(db, "SELECT next_run_at FROM backup_jobs WHERE id=%s", (bj["id"],), one=True)
    assert after["next_run_at"] > utcnow() - timedelta(seconds=1)
    assert 0 < wait <= schedmod.RENEW
