"""Workers supervised by `borgfleet-ui serve` where systemd is not PID 1 (this machine): the workers
page lists the scheduler and the worker with its own figures (PID, CPU, memory, uptime), stops it
(it stays listed, stopped) and starts it again, and its logs viewer filters by lines and time."""
import os
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta

import pytest

from borgfleet_ui import workers
from tests.lib.sshd import free_port
from test_browser import CHROMIUM, browser, login  # noqa: F401 (fixtures)
from uilib import REPO, descendants, wait_for, worker_env

pytestmark = [pytest.mark.skipif(workers.systemd_running(), reason="exercises the serve supervisor"),
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")]


@pytest.fixture()
def serve(ui_env, tmp_path):
    port = free_port("127.0.0.1")
    log = open(tmp_path / "serve.log", "w")
    p = subprocess.Popen([sys.executable, "-m", "borgfleet_ui", "serve", "--port", str(port), "--workers", "1"],
                         env=worker_env(), stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO), start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return urllib.request.urlopen(url + "/api/health", timeout=2).status == 200
        except OSError:
            return False
    try:
        wait_for(up, timeout=60, what="serve's web server")
        yield url, os.path.join(os.path.dirname(ui_env["RUN_DIR"]), "logs")
    finally:
        tree = [p.pid] + descendants(p.pid)
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=40)
        except subprocess.TimeoutExpired:
            for pid in tree:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        log.close()


def test_serve_workers_stop_start_and_logs_from_the_page(api, redis, serve, browser, users, monkeypatch):  # noqa: F811
    url, logdir = serve
    name = workers.worker_name(1)

    def row(state):
        return next((w for w in api("admin").get("/api/workers").json["items"]
                     if w["name"] == name and w["state"] == state), None)
    w = wait_for(lambda: (x := row("idle")) and "cpu_percent" in x and x, timeout=60, what="worker 1 idle, reporting")
    assert w["control"] == "serve" and w["rss_bytes"] > 10_000_000 and w["uptime_seconds"] >= 0
    first_pid = w["pid"]
    sched = api("admin").get("/api/workers").json["scheduler"]
    assert sched["pid"] and sched["hostname"] and sched["rss_bytes"] > 0 and "cpu_percent" in sched
    # A worker of this host that serve does not supervise (instance 9) cannot be started from here.
    assert workers.control_mode(redis, w["hostname"], workers.worker_name(9)) is None
    assert workers.control_mode(redis, w["hostname"], name) == "serve"

    page = login(browser, url, users["admin"])
    page.goto(url + "/workers")
    assert page.locator("#scheduler .badge").first.inner_text() == "running"
    tr = page.locator(f"#workers tr[data-name='{name}']")
    assert tr.locator("td.pid").inner_text() == str(first_pid) and tr.locator("td.memory").inner_text().endswith("MiB")
    page.screenshot(path=str(_out("workers.png")), full_page=True)
    # Stop: a confirmation first, then the worker finishes (idle: at once) and stays listed.
    tr.locator("button.worker-stop").click()
    page.wait_for_selector("#confirm-modal.show")
    with page.expect_navigation():
        page.click("#confirm-yes")
    wait_for(lambda: row("stopped"), timeout=60, what="worker 1 stopped")
    page.goto(url + "/workers")
    tr = page.locator(f"#workers tr[data-name='{name}']")
    assert tr.get_attribute("data-state") == "stopped" and tr.locator("button.worker-start").count() == 1
    page.screenshot(path=str(_out("workers-stopped.png")), full_page=True)
    with page.expect_navigation():
        tr.locator("button.worker-start").click()
    w = wait_for(lambda: row("idle"), timeout=60, what="worker 1 started again")
    assert w["pid"] != first_pid

    # The logs viewer (serve's own web reads serve's log files): lines, then since.
    page.goto(f"{url}/workers/{name}/logs?lines=3")
    assert 1 <= int(page.get_attribute("#log", "data-lines")) <= 3
    page.goto(f"{url}/workers/{name}/logs?lines=500&since=10m")
    stamps = [datetime.strptime(m.group(0), "%Y-%m-%d %H:%M:%S") for m in
              (re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", line) for line in page.inner_text("#log").splitlines()) if m]
    assert stamps and min(stamps) >= datetime.utcnow() - timedelta(minutes=10, seconds=5)
    page.goto(f"{url}/workers/{name}/logs?lines=10&since=yesterday")
    assert "since must be" in page.inner_text("#log-error")
    # The API reads the same files where the log directory is known.
    monkeypatch.setenv("BORGFLEET_LOG_DIR", logdir)
    resp = api("admin").get(f"/api/workers/{name}/logs?lines=2")
    assert resp.status_code == 200 and len(resp.json["lines"]) <= 2
    assert api("admin").get(f"/api/workers/{name}/logs?lines=0").status_code == 400


def _out(name):
    from pathlib import Path
    d = Path(__file__).resolve().parents[1] / "output" / "workers"
    d.mkdir(parents=True, exist_ok=True)
    return d / name
