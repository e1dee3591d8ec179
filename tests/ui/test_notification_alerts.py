"""Notifications beyond a backup job's runs (notifications/alerts.py): pools filling up, a server's disk /
memory / CPU, instant-recovery sessions, missed scheduled runs. The recorders are the worker's own
(results.record on a job row, with a report shaped as the playbooks' set_stats, docs/contract.md); mail
goes through a real worker to a real SMTP server (aiosmtpd, the fixtures of test_notifications)."""
import json
from datetime import timedelta

from borgfleet_ui import db as dbm, queue as q, results
from borgfleet_ui.kinds import scheduled
from borgfleet_ui.notifications import alerts, deliver
from borgfleet_ui.scheduler import Scheduler, utcnow
from test_notifications import (BASE_URL, SMTP_PASSWORD, WEBHOOK_SECRET, _mails, _parts, _verified,  # noqa: F401
                                hooks, notify_settings, smtpd)
from uilib import drop_local_backup, make_local_backup, wait_for

GiB = 1024 ** 3


def _record(db, kind, report, server_id=None, backup_job_id=None, params=None):
    """Record a run of `kind` as the worker does after its playbook succeeded."""
    job_id = q.create_job_row(db, kind, server_id=server_id, backup_job_id=backup_job_id, params=params,
                              status="running")
    job = dbm.query(db, "SELECT * FROM jobs WHERE id=%s", (job_id,), one=True)
    return job_id, results.record(db, job, params or {}, report)


def _pools_report(host, path, used_percent):
    total = 100 * GiB
    used = int(total * used_percent / 100)
    return {host: {"warn_percent": 80, "alerts": [], "pools": [
        {"name": "local", "path": path, "exists": True, "mountpoint": "/", "fstype": "ext4", "device": "/dev/vda1",
         "total_bytes": total, "used_bytes": used, "free_bytes": total - used, "used_percent": used_percent,
         "warn": used_percent >= 80, "repositories_size_bytes": 1000, "repositories": []}]}}


def _system(disk, memory=40.0, cpu=12.5):
    """collect_stats' `system` dict (server_facts, docs/contract.md)."""
    return {"hostname": "h", "architecture": "x86_64",
            "cpu": {"cores": 2, "model": "test", "load": [0.1, 0.2, 0.3], "usage_percent": cpu, "sample_seconds": 1},
            "memory": {"total_bytes": 8 * GiB, "used_bytes": int(8 * GiB * memory / 100), "available_bytes": 0,
                       "free_bytes": 0, "buff_cache_bytes": 0, "used_percent": memory,
                       "swap": {"total_bytes": 0, "used_bytes": 0, "free_bytes": 0}},
            "filesystems": [{"mountpoint": "/", "device": "/dev/vda1", "fstype": "ext4", "total_bytes": 50 * GiB,
                             "used_bytes": 10 * GiB, "free_bytes": 40 * GiB, "used_percent": 20.0},
                            {"mountpoint": "/srv", "device": "/dev/vdb1", "fstype": "xfs", "total_bytes": 100 * GiB,
                             "used_bytes": int(disk * GiB), "free_bytes": int((100 - disk) * GiB),
                             "used_percent": disk}]}


def _session(name="ir-1"):
    return {"name": name, "engine": "postgresql", "archive": "db-2026-12-01", "repository": "/nowhere/repo",
            "address": "127.0.0.1", "port": 15432, "socket_dir": "/run/borgfleet-ir/ir-1", "datadir": "/var/lib/x",
            "state": "running", "pid": 4242, "started_at": "2026-12-02T10:00:00Z", "layer_bytes": 1024,
            "health": {"ready": True}}


def _deliveries(db, event):
    return dbm.query(db, "SELECT * FROM notification_deliveries WHERE event=%s ORDER BY id", (event,))


