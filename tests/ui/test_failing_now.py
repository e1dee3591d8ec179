"""What is failing now (notifications/alerts.py failing_now) on the dashboard and the notifications page:
a backup job's open incident, and the incidents of alerts.py too: a pool above its threshold, a server's
disk over its threshold, each with a link to its page and its figure now; gone once they recover. The
incidents are opened by the worker's own recorders (results.record), as in test_notification_alerts."""
import re

from borgfleet_ui import db as dbm, queue as q
from test_notification_alerts import _pools_report, _record, _system
from test_restore_jobs import logged_in
from uilib import drop_local_backup, make_local_backup


def _sample(disk):
    """collect_stats' system dict with the uptime the server page shows (server_facts has it)."""
    return dict(_system(disk), uptime={"seconds": 3600, "boot_time": "2026-12-02T10:00:00Z"})


def _failing(page):
    """The dashboard's "Failing now" section: {link: row text} of its rows."""
    section = re.search(r'<section class="mb-4" id="failing-now">(.*?)</section>', page, re.S).group(1)
    rows = re.findall(r'<tr class="incident" data-kind="(\w+)">(.*?)</tr>', section, re.S)
    return {(kind, re.search(r'href="([^"]+)"', row).group(1)): " ".join(re.sub(r"<[^>]+>", " ", row).split())
            for kind, row in rows}


def test_pool_and_server_incidents_are_listed_with_links_until_they_recover(app, api, db, redis, users, tmp_path):
    cl, bj = make_local_backup(api, tmp_path, "failing-now")
    host, pool_path = cl["name"], str(tmp_path / "failing-now-repos")
    browser, _ = logged_in(app, users["viewer"])
    try:
        assert _failing(browser.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)) == {}
        # A pool at 91 % (its warning threshold is 80 %), a server's /srv at 96 % in two samples in a row,
        # and a backup whose worker died.
        _record(db, "analyze_pools", _pools_report(host, pool_path, 91.0))
        _record(db, "collect_stats", {host: _sample(95.0)})
        _record(db, "collect_stats", {host: _sample(96.0)})
        job_id = q.create_job_row(db, "backup", backup_job_id=bj["id"], status="running")
        dbm.execute(db, "UPDATE jobs SET started_at=UTC_TIMESTAMP(3) - INTERVAL 5 MINUTE WHERE id=%s", (job_id,))
        assert job_id in q.sweep_abandoned(db, redis)

        rows = _failing(browser.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True))
        assert set(rows) == {("pool", f"/pools#pool-{host}-local"), ("server", f"/servers/{cl['id']}"),
                             ("backup", f"/backup-jobs/{bj['id']}")}
        assert rows[("pool", f"/pools#pool-{host}-local")].startswith(f"pool local on {host} pool filling up")
        assert "91 % used" in rows[("pool", f"/pools#pool-{host}-local")]
        assert rows[("server", f"/servers/{cl['id']}")].startswith(f"disk of {host} server over its threshold")
        assert rows[("server", f"/servers/{cl['id']}")].endswith("96 % now /srv")
        assert rows[("backup", f"/backup-jobs/{bj['id']}")].startswith(f"{host}/data backup")
        # The links lead somewhere: the pool's card, the server's page.
        pools_page = browser.get("/pools").get_data(as_text=True)
        assert f'id="pool-{host}-local"' in pools_page
        assert browser.get(f"/servers/{cl['id']}").status_code == 200
        # In French, and on the notifications page too.
        fr = _failing(browser.get("/", headers={"Accept-Language": "fr"}).get_data(as_text=True))
        assert fr[("server", f"/servers/{cl['id']}")].startswith(f"disque de {host}")
        page = browser.get("/notifications", headers={"Accept-Language": "en"}).get_data(as_text=True)
        assert f'href="/pools#pool-{host}-local"' in page and f'href="/servers/{cl["id"]}"' in page
        # The API names the server and the subject.
        open_ = api("viewer").get("/api/notifications/incidents?open=1").json["items"]
        assert sorted((i["kind"], i["server"], i["subject"]) for i in open_ if i["server_id"]) == [
            ("pool", host, "local"), ("server", host, "disk")]

        # Both recover: only the backup job's incident is left.
        _record(db, "analyze_pools", _pools_report(host, pool_path, 40.0))
        _record(db, "collect_stats", {host: _sample(20.0)})
        rows = _failing(browser.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True))
        assert set(rows) == {("backup", f"/backup-jobs/{bj['id']}")}
    finally:
        for queue in q.queues(redis):
            if queue.name == q.NOTIFY_QUEUE:
                queue.empty()
        drop_local_backup(api, cl, bj)
