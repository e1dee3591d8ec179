"""Storage pools (fleet/pools.py, /pools, /api/storage-pools/usage): a real local backup analysed by
analyze_pools.yml through a worker, its figures compared with statvfs, du and borg's own; the growth
and "full in N days" forecast; the thinning that keeps a year of samples small; the page in Chromium
(screenshot in tests/output/pools/) and the pool metrics."""
import datetime
import os
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from borgfleet_ui import db as dbm
from borgfleet_ui.fleet import pools
from tests.lib.borgrepo import BorgRepo
from test_browser import CHROMIUM, browser, login, web  # noqa: F401 (fixtures)
from uilib import drop_local_backup, make_local_backup, set_up_and_back_up, wait_job

OUT = Path(__file__).resolve().parents[1] / "output" / "pools"
DAY = datetime.timedelta(days=1)
GIB = 1 << 30


def test_growth_is_the_least_squares_slope_and_the_forecast_divides_free_space():
    t0 = datetime.datetime(2026, 11, 1)
    assert pools.growth_per_day([(t0, 100), (t0 + DAY, 200), (t0 + 2 * DAY, 300)]) == pytest.approx(100)
    # Noisy points: the least-squares slope (Sxy 220 / Sxx 5), not the last difference (80).
    assert pools.growth_per_day([(t0, 0), (t0 + DAY, 80), (t0 + 2 * DAY, 70), (t0 + 3 * DAY, 150)]) == pytest.approx(44)
    assert pools.growth_per_day([(t0, 100)]) is None
    assert pools.growth_per_day([(t0, 100), (t0, 200)]) is None       # no time between them
    assert pools.full_in_days(1000, 100) == pytest.approx(10)
    assert pools.full_in_days(1000, 0) is None and pools.full_in_days(1000, -5) is None
    assert pools.full_in_days(1000, None) is None


def test_old_samples_are_thinned_to_one_a_day_and_dropped_after_keep_days(api, db):
    cl = api("admin").post("/api/servers", json={"name": "thin-cl", "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/thin-cl"}).json
    now = dbm.query(db, "SELECT UTC_TIMESTAMP() AS t", one=True)["t"]
    times = [now - datetime.timedelta(hours=h) for h in (1, 5, 20)]                    # recent: all kept
    old_days = [now - d * DAY for d in (5, 6, 7)]
    times += [t + datetime.timedelta(minutes=m) for t in old_days for m in (0, 15, 30)]   # 3 a day
    times.append(now - (pools.KEEP_DAYS + 3) * DAY)                                       # too old
    try:
        for i, t in enumerate(times):
            dbm.execute(db, "INSERT INTO pool_samples (server_id, pool_name, sampled_at, used_bytes)"
                            " VALUES (%s, 'local', %s, %s)", (cl["id"], t, i))
        pools.thin_samples(db, cl["id"], "local")
        kept = [r["used_bytes"] for r in dbm.query(
            db, "SELECT used_bytes FROM pool_samples WHERE server_id=%s ORDER BY id", (cl["id"],))]
        # The three recent ones, and the first of each old day (minute 0, unless the day boundary
        # splits a day's three samples: then the first of each calendar day).
        days = {}
        for i, t in enumerate(times[3:12], start=3):
            days.setdefault(t.date(), i)
        assert kept == [0, 1, 2] + sorted(days.values())
    finally:
        api("operator").delete(f"/api/servers/{cl['id']}")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")
