"""A server's page (/servers/<id>): setup followed by the capabilities detection by itself, the
databases found as the machine really runs them (MariaDB's version and its socket login), Collect
now twice and the history charts (uPlot) drawn from server_stats, the stats thinning; screenshots
in light and dark (tests/output/server/)."""
import datetime
import os
import socket
import subprocess
from pathlib import Path

import pytest

from borgfleet_ui import db as dbm
from borgfleet_ui.fleet import facts
from test_browser import CHROMIUM, browser, login, web  # noqa: F401 (fixtures)
from uilib import drop_local_backup, make_local_backup, wait_job

OUT = Path(__file__).resolve().parents[1] / "output" / "server"


def test_stats_are_thinned_to_hourly_then_daily_and_dropped_after_a_year(api, db):
    cl = api("admin").post("/api/servers", json={"name": "thin-stats", "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/thin-stats"}).json
    now = dbm.query(db, "SELECT UTC_TIMESTAMP() AS t", one=True)["t"].replace(minute=30, second=0)
    hours = datetime.timedelta(hours=1)
    times = [now - 2 * hours, now - 3 * hours]                                           # recent: kept
    times += [now - 100 * hours + m * datetime.timedelta(minutes=15) for m in range(-1, 2)]  # 4 days old
    times += [now - 50 * 24 * hours + m * datetime.timedelta(hours=4) for m in range(-1, 2)]  # 50 days old
    times.append(now - 500 * 24 * hours)                                                 # past a year
    try:
        for i, t in enumerate(times):
            dbm.execute(db, "INSERT INTO server_stats (server_id, collected_at, data_json) VALUES (%s, %s, %s)",
                        (cl["id"], t, f'{{"n": {i}}}'))
        facts.thin_stats(db, cl["id"])
        kept = [int(r["data_json"][6:-1]) for r in dbm.query(
            db, "SELECT data_json FROM server_stats WHERE server_id=%s ORDER BY id", (cl["id"],))]
        hourly = {}
        for i in (2, 3, 4):
            hourly.setdefault(times[i].strftime("%Y-%m-%d %H"), i)
        daily = {}
        for i in (5, 6, 7):
            daily.setdefault(times[i].date(), i)
        assert kept == [0, 1] + sorted(hourly.values()) + sorted(daily.values())
    finally:
        api("operator").delete(f"/api/servers/{cl['id']}")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")
def test_setup_detects_capabilities_then_stats_and_charts(api, db, start_worker, tmp_path, browser, web, users):  # noqa: F811
    cl, bj = make_local_backup(api, tmp_path, "page-cl")
    admin, op = api("admin"), api("operator")
    assert admin.put("/api/settings", json={"detect_after_setup": "1"}).status_code == 200
    start_worker(1)
    try:
        setup = wait_job(db, op.post(f"/api/servers/{cl['id']}/setup").json["job_id"])
        assert setup["status"] == "succeeded", setup["error"]
        # The detection was queued by the setup itself.
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=120)
        detect = None
        while detect is None and datetime.datetime.now() < deadline:
            detect = dbm.query(db, "SELECT id FROM jobs WHERE kind='detect_capabilities' AND server_id=%s",
                               (cl["id"],), one=True)
        assert detect, "no detect_capabilities job after the setup"
        assert wait_job(db, detect["id"])["status"] == "succeeded"
        caps = api("viewer").get(f"/api/servers/{cl['id']}/capabilities").json
        version = subprocess.run(["mariadb", "-NBe", "SELECT VERSION()"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        (maria,) = [d for d in caps["databases"] if d["engine"] == "mariadb"]
        assert maria["version"] == version and maria["running"] is True
        assert maria["login"] == "socket"                 # root over the unix socket, as on this machine

        for _ in range(2):
            job = wait_job(db, op.post(f"/api/servers/{cl['id']}/collect-stats").json["job_id"])
            assert job["status"] == "succeeded", job["error"]
        history = api("viewer").get(f"/api/servers/{cl['id']}/stats/history?range=day").json
        assert len(history["t"]) == 2 and all(0 <= v <= 100 for v in history["ram"])
        assert api("viewer").get(f"/api/servers/{cl['id']}/stats/history?range=decade").status_code == 400

        page = login(browser, web, users["viewer"])
        page.goto(f"{web}/servers/{cl['id']}")
        assert page.inner_text("#system .hostname") in (socket.getfqdn(), socket.gethostname())
        assert page.locator("#databases tr[data-engine='mariadb'] td.login").inner_text() == "socket"
        assert page.locator("#reload-capabilities").count() == 0          # viewers do not queue runs
        page.wait_for_selector("#charts .chart canvas")
        assert page.locator("#charts .chart canvas").count() == 4
        assert page.locator("#charts .chart[data-series='ram'] .u-title").inner_text() == "RAM"
        OUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUT / "server-light.png"), full_page=True)
        page.click("#theme-toggle")
        assert page.get_attribute("html", "data-bs-theme") == "dark"
        page.wait_for_selector("#charts .chart canvas")
        page.screenshot(path=str(OUT / "server-dark.png"), full_page=True)
        page.click("#theme-toggle")

        # An operator reloads the capabilities from the page: a job page, then the same answer.
        opage = login(browser, web, users["operator"])
        opage.goto(f"{web}/servers/{cl['id']}")
        with opage.expect_navigation():
            opage.click("#reload-capabilities")
        job_id = opage.url.rsplit("/", 1)[1]
        assert wait_job(db, job_id)["status"] == "succeeded"
    finally:
        admin.put("/api/settings", json={"detect_after_setup": "0"})
        drop_local_backup(api, cl, bj)
