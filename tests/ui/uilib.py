"""Helpers for the service tests (imported by tests/lib/ui_fixtures.py and the tests).

A module of its own, not conftest, so `from uilib import ...` cannot pick up another
directory's conftest module when the whole suite runs.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Short heartbeats so a killed worker's job is found abandoned in seconds (production: 30 s).
os.environ.setdefault("BORGFLEET_HEARTBEAT_TTL", "6")

REPO = Path(__file__).resolve().parents[2]
UI = REPO / "ui"
sys.path.insert(0, str(UI))

from borgfleet_ui import db as dbm, queue as q  # noqa: E402

# Each run claims a Redis db number of its own (0 is the service's; the benchmarks claim theirs
# here too, bench/common.py), so concurrent runs (a developer's and CI's, two clones, a benchmark)
# never flush each other's queues.
REDIS_DBS = [8, 9, 10, 11, 12, 14, 15]


def claim_redis_db():
    from redis import Redis
    r0 = Redis(host="127.0.0.1", port=6379, db=0)
    for n in REDIS_DBS:
        if r0.set(f"borgfleet-tests:redis-db:{n}", os.getpid(), nx=True, ex=3 * 3600):
            return n, lambda: r0.delete(f"borgfleet-tests:redis-db:{n}")
    raise RuntimeError(f"all test Redis dbs {REDIS_DBS} are claimed (keys borgfleet-tests:redis-db:* in db 0)")


def worker_env(extra=None):
    env = dict(os.environ, PYTHONPATH=str(UI), **(extra or {}))
    return env


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class WorkerProc:
    """A real `borgfleet-ui worker` in its own process group (so a kill takes its children too)."""

    def __init__(self, instance, log_dir, env=None):
        self.log = open(Path(log_dir) / f"worker-{instance}.log", "w")
        self.p = subprocess.Popen([sys.executable, "-m", "borgfleet_ui", "worker", "--instance", str(instance)],
                                  env=worker_env(env), stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True, cwd=str(REPO))

    def kill(self, sig=signal.SIGKILL):
        """Kill the worker's whole process tree at once, as a crash or the OOM killer would.

        RQ's work horse (and ansible under it) run in sessions of their own, so the tree is
        walked through /proc rather than by process group."""
        for pid in [self.p.pid] + descendants(self.p.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        self.p.wait(timeout=30)

    def stop(self):
        if self.p.poll() is None:
            self.kill(signal.SIGTERM)
        self.log.close()


def wait_for(fn, timeout=60, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job_row(db, job_id):
    return dbm.query(db, "SELECT * FROM jobs WHERE id=%s", (job_id,), one=True)


def wait_job(db, job_id, statuses=q.FINAL, timeout=300):
    return wait_for(lambda: (lambda r: r if r and r["status"] in statuses else None)(job_row(db, job_id)),
                    timeout=timeout, what=f"job {job_id} to reach {statuses}")


def make_local_backup(api, tmp_path, name, files=None, **job):
    """A local-mode client (repositories under tmp_path) with one backup job over a data dir."""
    data = tmp_path / f"{name}-data"
    data.mkdir()
    for fn, content in (files or {"f.txt": b"x" * 1000}).items():
        (data / fn).write_bytes(content)
    op = api("operator")
    # Extra vars are set by admins only.
    cl = api("admin").post("/api/servers", json={"name": name, "role": "client", "connection": "local",
                                       "local_pool_path": str(tmp_path / f"{name}-repos"),
                                       "vars": {"borgfleet_borg_base_dir": str(tmp_path / f"{name}-base")}})
    assert cl.status_code == 201, cl.json
    bj = op.post("/api/backup-jobs", json={"client_id": cl.json["id"], "name": "data", "paths": [str(data)],
                                           "passphrase": "local-pass-" + name, **job})
    assert bj.status_code == 201, bj.json
    return cl.json, bj.json


def set_up_and_back_up(api, db, cl, bj):
    """Setup of the client, then one backup of the job, both through the API and a worker: the
    finished backup job row (both asserted to succeed)."""
    op = api("operator")
    assert wait_job(db, op.post(f"/api/servers/{cl['id']}/setup").json["job_id"])["status"] == "succeeded"
    job = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
    assert job["status"] == "succeeded", job["error"]
    return job


def drop_local_backup(api, cl, bj):
    api("operator").delete(f"/api/backup-jobs/{bj['id']}")
    api("operator").delete(f"/api/servers/{cl['id']}")


def _ssh_hostvars(controller, host):
    """Host vars of a loopback-sshd host the API has no column for (saved as vars, admin only)."""
    from tests.lib import fleet as fl
    common = fl.inventory(controller, [], [])["all"]["vars"]
    hv = {k: v for k, v in host.hostvars().items()
          if k not in ("ansible_host", "ansible_port", "borgfleet_storage_pools", "borgfleet_backups",
                       "borgfleet_backup_server")}
    hv.update({k: v for k, v in common.items() if k != "ansible_user"})
    return hv


def add_ssh_client(api, controller, client, server_id):
    """Register a loopback-sshd client (tests/lib/fleet.py) of backup server server_id through the API."""
    cl = api("admin").post("/api/servers", json={
        "name": client.name, "role": "client", "address": client.sshd.address, "port": client.sshd.port,
        "ssh_user": "root", "backup_server_id": server_id, "vars": _ssh_hostvars(controller, client)})
    assert cl.status_code == 201, cl.json
    return cl.json


def add_ssh_pair(api, controller, server, client):
    """Register a loopback-sshd backup server and client (tests/lib/fleet.py) through the API, with the
    connection settings the API has columns for in columns and the rest (keys, pinned known_hosts, the
    borg user) as saved host vars, which only an admin sets. Returns the two server records."""
    bs = api("admin").post("/api/servers", json={
        "name": server.name, "role": "backup_server", "address": server.sshd.address, "port": server.sshd.port,
        "ssh_user": "root", "vars": _ssh_hostvars(controller, server), "pools": server.pools})
    assert bs.status_code == 201, bs.json
    return bs.json, add_ssh_client(api, controller, client, bs.json["id"])
