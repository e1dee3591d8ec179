"""Instant recovery from the service, for real: a local client's database backup (an archive holding
a crashed PostgreSQL, as a snapshot holds it) is started by the API and from the pages (on the
client, and on a second client as recovery host), reached with the very command line the job page
shows, stopped, resumed with what was written to it, and removed - nothing left mounted or running.
Screenshots of each page go to tests/output/recovery/ for a reviewer."""
import json
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.lib.borgrepo import BorgRepo
from tests.lib.sshd import free_port
from tests.recovery.dbs import PG_ROWS, crashed_postgres
from test_browser import CHROMIUM, browser, login, wait_final, web  # noqa: F401 (fixtures)
from uilib import REPO, wait_job

SHOTS = REPO / "tests" / "output" / "recovery"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")


def count_rows(command, sql="SELECT count(*) FROM accounts"):
    """Run the command line a page shows (split as a shell would, never through one) with a query."""
    proc = subprocess.run(shlex.split(command) + ["-X", "-A", "-t", "-c", sql], capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


def leftovers(name):
    """Mounts and processes of session `name` still on this host (mount table, every command line)."""
    mount = f"/run/borgfleet/mounts/ir-{name}"
    mounts = [line for line in open("/proc/self/mountinfo") if mount in line]
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if mount in cmdline or f"/run/borgfleet/recovery/{name}" in cmdline:
            procs.append((pid, cmdline))
    files = list(Path("/var/lib/borgfleet/recovery").glob(f"ir-{name}*"))
    return mounts, procs, files


def others_settled(mine, timeout=180):
    """Wait until no session but ours is being started on this machine: other tests may share it,
    and a cleanup tears down every session that is not healthy yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        starting = []
        for path in Path("/var/lib/borgfleet/recovery").glob("ir-*.json"):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if state.get("name") != mine and state.get("state") == "starting":
                starting.append(state.get("name"))
        if not starting:
            return
        time.sleep(1)


@pytest.fixture(scope="module")
def pg_backup(ui_env, test_root):
    """A PostgreSQL data directory crashed mid-write, archived with borg: what a snapshot backup holds."""
    root = Path(tempfile.mkdtemp(prefix="ui-recovery-", dir=test_root))
    root.chmod(0o755)
    return root, crashed_postgres(root / "pg")


@pytest.fixture()
def fleet(api, db, pg_backup, start_worker):
    """Two local clients (the one backed up and a recovery host), the database backup job with its
    archive known to the service, and a worker."""
    root, pgdata = pg_backup
    tag = os.urandom(3).hex()
    admin, op = api("admin"), api("operator")
    clients = []
    for name in (f"ir-{tag}", f"ir-{tag}-rh"):
        cl = admin.post("/api/servers", json={"name": name, "role": "client", "connection": "local",
                                              "local_pool_path": str(root / f"repos-{tag}"),
                                              "vars": {"borgfleet_borg_base_dir": str(root / f"base-{name}")}})
        assert cl.status_code == 201, cl.json
        clients.append(cl.json)
    bj = op.post("/api/backup-jobs", json={"client_id": clients[0]["id"], "name": "pg", "passphrase": "pg-pass-123",
                                           "databases": [{"engine": "postgresql", "method": "snapshot"}]})
    assert bj.status_code == 201, bj.json
    bj = bj.json
    repo = BorgRepo(bj["location"], "pg-pass-123", base_dir=root / f"base-{clients[0]['name']}")
    Path(bj["location"]).parent.mkdir(parents=True, exist_ok=True)
    repo.run("init", "--encryption", "repokey-blake2", bj["location"])
    # An archive name of its own per test: the default session name derives from it.
    archive_name = "pg-2026-11-25T02:%02d:%02d" % divmod(int(tag, 16) % 3600, 60)
    repo.create(archive_name, str(pgdata))
    start_worker(1)
    job = op.post(f"/api/backup-jobs/{bj['id']}/refresh-archives").json["job_id"]
    assert wait_job(db, job, timeout=300)["status"] == "succeeded"
    archives = api("viewer").get(f"/api/archives?backup_job_id={bj['id']}").json["items"]
    assert [a["name"] for a in archives] == [archive_name] and archives[0]["recoverable"] is True
    yield {"client": clients[0], "host": clients[1], "bj": bj, "archive": archives[0], "repo": repo}
    # A test that failed half-way leaves its sessions: remove them (by the service, as a user would).
    for cl in clients:
        for s in api("viewer").get(f"/api/recovery-sessions?server_id={cl['id']}").json["items"]:
            if s["backup_job_id"] == bj["id"]:
                wait_job(db, op.delete(f"/api/recovery-sessions/{s['id']}").json["job_id"], timeout=300)
    op.delete(f"/api/backup-jobs/{bj['id']}")
    for cl in clients:
        op.delete(f"/api/servers/{cl['id']}")


def run(api, db, method, path, **kw):
    """An action through the API: 202 with the job, then the finished job."""
    resp = getattr(api("operator"), method)(path, **kw)
    assert resp.status_code == 202, (path, resp.status_code, resp.json)
    job_id = resp.json["job_id"]
    row = wait_job(db, job_id, timeout=400)
    job = api("viewer").get(f"/api/jobs/{job_id}").json
    assert row["status"] == "succeeded", (path, row["error"], job["result"])
    return job


def test_api_start_connect_stop_resume_remove(api, db, fleet):
    viewer = api("viewer")
    aid = fleet["archive"]["id"]
    assert viewer.post(f"/api/archives/{aid}/instant-recovery", json={}).status_code == 403
    bad = api("operator").post(f"/api/archives/{aid}/instant-recovery", json={"port": 70000})
    assert bad.status_code == 400 and "port" in bad.json["error"]

    started = api("operator").post(f"/api/archives/{aid}/instant-recovery", json={})
    assert started.status_code == 202 and started.json["status"] == "queued"
    # While a session is being started on the client, a cleanup there is refused (it would tear it down).
    early = api("operator").post(f"/api/servers/{fleet['client']['id']}/recovery-cleanup")
    assert early.status_code == 400 and started.json["job_id"] in early.json["error"]
    row = wait_job(db, started.json["job_id"], timeout=400)
    job = viewer.get(f"/api/jobs/{started.json['job_id']}").json
    assert row["status"] == "succeeded", (row["error"], job["result"])
    result = job["result"]
    assert name_of(fleet["archive"]["name"]) == result["session"]["name"]
    name = result["session"]["name"]
    assert result["host"] == fleet["client"]["name"] and job["archive_id"] == aid
    connect = result["connect"]
    assert connect["engine"] == "postgresql" and connect["address"] == "127.0.0.1" and connect["port"] >= 55432
    assert connect["socket_dir"] == f"/run/borgfleet/recovery/{name}"
    assert connect["local_command"] == (f"sudo -u postgres psql -h /run/borgfleet/recovery/{name}"
                                        f" -p {connect['port']} -d postgres")
    # The rows of the archive, the one committed after the last checkpoint (replayed from WAL) included.
    assert count_rows(connect["local_command"]) == (0, str(PG_ROWS + 1), "")

    sessions = viewer.get("/api/recovery-sessions").json["items"]
    mine = [s for s in sessions if s["name"] == name and s["host"] == fleet["client"]["name"]]
    assert len(mine) == 1, sessions
    s = mine[0]
    assert s["id"] == result["session_id"] and s["archive_id"] == aid and s["backup_job_id"] == fleet["bj"]["id"]
    assert s["health_label"] == "running" and s["engine"] == "postgresql" and s["connect"] == connect
    assert "pg-pass-123" not in "\n".join(viewer.get(f"/api/jobs/{job['id']}/log").json["lines"])

    rc, out, err = count_rows(connect["local_command"], "INSERT INTO accounts VALUES (200001, 'in-session', 1)")
    assert rc == 0, err
    stopped = run(api, db, "post", f"/api/recovery-sessions/{s['id']}/stop")
    assert stopped["result"]["session"]["state"] == "stopped"
    s = viewer.get(f"/api/recovery-sessions/{s['id']}").json
    assert s["health_label"] == "stopped" and s["connect"] is None and s["pid"] is None
    assert count_rows(connect["local_command"])[0] != 0   # nothing answers any more
    mounts, procs, _ = leftovers(name)
    assert len(mounts) == 2 and not [p for p in procs if "postgres" in p[1] and " -D " in p[1]], procs

    resumed = run(api, db, "post", f"/api/recovery-sessions/{s['id']}/resume")
    assert resumed["result"]["connect"] == connect   # same port, same socket
    # What was written before the stop is still there: the layer was kept.
    assert count_rows(connect["local_command"]) == (0, str(PG_ROWS + 2), "")

    # The query of every host sees it running (and its layer holding the write).
    queried = run(api, db, "post", "/api/recovery-sessions/refresh")
    assert fleet["client"]["name"] in queried["result"]["hosts"]
    s = viewer.get(f"/api/recovery-sessions/{s['id']}").json
    assert s["health_label"] == "running" and s["layer_bytes"] > 0

    removed = run(api, db, "delete", f"/api/recovery-sessions/{s['id']}")
    assert "engine" in removed["result"]["removed"], removed["result"]
    assert viewer.get(f"/api/recovery-sessions/{s['id']}").status_code == 404
    assert leftovers(name) == ([], [], [])
    assert count_rows(connect["local_command"])[0] != 0
    # The archive is untouched: borg checks it and lists it as before.
    fleet["repo"].run("check", fleet["bj"]["location"])
    assert fleet["repo"].archive_names() == [fleet["archive"]["name"]]


def name_of(archive):
    """The session name the module derives from an archive name (":" is not wanted in paths)."""
    return archive.replace(":", "-")


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