def test_pool_server_and_session_alerts_mail_once_and_recover(api, db, redis, tmp_path, start_worker, smtpd, hooks,
                                                              notify_settings):
    notify_settings(webhook_url=hooks.url, webhook_secret=WEBHOOK_SECRET)
    cl, bj = make_local_backup(api, tmp_path, "alerts")
    host, pool_path = cl["name"], str(tmp_path / "alerts-repos")
    to = "viewer@borgfleet.test"
    assert api("viewer").put("/api/notifications/subscription", json={"email": to}).status_code == 200
    # The operator chose only failures: none of these reach it.
    assert api("operator").put("/api/notifications/subscription",
                               json={"email": "operator@borgfleet.test", "events": ["failure"]}).status_code == 200
    start_worker(1)
    try:
        # A pool above its warning threshold: one mail (and a signed webhook) for the incident.
        _record(db, "analyze_pools", _pools_report(host, pool_path, 91.0))
        [alert] = _mails(smtpd, to, "POOL", 1, "the pool mail")
        assert alert["Subject"] == f"[{deliver.app_name(db)}] POOL: local on {host} is 91 % full"
        for body in _parts(alert).values():
            assert f"{BASE_URL}/pools" in body and "above its warning threshold of 80 %" in body
        payload = _verified(*_hook(hooks, "pool"))
        assert (payload["detail"]["server"], payload["detail"]["pool"], payload["detail"]["used_percent"],
                payload["detail"]["above"]) == (host, "local", 91.0, True)
        # Still above: counted, nothing sent.
        _record(db, "analyze_pools", _pools_report(host, pool_path, 93.0))
        [incident] = dbm.query(db, "SELECT * FROM notification_incidents WHERE kind='pool' AND server_id=%s", (cl["id"],))
        assert (incident["is_open"], incident["subject"], incident["failures"]) == (1, "local", 2)
        assert len(_deliveries(db, "pool")) == 2   # the mail and the webhook of the first analysis only
        # Below and shrinking (no forecast): the recovery.
        _record(db, "analyze_pools", _pools_report(host, pool_path, 40.0))
        [recovered] = _mails(smtpd, to, "RECOVERED", 1, "the pool recovery mail")
        assert recovered["Subject"] == f"[{deliver.app_name(db)}] RECOVERED: pool local on {host}"
        assert "is below its warning threshold again" in _parts(recovered)["text/plain"]
        assert dbm.query(db, "SELECT is_open FROM notification_incidents WHERE id=%s", (incident["id"],),
                         one=True)["is_open"] is None

        # A server's /srv at 95 % in one sample: nothing yet; in the second: one mail; still: no more.
        _record(db, "collect_stats", {host: _system(95.0)})
        assert _deliveries(db, "server") == []
        _record(db, "collect_stats", {host: _system(96.0)})
        [server_mail] = _mails(smtpd, to, "SERVER", 1, "the server mail")
        assert server_mail["Subject"] == f"[{deliver.app_name(db)}] SERVER: disk of {host} at 96 %"
        text = _parts(server_mail)["text/plain"]
        assert "disk (/srv)" in text and f"{BASE_URL}/servers/{cl['id']}" in text
        _record(db, "collect_stats", {host: _system(97.0)})
        assert [i["subject"] for i in dbm.query(db, "SELECT subject FROM notification_incidents WHERE kind='server'"
                                                    " AND server_id=%s", (cl["id"],))] == ["disk"]

        # An instant-recovery session started and stopped: one message each.
        params = {"host": host}
        job_id, result = _record(db, "recovery_start", {host: {"session": _session(), "ready_seconds": 2}},
                                 server_id=cl["id"], backup_job_id=bj["id"], params=params)
        [started] = _mails(smtpd, to, "started", 1, "the session mail")
        assert started["Subject"] == f"[{deliver.app_name(db)}] Instant recovery ir-1 started on {host}"
        for body in _parts(started).values():
            assert f"{BASE_URL}/recovery/{result['session_id']}" in body and "127.0.0.1:15432" in body
        _record(db, "recovery_stop", {host: {"session": dict(_session(), state="stopped", pid=None)}},
                server_id=cl["id"], backup_job_id=bj["id"], params=params)
        _mails(smtpd, to, "stopped", 1, "the session stopped mail")
        wait_for(lambda: len([d for d in _deliveries(db, "session_started") + _deliveries(db, "session_stopped")
                              if d["status"] == "sent"]) == 4, timeout=30, what="both sessions' messages sent")

        assert smtpd.to("operator@borgfleet.test") == []
        assert len(smtpd.to(to)) == 5
        raw = smtpd.raw().decode(errors="replace")
        for secret in (SMTP_PASSWORD, WEBHOOK_SECRET, "local-pass-alerts"):
            assert secret not in raw
    finally:
        drop_local_backup(api, cl, bj)


