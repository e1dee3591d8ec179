"""/metrics (docs/service.md, Monitoring): a real local backup, scraped with a token and parsed with
prometheus_client's own parser, its values compared with the database rows and RQ's registry; the
per-backup-job series (kept in backup_job_latest where jobs end and archives are written) compared
with jobs and archives again after a failed run, a later success and the newest archive deleted, and
with what migration 0964's backfill computes; refused without a token, let in without one from
BORGFLEET_METRICS_ALLOW's networks only."""
import datetime
import json
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from borgfleet_ui import create_app, db as dbm, queue as q
from borgfleet_ui.config import networks
from borgfleet_ui.fleet import metrics as fleet_metrics
from uilib import drop_local_backup, make_local_backup, wait_job


def scrape(resp):
    assert resp.status_code == 200, resp.status_code
    assert resp.content_type.startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def unix(t):
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()   # DB times are UTC


def newest(db, bj_id):
    """(end of the newest succeeded backup run, status of the newest finished one, newest archive row) of
    a backup job, read from jobs and archives as they are now."""
    success = dbm.query(db, "SELECT finished_at FROM jobs WHERE backup_job_id=%s AND kind='backup'"
                            " AND status='succeeded' ORDER BY finished_at DESC LIMIT 1", (bj_id,), one=True)
    status = dbm.query(db, "SELECT status FROM jobs WHERE backup_job_id=%s AND kind='backup' AND status IN %s"
                           " ORDER BY seq DESC LIMIT 1", (bj_id, q.FINAL), one=True)
    archive = dbm.query(db, "SELECT a.* FROM archives a JOIN repositories r ON r.id=a.repository_id"
                            " WHERE r.backup_job_id=%s AND a.start_at IS NOT NULL ORDER BY a.start_at DESC, a.id DESC"
                            " LIMIT 1", (bj_id,), one=True)
    return success and success["finished_at"], status and status["status"], archive


def assert_backup_series(m, db, bj_id, job):
    """The five per-backup-job families of scrape m for labels `job` are what jobs and archives say."""
    success, status, archive = newest(db, bj_id)
    got = {name: v for (name, labels), v in m.items() if name.startswith("borgfleet_backup_last_")
           and dict(labels)["client"] == dict(job)["client"] and dict(labels)["backup"] == dict(job)["backup"]
           and name != "borgfleet_backup_last_status"}
    want = {}
    if success is not None:
        want["borgfleet_backup_last_success_timestamp_seconds"] = unix(success)
    for name, col in (("duration_seconds", "duration"), ("original_size_bytes", "original_size"),
                      ("deduplicated_size_bytes", "deduplicated_size")):
        if archive and archive[col] is not None:
            want[f"borgfleet_backup_last_{name}"] = archive[col]
    assert got.keys() == want.keys()
    for name, v in want.items():
        assert got[name] == pytest.approx(v, abs=1e-3, rel=0), name   # the timestamp: float seconds
    statuses = {dict(labels)["status"]: v for (name, labels), v in m.items() if name == "borgfleet_backup_last_status"
                and dict(labels)["client"] == dict(job)["client"] and dict(labels)["backup"] == dict(job)["backup"]}
    assert statuses == ({s: float(s == status) for s in q.FINAL} if status else {})
    return success, status, archive


