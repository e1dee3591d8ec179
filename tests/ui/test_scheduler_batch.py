"""Issue 15, the scheduler at fleet scale: the due runs of many backup jobs are claimed, inserted and
enqueued in batches (one transaction, one multi-row INSERT, one Redis pipeline), and still each
due time fires exactly once, missed runs are reported, and a batch Redis refuses leaves failed rows,
no RQ job and its due times spent (at most once).

Real MariaDB and Redis, real Scheduler objects; the extra backup jobs are rows cloned from one made
through the API (the scheduler reads only the database)."""
import json
from datetime import datetime, timedelta, timezone

import pytest
from rq import Queue
from rq.job import Job

from borgfleet_ui import db as dbm
from borgfleet_ui import queue as q
from borgfleet_ui import scheduler as schedmod
from borgfleet_ui.kinds import KINDS
from uilib import drop_local_backup, make_local_backup

BACKUP = KINDS["backup"]


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def backup_queue(redis):
    return Queue(q.queue_name("backup"), connection=redis, serializer=q.SERIALIZER)


@pytest.fixture()
def many_jobs(api, db, redis, tmp_path):
    """make(n): n backup jobs of one local client (one through the API, the others its clones with their
    repository rows); returns their ids. Afterwards their runs are dropped from MariaDB and Redis."""
    made = []

    def make(n):
        cl, bj = make_local_backup(api, tmp_path, f"batch{len(made)}-cl", schedule="*/5 * * * *")
        made.append((cl, bj))
        with db.cursor() as cur:
            cur.executemany("INSERT INTO backup_jobs (client_id, name, paths_json, exclude_json, compression,"
                            " passphrase, schedule, timezone, enabled) SELECT client_id, %s, paths_json, exclude_json,"
                            " compression, passphrase, schedule, timezone, 1 FROM backup_jobs WHERE id=%s",
                            [(f"data{i:03d}", bj["id"]) for i in range(1, n)])
        ids = [r["id"] for r in dbm.query(db, "SELECT id FROM backup_jobs WHERE client_id=%s ORDER BY id", (cl["id"],))]
        dbm.execute(db, "INSERT INTO repositories (backup_job_id, client_id, location) SELECT b.id, b.client_id,"
                        " CONCAT(%s, '/', b.name) FROM backup_jobs b WHERE b.client_id=%s AND b.id<>%s",
                    (str(tmp_path / "repos"), cl["id"], bj["id"]))
        assert len(ids) == n
        return ids
    redis.delete(schedmod.LOCK)
    before = set(backup_queue(redis).job_ids)
    yield make
    redis.delete(schedmod.LOCK)
    for cl, bj in made:
        rows = dbm.query(db, "SELECT j.id FROM jobs j JOIN backup_jobs b ON b.id=j.backup_job_id WHERE b.client_id=%s",
                         (cl["id"],))
        for row in rows:
            if Job.exists(row["id"], connection=redis):   # fetched: delete() needs its queue (origin)
                Job.fetch(row["id"], connection=redis, serializer=q.SERIALIZER).delete(remove_from_queue=True)
        dbm.execute(db, "DELETE FROM jobs WHERE backup_job_id IN (SELECT id FROM backup_jobs WHERE client_id=%s)",
                    (cl["id"],))
        dbm.execute(db, "DELETE FROM backup_jobs WHERE client_id=%s AND id<>%s", (cl["id"], bj["id"]))
        drop_local_backup(api, cl, bj)
    assert set(backup_queue(redis).job_ids) <= before, "the test's RQ jobs are gone"


def scheduler(cfg, name):
    s = schedmod.Scheduler(cfg)
    s.me = f"{s.me}:{name}"
    # Only the due runs: no sweeps, stale checks or stats in these ticks.
    s.next_sweep = s.next_stale_check = float("inf")
    return s


