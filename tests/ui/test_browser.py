"""The pages in a real headless Chromium (Debian's, driven by Playwright's Python package):
log in, add a client with local repositories, add a backup job, run setup, Run now, watch the
live log, see the archive (read back with borg), delete it with the confirmation (gone from
borg too), and role-limited views."""
import os
import re
import subprocess
import sys

import pytest

from borgfleet_ui import workers
from uilib import REPO, wait_for, worker_env
from tests.lib.borgrepo import BorgRepo
from tests.lib.sshd import free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")


@pytest.fixture(scope="module")
def web(ui_env, tmp_path_factory):
    import urllib.request
    port = free_port("127.0.0.1")
    log = open(tmp_path_factory.mktemp("web") / "web.log", "w")
    p = subprocess.Popen([sys.executable, "-m", "borgfleet_ui", "web", "--port", str(port)], env=worker_env(),
                         stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return urllib.request.urlopen(url + "/api/health", timeout=2).status == 200
        except OSError:
            return False
    wait_for(up, timeout=30, what="the web server")
    yield url
    p.terminate()
    p.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def login(browser, web, user):
    page = browser.new_context().new_page()
    page.goto(web + "/")
    assert "/login" in page.url
    page.fill("input[name=username]", user[0])
    page.fill("input[name=password]", user[1])
    page.click("#login")
    page.wait_for_url(web + "/")
    return page


def wait_final(page, timeout=180_000):
    page.wait_for_selector("body[data-final]", timeout=timeout)
    return page.get_attribute("body", "data-final")


def test_browser_flow(browser, web, users, start_worker, tmp_path, api):
    data = tmp_path / "web-data"
    data.mkdir()
    (data / "hello.txt").write_text("hello from the browser test\n")
    start_worker(1)
    bad = browser.new_context().new_page()
    bad.goto(web + "/login")
    bad.fill("input[name=username]", users["admin"][0])
    bad.fill("input[name=password]", "wrong")
    bad.click("#login")
    assert "Wrong user name or password" in bad.inner_text("#error")

    # Extra vars are set by admins only: an admin adds the client, the operator does the rest.
    admin = login(browser, web, users["admin"])
    admin.goto(web + "/servers")
    admin.fill("#add-server input[name=name]", "web-client")
    admin.select_option("#add-server select[name=role]", "client")
    admin.select_option("#add-server select[name=connection]", "local")
    admin.fill("#add-server input[name=local_pool_path]", str(tmp_path / "web-repos"))
    admin.fill("#add-server textarea[name=vars]", '{"borgfleet_borg_base_dir": "%s"}' % (tmp_path / "web-base"))
    admin.click("#add-server-btn")
    page = login(browser, web, users["operator"])
    assert page.inner_text("h1") == "Dashboard"
    page.goto(web + "/servers")
    assert page.locator("#add-server textarea[name=vars]").count() == 0
    assert "not set up" in page.locator("#servers tr[data-name=web-client]").inner_text()
    page.goto(web + "/backup-jobs")
    page.select_option("#add-backup select[name=client_id]", label="web-client")
    page.fill("#add-backup input[name=name]", "web")
    page.fill("#add-backup textarea[name=paths]", str(data))
    page.fill("#add-backup input[name=passphrase]", "browser-pass-1")
    page.click("#add-backup-btn")
    # A new backup's repository is created by setup: the client reads "needs setup" until it runs.
    page.goto(web + "/servers")
    row = page.locator("#servers tr[data-name=web-client]")
    assert "needs setup" in row.inner_text()
    row.locator("button.setup-btn").click()
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    assert wait_final(page) == "succeeded", page.inner_text("#log")
    assert "PLAY RECAP" in page.inner_text("#log")
    page.goto(web + "/servers")
    assert "ok" in page.locator("#servers tr[data-name=web-client] td.setup").inner_text()
    page.goto(web + "/backup-jobs")
    page.locator("#backup-jobs tr[data-name='web-client/web'] button.run-now").click()
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    assert page.inner_text("#status") in ("queued", "waiting", "running", "succeeded")
    assert wait_final(page) == "succeeded", page.inner_text("#log")
    assert "borgfleet backup result" in page.inner_text("#log")
    assert "browser-pass-1" not in page.content()

    page.goto(web + "/archives")
    row = page.locator("#archives tr[data-name^='web-']")
    assert row.count() == 1 and row.locator(".nfiles").inner_text() == "1"
    name = row.get_attribute("data-name")
    repo = BorgRepo(str(tmp_path / "web-repos" / "web-client" / "web"), "browser-pass-1", base_dir=tmp_path / "web-base")
    assert repo.archive_names() == [name]
    restored = repo.extract(name, tmp_path / "restore")
    assert (restored / str(data / "hello.txt").lstrip("/")).read_text() == "hello from the browser test\n"
    # Delete asks first, in a modal naming the archive; "Keep" leaves it, "Delete archive" queues the job.
    row.locator("button.delete").click()
    modal = page.locator("#confirm-modal")
    modal.wait_for(state="visible")
    assert name in page.inner_text("#confirm-text")
    modal.locator("button", has_text="Keep").click()
    modal.wait_for(state="hidden")
    assert page.url.endswith("/archives") and repo.archive_names() == [name]
    row.locator("button.delete").click()
    modal.wait_for(state="visible")
    page.click("#confirm-yes")
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    assert wait_final(page) == "succeeded", page.inner_text("#log")
    page.goto(web + "/archives")
    assert page.locator(f"#archives tr[data-name='{name}']").count() == 0
    assert repo.archive_names() == []

    # A viewer sees the pages without action buttons and cannot open the workers page.
    viewer = login(browser, web, users["viewer"])
    viewer.goto(web + "/backup-jobs")
    assert viewer.locator("button.run-now").count() == 0 and viewer.locator("#add-backup").count() == 0
    assert viewer.goto(web + "/workers").status == 403

    admin = login(browser, web, users["admin"])
    admin.goto(web + "/workers")
    row = f"#workers tr[data-name='{workers.worker_name(1)}']"
    assert admin.locator(f"{row} td.state").inner_text() in ("idle", "busy")
    admin.locator(f"{row} button.worker-stop").click()            # asks first, in the modal
    admin.wait_for_selector("#confirm-modal.show")
    with admin.expect_navigation():
        admin.click("#confirm-yes")
    # It finishes, leaves RQ's registry and stays listed as stopped (started by hand: no start button).
    wait_for(lambda: admin.reload() and admin.locator(row).get_attribute("data-state") == "stopped", timeout=30,
             what="the stopped worker listed as stopped")
    assert admin.locator(f"{row} button.worker-stop").count() == 0

    cl = [s for s in api("viewer").get("/api/servers").json["items"] if s["name"] == "web-client"][0]
    for bj in api("viewer").get("/api/backup-jobs", query_string={"client_id": cl["id"]}).json["items"]:
        api("operator").delete(f"/api/backup-jobs/{bj['id']}")
    api("operator").delete(f"/api/servers/{cl['id']}")
