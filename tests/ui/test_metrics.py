"""/metrics (docs/service.md, Monitoring): a real local backup, scraped with a token and parsed with
prometheus_client's own parser, its values compared with the database rows and RQ's registry;
refused without a token, let in without one from BORGFLEET_METRICS_ALLOW's networks only."""
import datetime
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from borgfleet_ui import create_app, db as dbm, queue as q
from borgfleet_ui.config import networks
from uilib import drop_local_backup, make_local_backup, wait_job


def scrape(resp):
    assert resp.status_code == 200, resp.status_code
    assert resp.content_type.startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


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