def runs_of(db, ids):
    marks = ", ".join(["%s"] * len(ids))
    return dbm.query(db, f"SELECT * FROM jobs WHERE backup_job_id IN ({marks}) ORDER BY seq", ids)


def due_rows(db, ids):
    marks = ", ".join(["%s"] * len(ids))
    return dbm.query(db, f"SELECT id, schedule, timezone, next_run_at FROM backup_jobs WHERE id IN ({marks})"
                         " ORDER BY id", ids)


def test_two_hundred_due_jobs_are_queued_once_in_one_tick(ui_env, db, redis, many_jobs):
    ids = many_jobs(200)
    due = (utcnow() - timedelta(seconds=5)).replace(microsecond=0)
    marks = ", ".join(["%s"] * len(ids))
    dbm.execute(db, f"UPDATE backup_jobs SET next_run_at=%s WHERE id IN ({marks})", [due] + ids)
    # Two of them were due half an hour ago (the scheduler was down): reported, then caught up.
    late = (utcnow() - timedelta(minutes=30)).replace(second=0, microsecond=0)
    dbm.execute(db, "UPDATE backup_jobs SET next_run_at=%s WHERE id IN (%s, %s)", (late, ids[0], ids[1]))
    seen = due_rows(db, ids)   # what a scheduler that lost the lock may still act on later
    s = scheduler(ui_env, "batch")
    assert s.hold_lock()
    wait = s.tick()
    assert 0 < wait <= schedmod.RENEW

    rows = runs_of(db, ids)
    queued = [r for r in rows if r["status"] == "queued"]
    missed = [r for r in rows if r["status"] == "missed"]
    assert sorted(r["backup_job_id"] for r in queued) == ids, "each due job queued exactly once"
    assert sorted(r["backup_job_id"] for r in missed) == ids[:2] and len(rows) == 202
    assert all("catch-up" in r["error"] and r["finished_at"] is not None for r in missed)
    names = {b["id"]: b["name"] for b in dbm.query(db, f"SELECT id, name FROM backup_jobs WHERE id IN ({marks})", ids)}
    for r in queued:
        params = json.loads(r["params_json"])
        assert params["extravars"] == {"borgfleet_backup": names[r["backup_job_id"]]}
        assert params["lock"] == f"batch0-cl/{names[r['backup_job_id']]}" and params["limit"] == ["batch0-cl"]
    # Every row has its RQ job, once, as queue.create_job enqueues one (run_job of the row's id).
    in_queue = backup_queue(redis).job_ids
    assert sorted(j for j in in_queue if j in {r["id"] for r in queued}) == sorted(r["id"] for r in queued)
    assert len(set(in_queue)) == len(in_queue)
    for r in queued[:3] + queued[-3:]:
        job = Job.fetch(r["id"], connection=redis, serializer=q.SERIALIZER)
        assert (job.func_name, job.args, job.timeout) == ("borgfleet_ui.jobs.run_job", [r["id"]], q.rq_timeout("backup"))
        assert job.get_status() == "queued"
    after = {b["id"]: b for b in dbm.query(db, f"SELECT id, next_run_at, last_run_at FROM backup_jobs WHERE id IN ({marks})", ids)}
    assert all(after[i]["next_run_at"] > utcnow() for i in ids)
    assert [after[i]["last_run_at"] for i in ids] == [late, late] + [due] * 198

    # The next tick finds nothing due, and a stale scheduler acting on what it read before loses
    # every compare-and-set: nothing more is queued or recorded.
    assert s.tick() > 0
    stale = scheduler(ui_env, "stale")
    assert stale.fire_rows(BACKUP, seen, utcnow()) == []
    assert len(runs_of(db, ids)) == 202
    assert len(backup_queue(redis).job_ids) == len(in_queue)


