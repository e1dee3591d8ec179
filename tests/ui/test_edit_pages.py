"""The editing pages in Chromium (Playwright): a server's address edited (inline error on a bad one),
a backup job disabled, enabled and rescheduled (its next run follows), a user created who logs in
with the password shown once, its role changed, its password reset (old refused, new accepted), an
API token created and revoked (the API answers 200, then 401), the application name changed (the
navbar shows it). Screenshots in light and dark in tests/output/edit/."""
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_browser import CHROMIUM, browser, login, web  # noqa: F401 (fixtures)

OUT = Path(__file__).resolve().parents[1] / "output" / "edit"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")


def shots(page, name):
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / f"{name}-light.png"), full_page=True)
    page.click("#theme-toggle")
    page.screenshot(path=str(OUT / f"{name}-dark.png"), full_page=True)
    page.click("#theme-toggle")


def api_status(web, token):
    req = urllib.request.Request(web + "/api/me", headers={"Authorization": f"Bearer {token}"})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def try_login(browser, web, name, password):
    page = browser.new_context().new_page()
    page.goto(web + "/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("#login")
    page.wait_for_load_state()
    return page


def test_edit_pages(browser, web, users, api):  # noqa: F811
    cl = api("admin").post("/api/servers", json={"name": "edit-pages-cl", "role": "client", "connection": "ssh",
                                                 "address": "127.0.0.1", "local_pool_path": "/var/tmp/edit-pages"}).json
    bj = api("operator").post("/api/backup-jobs", json={"client_id": cl["id"], "name": "etc", "paths": ["/etc"],
                                                        "passphrase": "correct horse battery",
                                                        "schedule": "0 2 * * *"}).json
    made_user = None
    try:
        page = login(browser, web, users["admin"])
        # A server's address: refused inline while bad, then saved.
        page.goto(f"{web}/servers/{cl['id']}")
        page.click("#edit-server")
        page.fill("#e-address", "-oProxyCommand=evil")
        page.press("#e-address", "Tab")
        page.wait_for_selector("[data-feedback-for=address].d-block")
        assert "address" in page.inner_text("[data-feedback-for=address]")
        assert page.is_disabled("#server-save")
        assert "Its repositories on the backup server are NOT deleted" in page.inner_text("#deletion-summary")
        assert "1 backup job" in page.inner_text("#deletion-summary")
        shots(page, "server-edit")
        page.fill("#e-address", "127.0.0.2")
        page.press("#e-address", "Tab")
        page.wait_for_selector("#server-edit-form[data-checked=ok]")
        # A new address is tested before it is saved: no sshd there, so saving asks for "anyway"
        # (tests/ui/test_server_edit.py tests the connection itself), then lands on the setup it queued.
        page.click("#server-save")
        page.wait_for_selector("#probe-result")
        assert "Not saved" in page.inner_text("#error")
        page.check("#save-anyway")
        page.click("#server-save")
        page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
        api("operator").post(f"/api/jobs/{page.url.rsplit('/', 1)[1]}/cancel")
        page.goto(f"{web}/servers/{cl['id']}")
        assert "127.0.0.2" in page.inner_text("#server-head")

        # A backup job: disabled (no next run), enabled, rescheduled (the next run moves).
        page.goto(f"{web}/backup-jobs/{bj['id']}")
        next_cell = "#schedules tr[data-kind=backup] td:nth-child(3)"
        first = page.get_attribute(next_cell, "title")
        assert first
        page.click("#toggle-enabled")
        page.wait_for_selector("#bj-head .badge:has-text('disabled')")
        assert page.get_attribute(next_cell, "title") in ("", None) or page.inner_text(next_cell).strip() == ""
        page.click("#toggle-enabled")
        page.wait_for_selector("#toggle-enabled:has-text('Disable')")
        page.fill("#s-sched", "not a cron")
        page.press("#s-sched", "Tab")
        page.wait_for_selector("[data-feedback-for=schedule].d-block")
        page.fill("#s-sched", "30 14 * * *")
        page.press("#s-sched", "Tab")
        page.wait_for_selector("#bj-settings-form[data-checked=ok]")
        page.click("#bj-settings-save")
        page.wait_for_selector("#schedules code:has-text('30 14 * * *')")
        second = page.get_attribute(next_cell, "title")
        assert second and second != first and "14:30" in second
        assert api("viewer").get(f"/api/backup-jobs/{bj['id']}").json["schedule"] == "30 14 * * *"
        shots(page, "backup-job")

        # A user: created (password shown once), logs in, role changed, password reset.
        page.click("#nav-settings")
        page.click("#admin-tabs >> text=Users")
        page.fill("#u-name", "pw-walker")
        page.select_option("#u-role", "viewer")
        page.click("#user-add-btn")
        password = page.inner_text("#new-password").strip()
        made_user = next(u["id"] for u in api("admin").get("/api/users").json["items"] if u["username"] == "pw-walker")
        walker = try_login(browser, web, "pw-walker", password)
        assert walker.url == web + "/" and "pw-walker" in walker.inner_text("#nav-account")
        page.goto(web + "/users")
        row = page.locator("#users tr[data-user=pw-walker]")
        row.locator("select[name=role]").select_option("operator")
        row.locator(".set-role").click()
        page.wait_for_selector("#users tr[data-user=pw-walker] select[name=role] option[value=operator][selected]",
                               state="attached")
        assert api("admin").get("/api/users").json["items"][-1]["role"] == "operator"
        page.locator("#users tr[data-user=pw-walker] .reset-password").click()
        page.click("#confirm-yes")
        page.wait_for_selector("#new-password")
        new_password = page.inner_text("#new-password").strip()
        assert new_password != password
        shots(page, "users")
        assert "/login" in try_login(browser, web, "pw-walker", password).url        # the old one is refused
        assert try_login(browser, web, "pw-walker", new_password).url == web + "/"

        # An API token: created (shown once), used, revoked.
        page.click("#nav-account")
        page.fill("#t-name", "walk-token")
        page.click("#token-add-btn")
        token = page.inner_text("#new-token").strip()
        assert api_status(web, token) == 200
        shots(page, "tokens")
        page.locator("#tokens tr[data-token=walk-token] .revoke-token").click()
        page.click("#confirm-yes")
        page.wait_for_selector("#tokens tr[data-token=walk-token]", state="detached")
        assert api_status(web, token) == 401

        # The application name: shown in the navbar.
        page.click("#nav-settings")
        page.fill("#st-tz", "Mars/Olympus")
        page.click("#settings-save")
        assert "Mars/Olympus" in page.inner_text("[data-feedback-for=default_timezone]")
        page.fill("#st-tz", "UTC")
        page.fill("#st-name", "Walked Fleet")
        page.click("#settings-save")
        page.wait_for_selector(".navbar-brand:has-text('Walked Fleet')")
        shots(page, "settings")
        assert re.search("Walked Fleet", page.title())
    finally:
        api("admin").put("/api/settings", json={"app_name": "BorgFleet"})
        if made_user:
            api("admin").put(f"/api/users/{made_user}", json={"disabled": True})
        api("operator").delete(f"/api/servers/{cl['id']}")
