"""Queue behaviour with real RQ workers: the live log, one job per repository at a time, a
killed worker's job ends abandoned (never 'running' forever), a canceled run ends canceled;
the job log's numbering (real MariaDB)."""
import os
import time

from borgfleet_ui import db as dbm, queue as q
from uilib import job_row, make_local_backup, drop_local_backup, wait_for, wait_job
from tests.lib.borgrepo import BorgRepo


def test_two_runs_on_one_repository_never_overlap(api, db, start_worker, tmp_path):
    cl, bj = make_local_backup(api, tmp_path, "lock-cl")
    start_worker(1)
    # The setup job's log, read live with ?after=N while it runs, is the whole log, in order.
    job_id = api("operator").post(f"/api/servers/{cl['id']}/setup").json["job_id"]
    seen, after, statuses = [], 0, set()
    while True:
        resp = api("viewer").get(f"/api/jobs/{job_id}/log", query_string={"after": after}).json
        seen += resp["lines"]
        statuses.add(resp["status"])
        assert resp["next"] >= after
        after = resp["next"]
        if resp["status"] in q.FINAL and not resp["lines"]:
            break
        time.sleep(0.3)
    assert resp["status"] == "succeeded"
    full = api("viewer").get(f"/api/jobs/{job_id}/log").json["lines"]
    assert seen == full and len(full) > 5 and "PLAY RECAP" in "\n".join(full)
    assert api("viewer").get(f"/api/jobs/{job_id}/log", query_string={"after": len(full)}).json["lines"] == []
    start_worker(2)
    wait_for(lambda: len([w for w in api("admin").get("/api/workers").json["items"] if w["state"] == "idle"]) >= 2,
             what="two idle workers")
    first = api("operator").post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"]
    second = api("operator").post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"]
    a, b = wait_job(db, first), wait_job(db, second)
    assert a["status"] == b["status"] == "succeeded", (a["error"], b["error"])
    logs = {j: "\n".join(api("viewer").get(f"/api/jobs/{j}/log").json["lines"]) for j in (first, second)}
    # Both workers took a job at once; one of them waited for the other's repository lock.
    waited = [j for j in logs if "waiting: repository lock-cl/data is in use by job" in logs[j]]
    assert len(waited) == 1, logs
    other = second if waited[0] == first else first
    assert other in logs[waited[0]]
    assert len(BorgRepo(bj["location"], "local-pass-lock-cl", base_dir=tmp_path / "lock-cl-base").archive_names()) == 2
    drop_local_backup(api, cl, bj)


def test_killed_worker_leaves_job_abandoned(api, db, redis, start_worker, tmp_path):
    # 150 MB of incompressible data keeps borg busy long enough to be killed mid-run.
    cl, bj = make_local_backup(api, tmp_path, "kill-cl")
    big = tmp_path / "kill-cl-data" / "big.bin"
    with open(big, "wb") as f:
        for _ in range(150):
            f.write(os.urandom(1 << 20))
    w = start_worker(1)
    assert wait_job(db, api("operator").post(f"/api/servers/{cl['id']}/setup").json["job_id"])["status"] == "succeeded"
    job_id = api("operator").post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"]
    # Wait until the playbook is really running (its log streams the backup task), then kill.
    wait_for(lambda: "Create the archives" in "\n".join(api("viewer").get(f"/api/jobs/{job_id}/log").json["lines"]),
             timeout=120, interval=0.1, what="the backup task to start")
    assert job_row(db, job_id)["status"] == "running"
    w.kill()
    # The heartbeat expires; the next worker to start (or the scheduler's sweep) settles the job.
    wait_for(lambda: not redis.exists(q.heartbeat_key(job_id)), timeout=q.HEARTBEAT_TTL + 5, what="heartbeat expiry")
    time.sleep(1)
    start_worker(2)
    row = wait_job(db, job_id, timeout=60)
    assert row["status"] == "abandoned" and "stopped" in row["error"] and row["finished_at"]
    assert not redis.exists(q.lock_key("kill-cl/data"))   # its repository is free again
    # A new run on the same repository is not blocked by the dead one; canceled while borg
    # runs, it ends 'canceled' (not failed, not running) and its repository lock is freed.
    again = api("operator").post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"]
    wait_for(lambda: "Create the archives" in "\n".join(api("viewer").get(f"/api/jobs/{again}/log").json["lines"]),
             timeout=120, interval=0.1, what="the second run's backup task")
    assert api("operator").post(f"/api/jobs/{again}/cancel").status_code == 202
    row = wait_job(db, again, timeout=60)
    assert row["status"] == "canceled" and row["error"] == "canceled by a user", (row["status"], row["error"])
    assert "in use by job" not in "\n".join(api("viewer").get(f"/api/jobs/{again}/log").json["lines"])
    assert not redis.exists(q.lock_key("kill-cl/data"))
    drop_local_backup(api, cl, bj)


def _selects(conn):
    """SELECT statements this MariaDB session has run (SHOW is not counted)."""
    return int(dbm.query(conn, "SHOW SESSION STATUS LIKE 'Com_select'", one=True)["Value"])


def _log_lines(db, job_id):
    return [(row["n"], row["line"]) for row in dbm.query(db, "SELECT n, line FROM job_log WHERE job_id=%s ORDER BY n",
                                                         (job_id,))]


def test_job_log_numbers_lines_without_a_query_per_append(ui_env, db):
    job_id = q.create_job_row(db, "backup", status="canceled", error="job log test")
    conn = dbm.connect(ui_env)
    try:
        joblog = q.JobLog(conn, job_id)
        before = _selects(conn)
        for i in range(50):
            assert joblog.append([f"event {i} a", f"event {i} b"]) == 2 * (i + 1)
        # The log's end was read once, for the first append; the other 49 wrote only.
        assert _selects(conn) - before == 1
        assert _log_lines(db, job_id) == [(k + 1, f"event {k // 2} {'ab'[k % 2]}") for k in range(100)]

        # Another writer (the sweep of an abandoned job) adds a line: the next append continues after it.
        q.append_log(db, job_id, ["from the sweep"])
        assert joblog.append(["after the sweep"]) == 102
        assert _log_lines(db, job_id)[-2:] == [(101, "from the sweep"), (102, "after the sweep")]

        # The connection is killed (MariaDB restarted): the append reconnects, reads the end again
        # and numbers on from there, no line lost or doubled.
        dbm.execute(db, "KILL CONNECTION %s", (conn.thread_id(),))
        assert joblog.append(["after the reconnect"]) == 103
        assert joblog.append(["and on"]) == 104

        # A retried attempt of the job (a new work horse) starts its own log object: it continues too.
        again = q.JobLog(conn, job_id)
        assert again.append(["*** attempt 2 ***"]) == 105
        lines = _log_lines(db, job_id)
        assert [n for n, _ in lines] == list(range(1, 106))
        assert lines[-3:] == [(103, "after the reconnect"), (104, "and on"), (105, "*** attempt 2 ***")]
    finally:
        conn.close()
        dbm.execute(db, "DELETE FROM jobs WHERE id=%s", (job_id,))
