"""Instant recovery from the pages in Chromium, for real: start an archive of a PostgreSQL backup on a
recovery host (another client) from the Archives page, reach it with the command line the job page
shows and count rows, see it on the sessions page, refresh its health, stop, resume, remove it through
the confirmation modal, and clean up a broken session on its host - nothing left mounted or running.
Screenshots of each page go to tests/output/recovery/ for a reviewer."""
import os
import re
import signal
from pathlib import Path

import pytest

from borgfleet_ui import db as dbm
from tests.lib.sshd import free_port
from tests.recovery.dbs import PG_ROWS
from recoverylib import count_rows, fleet, leftovers, others_settled, pg_backup, run  # noqa: F401 (fixtures)
from test_browser import CHROMIUM, browser, login, wait_final, web  # noqa: F401 (fixtures)
from uilib import REPO

SHOTS = REPO / "tests" / "output" / "recovery"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_pages_start_on_a_recovery_host_connect_stop_resume_remove(api, db, fleet, browser, web, users):
    host, aid, archive = fleet["host"], fleet["archive"]["id"], fleet["archive"]["name"]
    name, port = "pg-page-" + host["name"][3:9], free_port("127.0.0.1")
    page = login(browser, web, users["operator"])
    page.goto(web + f"/archives?backup_job_id={fleet['bj']['id']}")
    page.locator(f"#archives tr[data-name='{archive}'] a.instant-recovery").click()
    page.wait_for_url(re.compile(rf".*/archives/{aid}/instant-recovery$"))
    page.check("#where-remote")
    page.select_option("#r-host", label=host["name"])
    page.fill("#r-port", str(port))
    page.fill("#r-name", name)
    shot(page, "1-start-form")
    page.click("#start-recovery-btn")
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    job_url = page.url
    assert wait_final(page, timeout=400_000) == "succeeded", page.inner_text("#log")
    # The page reloads by itself with the connection details of the finished job.
    page.wait_for_selector("#recovery-connect", timeout=30_000)
    shot(page, "2-job-connection")
    assert page.inner_text("#recovery-connect .engine") == "postgresql"
    assert page.inner_text("#recovery-connect .port") == str(port)
    assert page.inner_text("#recovery-connect .socket-dir") == f"/run/borgfleet/recovery/{name}"
    command = page.input_value("#local-command")
    assert f"-p {port}" in command and "pg-pass-123" not in page.content()
    assert count_rows(command) == (0, str(PG_ROWS + 1), "")
    job = api("viewer").get("/api/jobs/" + job_url.rsplit("/", 1)[1]).json
    assert job["server_id"] == host["id"] and job["result"]["host"] == host["name"]

    # Sessions page: the row with archive, engine, address:port, age, layer (human), health.
    page.goto(web + "/recovery")
    row = page.locator(f"#sessions tr[data-name='{name}'][data-host='{host['name']}']")
    assert row.count() == 1
    text = row.inner_text()
    assert archive in text and "postgresql" in text and f"127.0.0.1:{port}" in text and "running" in text
    assert re.search(r"\d+(\.\d)? (B|KiB|MiB)", row.locator("td.layer").inner_text())
    shot(page, "3-sessions")

    # The session's page asks its host again and shows the health it answered.
    row.locator("a.session-link").click()
    page.click("#refresh-health")
    page.wait_for_selector("#health-refresh")
    page.wait_for_url(re.compile(r".*/recovery/\d+$"), timeout=300_000)
    assert "engine running" in page.inner_text("#health") and "just now" in page.inner_text("#checked")
    shot(page, "4-session")
    # Opened with a health older than a minute, the page asks the host again by itself.
    sid = int(re.search(r"/recovery/(\d+)", page.url).group(1))
    dbm.execute(db, "UPDATE recovery_sessions SET checked_at = checked_at - INTERVAL 10 MINUTE WHERE id=%s", (sid,))
    page.goto(web + f"/recovery/{sid}")
    page.wait_for_url(re.compile(r".*/recovery/\d+\?job=[0-9a-f-]{36}$"))
    page.wait_for_url(re.compile(r".*/recovery/\d+$"), timeout=300_000)
    assert "just now" in page.inner_text("#checked") and "engine running" in page.inner_text("#health")

    # Stop from the sessions page, resume from the session's page.
    page.goto(web + "/recovery")
    row.locator("button.stop").click()
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    assert wait_final(page, timeout=300_000) == "succeeded", page.inner_text("#log")
    page.goto(web + "/recovery")
    assert "stopped" in row.locator(".health").inner_text()
    assert count_rows(command)[0] != 0
    row.locator("a.session-link").click()
    page.click("button.resume")
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    assert wait_final(page, timeout=300_000) == "succeeded", page.inner_text("#log")
    page.wait_for_selector("#recovery-connect", timeout=30_000)
    assert page.input_value("#local-command") == command
    assert count_rows(command) == (0, str(PG_ROWS + 1), "")

    # A viewer sees the sessions but no action.
    viewer = login(browser, web, users["viewer"])
    viewer.goto(web + "/recovery")
    assert viewer.locator(f"#sessions tr[data-name='{name}']").count() == 1
    assert viewer.locator("#sessions button").count() == 0 and viewer.locator("#cleanup").count() == 0

    # Remove asks first in the modal: Keep leaves it, Remove session removes it.
    page.goto(web + "/recovery")
    row.locator("button.remove").click()
    modal = page.locator("#confirm-modal")
    modal.wait_for(state="visible")
    assert name in page.inner_text("#confirm-text")
    shot(page, "5-remove-confirm")
    modal.locator("button", has_text="Keep").click()
    modal.wait_for(state="hidden")
    assert page.url.endswith("/recovery") and count_rows(command)[0] == 0
    row.locator("button.remove").click()
    modal.wait_for(state="visible")
    page.click("#confirm-yes")
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    assert wait_final(page, timeout=300_000) == "succeeded", page.inner_text("#log")
    page.goto(web + "/recovery")
    assert page.locator(f"#sessions tr[data-name='{name}'][data-host='{host['name']}']").count() == 0
    assert leftovers(name) == ([], [], [])

    # A session whose engine died (killed here) is broken: the query of every host shows it, and
    # Clean up on its host tears it down.
    broken = "pg-broken-" + host["name"][3:9]
    job = run(api, db, "post", f"/api/archives/{aid}/instant-recovery",
              json={"host_id": host["id"], "name": broken})
    os.killpg(job["result"]["session"]["pid"], signal.SIGKILL)
    page.goto(web + "/recovery")
    page.click("#refresh-sessions")
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    assert wait_final(page, timeout=300_000) == "succeeded", page.inner_text("#log")
    queried = api("viewer").get("/api/jobs/" + page.url.rsplit("/", 1)[1]).json["result"]
    page.goto(web + "/recovery")
    row = page.locator(f"#sessions tr[data-name='{broken}'][data-host='{host['name']}']")
    assert row.count() == 1, (queried, list(Path("/var/lib/borgfleet/recovery").iterdir()))
    assert "broken" in row.locator(".health").inner_text()
    shot(page, "6-broken-session")
    page.select_option("#cleanup select[name=server_id]", label=host["name"])
    others_settled(broken)
    page.click("#cleanup-btn")
    modal.wait_for(state="visible")
    page.click("#confirm-yes")
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    assert wait_final(page, timeout=300_000) == "succeeded", page.inner_text("#log")
    result = api("viewer").get("/api/jobs/" + page.url.rsplit("/", 1)[1]).json["result"]
    assert result["host"] == host["name"] and f"session {broken}" in result["removed"], result
    page.wait_for_selector("#removed", timeout=30_000)
    assert f"session {broken}" in page.inner_text("#removed")
    shot(page, "7-cleanup-job")
    page.goto(web + "/recovery")
    assert page.locator(f"#sessions tr[data-name='{broken}'][data-host='{host['name']}']").count() == 0
    assert leftovers(broken) == ([], [], [])