def test_a_batch_redis_refuses_leaves_failed_rows_and_nothing_queued(ui_env, db, redis, many_jobs):
    ids = many_jobs(5)
    due = (utcnow() - timedelta(seconds=5)).replace(microsecond=0)
    marks = ", ".join(["%s"] * len(ids))
    dbm.execute(db, f"UPDATE backup_jobs SET next_run_at=%s WHERE id IN ({marks})", [due] + ids)
    before = backup_queue(redis).count
    s = scheduler(ui_env, "no-redis")
    # Nothing listens on port 9: every Redis command of this scheduler is refused.
    s.r = dbm.connect_redis(dict(ui_env, REDIS_URL="redis://127.0.0.1:9/0", REDIS_RETRY_SECONDS=0))
    fired = s.fire_rows(BACKUP, due_rows(db, ids), utcnow())
    assert [b["id"] for b in fired] == ids
    rows = runs_of(db, ids)
    assert sorted(r["backup_job_id"] for r in rows) == ids
    assert all(r["status"] == "failed" and r["error"].startswith("could not enqueue") for r in rows), rows
    assert backup_queue(redis).count == before and not any(Job.exists(r["id"], connection=redis) for r in rows)
    # The due times are spent (a run fires at most once) and none counts as run.
    after = dbm.query(db, f"SELECT next_run_at, last_run_at FROM backup_jobs WHERE id IN ({marks})", ids)
    assert all(a["next_run_at"] > utcnow() and a["last_run_at"] is None for a in after)


def test_the_stale_check_opens_exactly_the_overdue_jobs_of_a_schedule(ui_env, db, redis, many_jobs):
    """The stale check bisects each schedule's jobs by their last success instead of evaluating every
    job: it must open the incidents of exactly those stale_since (the one rule) says are overdue."""
    from borgfleet_ui.fleet import backup_jobs
    from borgfleet_ui.notifications import stale
    ids = many_jobs(20)
    marks = ", ".join(["%s"] * len(ids))
    dbm.execute(db, f"UPDATE backup_jobs SET schedule='0 * * * *' WHERE id IN ({marks})", ids)
    now = utcnow()
    # Last successes from now back to 190 minutes ago, in shuffled order; the first job never succeeded.
    for k, bj_id in enumerate(ids[1:]):
        q.create_job_rows(db, [dict(kind="backup", backup_job_id=bj_id, status="succeeded")])
        dbm.execute(db, "UPDATE jobs SET finished_at=%s WHERE backup_job_id=%s",
                    (now - timedelta(minutes=10 * ((k * 7) % 19)), bj_id))
    old = dbm.query(db, "SELECT stale_margin_minutes FROM notification_settings WHERE id=1", one=True)
    dbm.execute(db, "UPDATE notification_settings SET stale_margin_minutes=30 WHERE id=1")
    try:
        rows = dbm.query(db, f"SELECT b.id, b.created_at, (SELECT MAX(finished_at) FROM jobs j WHERE"
                             f" j.backup_job_id=b.id) AS ok FROM backup_jobs b WHERE b.id IN ({marks})", ids)
        expected = sorted(r["id"] for r in rows if backup_jobs.stale_since(
            "0 * * * *", "UTC", r["ok"] or r["created_at"], min_grace=timedelta(minutes=30)) <= now)
        assert 0 < len(expected) < len(ids) - 1, "both stale and fresh jobs"
        opened = [i for i in stale.tick(db, redis, now) if i in ids]
        assert sorted(opened) == expected
        incidents = dbm.query(db, f"SELECT backup_job_id FROM notification_incidents WHERE kind='stale'"
                                  f" AND is_open=1 AND backup_job_id IN ({marks}) ORDER BY backup_job_id", ids)
        assert [i["backup_job_id"] for i in incidents] == expected
        assert [i for i in stale.tick(db, redis, now) if i in ids] == []   # opened once
    finally:
        dbm.execute(db, "UPDATE notification_settings SET stale_margin_minutes=%s WHERE id=1",
                    (old["stale_margin_minutes"],))