def test_analyze_a_real_pool_then_page_forecast_and_metrics(api, db, start_worker, tmp_path, browser, web, users):  # noqa: F811
    cl, bj = make_local_backup(api, tmp_path, "pool-cl", files={"a.bin": os.urandom(300_000), "b.txt": b"b" * 5000})
    start_worker(1)
    set_up_and_back_up(api, db, cl, bj)
    assert api("viewer").post("/api/storage-pools/analyze").status_code == 403
    job = wait_job(db, api("operator").post("/api/storage-pools/analyze").json["job_id"])
    assert job["status"] == "succeeded", job["error"]
    try:
        (p,) = [p for p in api("viewer").get("/api/storage-pools/usage").json["items"] if p["server_name"] == "pool-cl"]
        pool_path = cl["local_pool_path"]
        st = os.statvfs(pool_path)
        assert p["name"] == "local" and p["path"] == pool_path
        assert p["total_bytes"] == st.f_blocks * st.f_frsize
        assert p["used_bytes"] + p["free_bytes"] <= p["total_bytes"]
        (repo,) = p["repositories"]
        assert repo["client"] == "pool-cl" and repo["backup"] == "data" and repo["archive_count"] == 1
        archive = dbm.query(db, "SELECT a.name, a.original_size FROM archives a JOIN repositories r"
                                " ON r.id=a.repository_id WHERE r.backup_job_id=%s", (bj["id"],), one=True)
        # borg's own figures of the repository, read back with the job's passphrase.
        stats = BorgRepo(bj["location"], "local-pass-pool-cl", base_dir=tmp_path / "probe").info()["cache"]["stats"]
        assert (repo["original_size"], repo["compressed_size"], repo["deduplicated_size"]) == (
            stats["total_size"], stats["total_csize"], stats["unique_csize"])
        assert repo["original_size"] >= 305_000
        assert repo["last_archive"]["name"] == archive["name"]
        du = int(subprocess.run(["du", "-s", "-x", "-B1", "--", repo["path"]], capture_output=True, text=True,
                                check=True).stdout.split()[0])
        assert repo["size_on_disk_bytes"] == du and p["repositories_size_bytes"] == du
        assert p["growth_bytes_per_day"] is None and p["full_in_days"] is None    # one analysis: no trend yet

        # A sample a day earlier with 1 GiB less used: the growth is 1 GiB a day, the forecast free / that.
        latest = dbm.query(db, "SELECT sampled_at, used_bytes FROM pool_samples WHERE server_id=%s",
                           (cl["id"],), one=True)
        dbm.execute(db, "INSERT INTO pool_samples (server_id, pool_name, sampled_at, total_bytes, used_bytes,"
                        " free_bytes) VALUES (%s, 'local', %s, %s, %s, %s)",
                    (cl["id"], latest["sampled_at"] - DAY, p["total_bytes"], latest["used_bytes"] - GIB,
                     p["free_bytes"] + GIB))
        (p,) = [p for p in api("viewer").get("/api/storage-pools/usage").json["items"] if p["server_name"] == "pool-cl"]
        assert p["growth_bytes_per_day"] == pytest.approx(GIB)
        assert p["full_in_days"] == pytest.approx(p["free_bytes"] / GIB)

        metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(api("viewer").get("/metrics").get_data(as_text=True))
                   for s in f.samples}
        labels = (("pool", "local"), ("server", "pool-cl"))
        assert metrics[("borgfleet_pool_size_bytes", labels)] == p["total_bytes"]
        assert metrics[("borgfleet_pool_repositories_bytes", labels)] == du
        assert metrics[("borgfleet_pool_full_in_days", labels)] == pytest.approx(p["full_in_days"])

        page = login(browser, web, users["viewer"])
        page.goto(web + "/pools")
        card = page.locator("div.pool-card[data-server='pool-cl']")
        assert card.locator("dd.total").get_attribute("data-bytes") == str(p["total_bytes"])
        assert card.locator(".growth").inner_text() == "+1.0 GiB / day"
        assert card.locator(".full-in").inner_text() == f"{int(p['full_in_days'])} days"
        assert card.locator("svg.pool-spark polyline").count() == 1
        row = card.locator("table.pool-repositories tr[data-backup='data']")
        assert row.locator("td.on-disk").get_attribute("data-bytes") == str(du)
        assert page.locator("#analyze-pools").count() == 0          # a viewer may not queue it
        OUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUT / "pools.png"), full_page=True)
    finally:
        drop_local_backup(api, cl, bj)