def _hook(hooks, event):
    return wait_for(lambda: [(h, b) for h, b in hooks.received if h.get("X-BorgFleet-Event") == event], timeout=30,
                    what=f"the {event} webhook")[0]


def test_a_missed_run_and_a_pool_forecast_full_are_reported(api, db, redis, ui_env, tmp_path, notify_settings):
    """No worker: the deliveries are queued and built as the worker would (deliver.build_mail)."""
    shown = notify_settings(pool_full_days=14)
    assert (shown["server_disk_percent"], shown["server_memory_percent"], shown["server_cpu_percent"]) == (90, 95, 95)
    for bad in ({"server_cpu_percent": 101}, {"pool_full_days": -1}, {"server_disk_percent": "x"}):
        resp = api("admin").put("/api/notifications/settings", json=bad)
        assert resp.status_code == 400 and list(bad)[0] in resp.json["error"], resp.json
    cl, bj = make_local_backup(api, tmp_path, "alerts-miss", schedule="*/5 * * * *")
    assert api("viewer").put("/api/notifications/subscription", json={"email": "viewer@borgfleet.test"}).status_code == 200
    scheduler = Scheduler(ui_env)
    try:
        # The scheduler was down for half an hour: its next tick records a 'missed' job, which is mailed.
        dbm.execute(db, "UPDATE backup_jobs SET next_run_at=%s WHERE id=%s",
                    (utcnow().replace(second=0, microsecond=0) - timedelta(minutes=30), bj["id"]))
        assert scheduler.hold_lock()
        [backup_kind] = [k for k in scheduled() if k.name == "backup"]
        scheduler.fire_due(backup_kind, utcnow())
        [d] = [d for d in _deliveries(db, "missed") if d["backup_job_id"] == bj["id"]]
        job = dbm.query(db, "SELECT * FROM jobs WHERE id=%s", (d["job_id"],), one=True)
        assert job["status"] == "missed"
        subject, text, html = deliver.build_mail(db, d)
        assert subject == f"[{deliver.app_name(db)}] MISSED: scheduled backup of alerts-miss/data"
        assert "scheduled run(s) missed" in text and f"{BASE_URL}/jobs/{job['id']}" in html

        # A pool at 60 % that grew 2 GiB a day for a week: 40 GiB free, full in about 20 days. With
        # 14 days of warning nothing; with 30 it is reported (forecast, not above its threshold).
        host = cl["name"]
        for days_ago in range(7, 0, -1):
            used = (60 - 2 * days_ago) * GiB
            dbm.execute(db, "INSERT INTO pool_samples (server_id, pool_name, sampled_at, total_bytes, used_bytes,"
                            " free_bytes) VALUES (%s, 'local', UTC_TIMESTAMP() - INTERVAL %s DAY, %s, %s, %s)",
                        (cl["id"], days_ago, 100 * GiB, used, 100 * GiB - used))
        mine = lambda: [d for d in _deliveries(db, "pool") if d["server_id"] == cl["id"]]  # noqa: E731
        _record(db, "analyze_pools", _pools_report(host, "/p", 60.0))
        assert mine() == []
        notify_settings(pool_full_days=30)
        _record(db, "analyze_pools", _pools_report(host, "/p", 60.0))
        [d] = mine()
        subject, text, _ = deliver.build_mail(db, d)
        assert subject == f"[{deliver.app_name(db)}] POOL: local on {host} full in about 20 days"
        assert json.loads(d["detail_json"])["forecast_full"] is True and "Full in about:" in text
    finally:
        api("admin").put("/api/notifications/settings", json={"pool_full_days": 14})
        scheduler.release()
        for queue in q.queues(redis):
            queue.empty()
        drop_local_backup(api, cl, bj)


def test_resource_percents_of_a_sample():
    """Pure logic: the fullest filesystem names its mountpoint; missing parts are absent."""
    assert alerts.resource_percents(_system(91.5, memory=50, cpu=7)) == {
        "disk": (91.5, "/srv"), "memory": (50.0, None), "cpu": (7.0, None)}
    assert alerts.resource_percents({"cpu": {"usage_percent": None}, "filesystems": []}) == {}