def test_metrics_match_the_database(api, db, redis, start_worker, tmp_path):
    cl, bj = make_local_backup(api, tmp_path, "metrics-cl")
    op = api("operator")
    worker = start_worker(1)
    assert wait_job(db, op.post(f"/api/servers/{cl['id']}/setup").json["job_id"])["status"] == "succeeded"
    run = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
    assert run["status"] == "succeeded", run["error"]
    # Instant recovery sessions as hosts report them: one healthy, one broken.
    for name, state, health in (("m-ok", "running", {"intact": True, "engine_running": True}),
                                ("m-bad", "running", {"intact": False})):
        dbm.execute(db, "INSERT INTO recovery_sessions (server_id, name, state, health_json, checked_at)"
                        " VALUES (%s, %s, %s, %s, UTC_TIMESTAMP(3))", (cl["id"], name, state, json.dumps(health)))
    try:
        m = scrape(api("viewer").get("/metrics"))
        job = (("backup", "data"), ("client", "metrics-cl"))
        done = dbm.query(db, "SELECT finished_at FROM jobs WHERE id=%s", (run["id"],), one=True)["finished_at"]
        assert m[("borgfleet_backup_last_success_timestamp_seconds", job)] == pytest.approx(
            done.replace(tzinfo=datetime.timezone.utc).timestamp(), abs=1e-3)   # DB times are UTC
        archive = dbm.query(db, "SELECT a.* FROM archives a JOIN repositories r ON r.id=a.repository_id"
                                " WHERE r.backup_job_id=%s", (bj["id"],))
        assert len(archive) == 1 and archive[0]["original_size"] >= 1000, archive
        assert m[("borgfleet_backup_last_original_size_bytes", job)] == archive[0]["original_size"]
        assert m[("borgfleet_backup_last_deduplicated_size_bytes", job)] == archive[0]["deduplicated_size"]
        assert m[("borgfleet_backup_last_duration_seconds", job)] == archive[0]["duration"]
        assert m[("borgfleet_backup_last_status", job + (("status", "succeeded"),))] == 1
        zero = {dict(labels)["status"] for (name, labels), v in m.items()
                if name == "borgfleet_backup_last_status" and dict(labels)["client"] == "metrics-cl" and v == 0}
        assert zero == set(q.FINAL) - {"succeeded"}
        counts = {(x["kind"], x["status"]): x["n"] for x in dbm.query(
            db, "SELECT kind, status, COUNT(*) AS n FROM jobs GROUP BY kind, status")}
        assert counts[("backup", "succeeded")] >= 1 and counts[("setup", "succeeded")] >= 1
        assert {(dict(labels)["kind"], dict(labels)["status"]): v for (name, labels), v in m.items()
                if name == "borgfleet_jobs"} == counts
        assert m[("borgfleet_recovery_sessions", (("health", "running"),))] >= 1
        sessions = {h: m[("borgfleet_recovery_sessions", (("health", h),))] for h in ("running", "stopped", "broken")}
        rows = dbm.query(db, "SELECT COUNT(*) AS n FROM recovery_sessions", one=True)["n"]
        assert sum(sessions.values()) == rows and sessions["broken"] >= 1
        # Workers in RQ's registry: the workers page also lists those stopped earlier (state stopped).
        workers = [w for w in api("admin").get("/api/workers").json["items"] if w["state"] != "stopped"]
        assert m[("borgfleet_workers", ())] == len(workers) >= 1

        # A failed run: its status is the newest; the success and the archive stay the first run's.
        assert assert_backup_series(m, db, bj["id"], job)[1] == "succeeded"
        assert op.put(f"/api/backup-jobs/{bj['id']}", json={"passphrase": "not-the-passphrase"}).status_code == 200
        failed = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
        assert failed["status"] == "failed"
        m = scrape(api("viewer").get("/metrics"))
        assert assert_backup_series(m, db, bj["id"], job) == (done, "failed", archive[0])
        assert m[("borgfleet_backup_last_status", job + (("status", "failed"),))] == 1
        assert m[("borgfleet_backup_last_status", job + (("status", "succeeded"),))] == 0

        # A later success with more data: its end, status and new archive.
        assert op.put(f"/api/backup-jobs/{bj['id']}", json={"passphrase": "local-pass-metrics-cl"}).status_code == 200
        (tmp_path / "metrics-cl-data" / "more.bin").write_bytes(os.urandom(200_000))
        again = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
        assert again["status"] == "succeeded", again["error"]
        m = scrape(api("viewer").get("/metrics"))
        success, status, second = assert_backup_series(m, db, bj["id"], job)
        assert (success, status, second["id"]) == (again["finished_at"], "succeeded", again["archive_id"])
        assert second["id"] != archive[0]["id"] and second["original_size"] > archive[0]["original_size"] + 100_000
        assert m[("borgfleet_backup_last_original_size_bytes", job)] == second["original_size"]

        # The newest archive deleted (a delete_archive run): the first one is the newest again.
        deleted = wait_job(db, op.delete(f"/api/archives/{second['id']}").json["job_id"])
        assert deleted["status"] == "succeeded", deleted["error"]
        m = scrape(api("viewer").get("/metrics"))
        assert assert_backup_series(m, db, bj["id"], job) == (again["finished_at"], "succeeded", archive[0])
        assert m[("borgfleet_backup_last_original_size_bytes", job)] == archive[0]["original_size"]

        # Past group_concat_max_len the lines are read row by row: the same lines.
        lines = fleet_metrics.backup_lines(db)
        assert len(lines) >= 1 and fleet_metrics.backup_lines(db, max_bytes=10) == lines

        # Migration 0964's backfill computes the same row as the one kept up to date.
        with open(os.path.join(dbm.MIGRATIONS_DIR, "0964_backup_job_latest.sql")) as f:
            [backfill] = [s for s in dbm._statements(f.read()) if s.startswith("INSERT INTO backup_job_latest")]
        dbm.execute(db, "CREATE TEMPORARY TABLE backfilled LIKE backup_job_latest")
        try:
            dbm.execute(db, backfill.replace("INSERT INTO backup_job_latest", "INSERT INTO backfilled", 1))
            [kept, computed] = [dbm.query(db, f"SELECT * FROM {t} WHERE backup_job_id=%s", (bj["id"],), one=True)
                                for t in ("backup_job_latest", "backfilled")]
            assert kept == computed and kept["status"] == "succeeded", (kept, computed)
        finally:
            dbm.execute(db, "DROP TEMPORARY TABLE backfilled")

        # Queue depth: with the worker stopped, a run waits in its queue.
        worker.stop()
        queued = op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"]
        m = scrape(api("viewer").get("/metrics"))
        for name in q.queues(redis):
            assert m[("borgfleet_queue_depth", (("queue", name.name),))] == name.count
        assert m[("borgfleet_queue_depth", (("queue", "borgfleet-backup"),))] >= 1
        assert op.post(f"/api/jobs/{queued}/cancel").status_code in (200, 202)
    finally:
        dbm.execute(db, "DELETE FROM recovery_sessions WHERE name IN ('m-ok', 'm-bad')")
        drop_local_backup(api, cl, bj)


