"""The pages' look: the pinned toolkit is served and applied, figures read as a person reads them,
light and dark themes work (system preference, then the toggle, remembered), destruction asks in a
modal. Screenshots of every page in both themes go to tests/output/look/ to be looked at."""
from pathlib import Path

from test_browser import browser, login, web  # noqa: F401  (fixtures: Chromium and the web process)
from uilib import drop_local_backup, make_local_backup, set_up_and_back_up, wait_job

from borgfleet_ui import look

OUT = Path(__file__).resolve().parents[1] / "output" / "look"


def test_figures_read_as_people_read_them():
    assert [look.size(v) for v in (None, 0, 1023, 1536, 5 * 1024 ** 3)] == ["", "0 B", "1023 B", "1.5 KiB", "5.0 GiB"]
    assert [look.duration(v) for v in (0.4, 59, 185, 7800, 90061)] == ["0 s", "59 s", "3 min 5 s", "2 h 10 min", "1 d 1 h"]
    import datetime
    now = datetime.datetime(2026, 12, 2, 10, 0)
    assert look.ago(now - datetime.timedelta(seconds=20), now) == "just now"
    assert look.ago(now - datetime.timedelta(minutes=5), now) == "5 min ago"
    assert look.ago(now + datetime.timedelta(hours=4), now) == "in 4 h"
    assert look.when(datetime.datetime(2026, 12, 2, 9, 14, 33)) == "2026-12-02 09:14 UTC"
    assert look.status_colour("failed") == "danger" and look.status_colour("whatever") == "secondary"


def _last_job(db):
    from borgfleet_ui.db import query
    return query(db, "SELECT id FROM jobs ORDER BY seq DESC LIMIT 1", one=True)["id"]


def test_pages_in_light_and_dark(api, db, start_worker, tmp_path, browser, web, users):  # noqa: F811
    cl, bj = make_local_backup(api, tmp_path, "look")
    start_worker(1)
    try:
        job = set_up_and_back_up(api, db, cl, bj)
        OUT.mkdir(parents=True, exist_ok=True)
        page = login(browser, web, users["admin"])

        # The toolkit is served by the app itself (CSP 'self') and applied.
        css = page.request.get(web + "/vendor/bootstrap/css/bootstrap.min.css")
        assert css.status == 200 and "Bootstrap  v5.3.8" in css.text()
        assert page.evaluate("typeof bootstrap") == "object"
        assert page.evaluate("getComputedStyle(document.querySelector('.navbar')).display") == "flex"

        # Sizes are human; the exact figure stays in data-bytes and the title.
        page.goto(web + "/archives")
        cell = page.locator("#archives tr[data-name] td.original").first
        assert cell.inner_text().split()[-1] in ("B", "KiB", "MiB", "GiB")
        assert int(cell.get_attribute("data-bytes")) > 0 and "bytes" in cell.get_attribute("title")

        # An action that queues a job lands on the job's page with a toast that says so.
        page.goto(web + "/backup-jobs")
        page.locator("#backup-jobs button.run-now").first.click()
        page.wait_for_url("**/jobs/*")
        toast = page.locator("#toasts .toast")
        assert toast.count() == 1 and "queued" in toast.inner_text() and page.url.split("/")[-1][:8] in toast.inner_text()
        page.screenshot(path=str(OUT / "job-queued-toast.png"))
        page.goto(web + "/backup-jobs")
        assert page.locator("#toasts").count() == 0   # said once
        assert wait_job(db, _last_job(db))["status"] == "succeeded"

        # The dashboard says how each backup job stands: this one succeeded twice, has no schedule.
        page.goto(web + "/")
        row = page.locator(f"#dashboard-backups tr[data-id='{bj['id']}']")
        assert row.get_attribute("data-state") == "ok" and row.locator(".state").inner_text() == "ok"

        # Light by default (the browser prefers light), dark after the toggle, kept across pages (every
        # page's screenshot in both themes and languages: tests/ui/test_accessibility.py).
        page.goto(web + "/")
        assert page.get_attribute("html", "data-bs-theme") == "light"
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
        page.click("#theme-toggle")
        for path in ("/", "/servers", f"/jobs/{job['id']}"):
            page.goto(web + path)
            assert page.get_attribute("html", "data-bs-theme") == "dark"
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(255, 255, 255)"
        page.click("#theme-toggle")      # back to light: the choice is kept with the account
        # A browser that prefers dark gets dark without touching the toggle.
        ctx = browser.new_context(color_scheme="dark")
        dark = ctx.new_page()
        dark.goto(web + "/login")
        assert dark.get_attribute("html", "data-bs-theme") == "dark"
        dark.screenshot(path=str(OUT / "login-dark.png"))
        ctx.close()
    finally:
        drop_local_backup(api, cl, bj)


def test_a_scheduled_backup_is_stale_after_its_next_run_plus_half_an_interval():
    import datetime
    from borgfleet_ui.fleet.backup_jobs import stale_since
    last = datetime.datetime(2026, 12, 1, 2, 5)
    # Daily at 02:00: due 12-02 02:00, stale 12 h later.
    assert stale_since("0 2 * * *", "UTC", last) == datetime.datetime(2026, 12, 2, 14, 0)
    # Every 15 minutes: due 02:15, 30 minutes' grace at least (half the interval would be 7.5).
    assert stale_since("*/15 * * * *", "UTC", last) == datetime.datetime(2026, 12, 1, 2, 45)
    # In Paris (UTC+1 in December): 02:00 local is 01:00 UTC.
    assert stale_since("0 2 * * *", "Europe/Paris", last) == datetime.datetime(2026, 12, 2, 13, 0)
    assert stale_since(None, "UTC", last) is None and stale_since("0 2 * * *", "UTC", None) is None
