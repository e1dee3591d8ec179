"""What the instant recovery tests of the service share (test_recovery_api.py, test_recovery_pages.py):
a local client's database backup - an archive holding a crashed PostgreSQL, as a snapshot holds it -
known to the service, a second local client as recovery host, and checks of what a session leaves."""
import json
import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.lib.borgrepo import BorgRepo
from tests.recovery.dbs import crashed_postgres
from uilib import wait_job


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
    """Wait (at most timeout) until no session but ours on this machine is being started or is broken:
    other tests may share the machine, and a cleanup tears down every session that is not healthy
    (theirs included, e.g. one whose mount a test of the collection killed on purpose)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mounted = open("/proc/self/mountinfo").read()
        unsettled = []
        for path in Path("/var/lib/borgfleet/recovery").glob("ir-*.json"):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            pid = (state.get("engine_proc") or {}).get("pid")
            engine_gone = state.get("state") == "running" and not (pid and os.path.exists(f"/proc/{pid}"))
            mounts_gone = any(f" {state.get(k)} " not in mounted for k in ("archive_mount", "layer_mount"))
            if state.get("name") != mine and (state.get("state") == "starting" or engine_gone or mounts_gone):
                unsettled.append(state.get("name"))
        if not unsettled:
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
    # An instance number of its own: RQ names workers <host>-<instance>, and a shutdown command sent
    # to another run's worker 1 on this machine reaches every worker of that name (Redis pub/sub).
    start_worker(71)
    # An archive name of its own per test: the default session name derives from it.
    archive_name = "pg-2026-11-25T02:%02d:%02d" % divmod(int(tag, 16) % 3600, 60)
    bj, archive, repo = archived_database(api, db, root, clients[0], "pg", "postgresql", pgdata, archive_name)
    yield {"root": root, "client": clients[0], "host": clients[1], "bj": bj, "archive": archive, "repo": repo}
    # A test that failed half-way leaves its sessions: remove them (by the service, as a user would).
    names = [cl["name"] for cl in clients]
    for cl in clients:
        for s in api("viewer").get(f"/api/recovery-sessions?server_id={cl['id']}").json["items"]:
            if s["client_name"] in names:
                wait_job(db, op.delete(f"/api/recovery-sessions/{s['id']}").json["job_id"], timeout=300)
    for b in api("viewer").get(f"/api/backup-jobs?client_id={clients[0]['id']}").json["items"]:
        op.delete(f"/api/backup-jobs/{b['id']}")
    for cl in clients:
        op.delete(f"/api/servers/{cl['id']}")


def archived_database(api, db, root, client, name, engine, datadir, archive_name):
    """A database backup job (taken from a snapshot) of the client whose repository holds one archive of
    datadir, made with borg and listed by the service (list_archives): (backup job, archive, BorgRepo)."""
    op = api("operator")
    bj = op.post("/api/backup-jobs", json={"client_id": client["id"], "name": name, "passphrase": f"{name}-pass-123",
                                           "databases": [{"engine": engine, "method": "snapshot"}]})
    assert bj.status_code == 201, bj.json
    bj = bj.json
    repo = BorgRepo(bj["location"], f"{name}-pass-123", base_dir=root / f"base-{client['name']}")
    Path(bj["location"]).parent.mkdir(parents=True, exist_ok=True)
    repo.run("init", "--encryption", "repokey-blake2", bj["location"])
    repo.create(archive_name, str(datadir))
    job = op.post(f"/api/backup-jobs/{bj['id']}/refresh-archives").json["job_id"]
    assert wait_job(db, job, timeout=300)["status"] == "succeeded"
    archives = api("viewer").get(f"/api/archives?backup_job_id={bj['id']}").json["items"]
    assert [a["name"] for a in archives] == [archive_name] and archives[0]["recoverable"] is True
    return bj, archives[0], repo


def run(api, db, method, path, **kw):
    """An action through the API: 202 with the job, then the finished job."""
    resp = getattr(api("operator"), method)(path, **kw)
    assert resp.status_code == 202, (path, resp.status_code, resp.json)
    job_id = resp.json["job_id"]
    row = wait_job(db, job_id, timeout=400)
    job = api("viewer").get(f"/api/jobs/{job_id}").json
    assert row["status"] == "succeeded", (path, row["error"], job["result"])
    return job