def test_metrics_token_or_allowlist(client, api, users):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer bf_nope"}).status_code == 401
    assert api("viewer").get("/metrics").status_code == 200
    allowing = create_app({"TESTING": True, "METRICS_ALLOW": networks("10.9.8.0/24, fd00::/64")})
    c = allowing.test_client()
    for inside in ("10.9.8.7", "fd00::5"):
        resp = c.get("/metrics", environ_base={"REMOTE_ADDR": inside})
        assert resp.status_code == 200 and "borgfleet_jobs" in resp.get_data(as_text=True), inside
    for outside in ("10.9.9.7", "127.0.0.1", "fd01::5"):
        assert c.get("/metrics", environ_base={"REMOTE_ADDR": outside}).status_code == 401, outside
    # The allowlist opens /metrics only, and only to reads.
    assert c.get("/api/me", environ_base={"REMOTE_ADDR": "10.9.8.7"}).status_code == 401
    assert c.post("/metrics", environ_base={"REMOTE_ADDR": "10.9.8.7"}).status_code == 405
    # From an allowed address a token is not needed, and a token still works from anywhere.
    token = {"Authorization": f"Bearer {users['viewer'][2]}"}
    assert c.get("/metrics", headers=token, environ_base={"REMOTE_ADDR": "10.9.9.7"}).status_code == 200


def test_values_written_as_prometheus_client_writes_them():
    """The per-backup-job samples are written by fleet/metrics.py itself: each value as
    prometheus_client's floatToGoString writes it (timestamps, sizes, durations)."""
    import random
    rng = random.Random(15)
    values = [0.0, 1.0, 999999.0, 1e6, 1e7, 12345678.9, 1733212345.123, 2.5e-05, 1e16, 2 ** 53 + 2.0]
    values += [rng.random() * 10 ** rng.randint(-7, 18) for _ in range(5000)]
    values += [float(rng.randrange(1 << rng.randint(1, 62))) for _ in range(5000)]
    assert [fleet_metrics._go(v) for v in values] == [floatToGoString(v) for v in values]
