"""Issue 10, faults: cancel, timeout and killed workers end cleanly, and the next backup just works.

Real worker, real ansible-runner, real borg (locally and over SSH through loopback sshd). A backup
is made slow enough to be interrupted mid-`borg create` by a tree of incompressible files. After
each fault: no borg of that job is left on any host (read from /proc), a checkpoint archive is in
the repository when borg create was interrupted, and the next backup succeeds with no manual step.
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rq.job import Job

from borgfleet_ui import jobs, queue as q
from borgfleet_ui.kinds import KINDS
from uilib import add_ssh_pair, descendants, drop_local_backup, job_row, make_local_backup, wait_for, wait_job
from tests.lib import fleet as fl
from tests.lib.borgrepo import BorgRepo
from tests.lib.playbook import run_module
from tests.lib.throttle import CpuThrottle
from tests.lib.trees import make_tree

REPO = Path(__file__).resolve().parents[2]


def fill(directory, files=24, mb=16):
    """Incompressible files (borg reads ~40-80 MB/s here): several seconds of borg create."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (directory / f"big-{i:02d}.bin").write_bytes(os.urandom(mb << 20))


def procs(*markers):
    """{pid: argv} of live processes whose command line contains every marker."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
        except OSError:
            continue
        if argv[0] and all(m in " ".join(argv) for m in markers):
            found[int(entry)] = argv
    return found


def borgs(marker):
    """Live borg processes (client or `borg serve`) whose command line mentions marker."""
    return {p: " ".join(a) for p, a in procs(marker).items() if any(os.path.basename(x) == "borg" for x in a[:2])}


def log_text(api, job_id):
    return "\n".join(api("viewer").get(f"/api/jobs/{job_id}/log").json["lines"])


def checkpoints(repo):
    out = repo.run("list", "--consider-checkpoints", "--json", repo.url).stdout
    return [a["name"] for a in json.loads(out)["archives"] if a["name"].endswith(".checkpoint")]


def assert_next_backup(api, db, bj, repo, data, within=None):
    """Run the backup again: it succeeds (within `within` s), and its archive reads back."""
    t0 = time.monotonic()
    job_id = api("operator").post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"]
    try:
        row = wait_job(db, job_id, timeout=within or 300)
    except AssertionError:
        locks = sorted(str(p.relative_to(repo.base_dir or "/")) for p in Path(repo.base_dir or "/").rglob("lock*")) \
            if repo.base_dir else []
        if not repo.url.startswith("ssh://"):
            locks += sorted(str(p.relative_to(repo.url)) for d in Path(repo.url).glob("lock*") for p in [d, *d.glob("*")])
            locks += [p.read_text() for p in Path(repo.url).glob("lock.roster")]
        state = {p: (Path(f"/proc/{p}/wchan").read_text(), Path(f"/proc/{p}/io").read_text().split()[:4])
                 for p in borgs(repo.url)}
        raise AssertionError(f"the next backup did not end in {within or 300} s; locks {locks}, borgs {borgs(repo.url)} "
                             f"{state}:\n{log_text(api, job_id)[-3000:]}")
    took = time.monotonic() - t0
    assert row["status"] == "succeeded", (row["error"], log_text(api, job_id)[-3000:])
    assert "break-lock" not in log_text(api, job_id)
    name = json.loads(row["result_json"])["archives"][-1]
    assert name in repo.archive_names()
    stored = {p.rsplit("/", 1)[-1] for p in repo.paths(name)}
    assert {p.name for p in data.iterdir()} <= stored
    one = sorted(data.glob("big-*.bin"))[-1]
    out = repo.extract(name, Path(str(data) + f"-restore-{secrets.token_hex(3)}"), str(one).lstrip("/"))
    assert (out / str(one).lstrip("/")).read_bytes() == one.read_bytes()
    return took


def start_create(api, bj, marker, repo_dir):
    """Run the backup now; returns its job id once borg create is writing chunks to the repository."""
    job_id = api("operator").post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"]
    wait_for(lambda: [a for a in borgs(marker).values() if " create " in a], timeout=180, interval=0.1,
             what="borg create to run")
    data = Path(repo_dir) / "data"
    written = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    wait_for(lambda: sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) > written + (32 << 20),
             timeout=120, interval=0.1, what="borg create to write chunks")
    return job_id


def cancel_mid_create(api, db, redis, bj, marker, lock_name, repo_dir):
    """Start the backup, cancel it while borg create writes; returns the canceled row."""
    job_id = start_create(api, bj, marker, repo_dir)
    assert [a for a in borgs(marker).values() if " create " in a], "the backup ended before it could be canceled"
    t0 = time.monotonic()
    assert api("operator").post(f"/api/jobs/{job_id}/cancel").status_code == 202
    row = wait_job(db, job_id, timeout=120)
    took = time.monotonic() - t0
    assert row["status"] == "canceled" and row["error"] == "canceled by a user", (row["status"], row["error"])
    # The worker kept the repository until borg was bound to be gone, and no borg is left.
    assert "the repository stays locked" in log_text(api, job_id)
    assert not redis.exists(q.lock_key(lock_name))
    assert borgs(marker) == {}, borgs(marker)
    return row, took


@pytest.fixture()
def throttle():
    """borg create held to a tenth of a CPU: interrupted mid-way whatever the machine's speed."""
    t = CpuThrottle(10)
    yield t
    t.close()


def worker_path(throttle, tmp_path):
    """The worker's PATH with the throttling borg wrapper in front (local runs use the worker's PATH)."""
    return {"PATH": f"{throttle.borg_wrapper(tmp_path / 'slow-bin')}{os.pathsep}{os.environ['PATH']}"}


def test_cancel_mid_create_locally(api, db, redis, start_worker, tmp_path, throttle):
    cl, bj = make_local_backup(api, tmp_path, "cancel-cl")
    data = tmp_path / "cancel-cl-data"
    fill(data)
    start_worker(1, worker_path(throttle, tmp_path))
    assert wait_job(db, api("operator").post(f"/api/servers/{cl['id']}/setup").json["job_id"])["status"] == "succeeded"
    repo = BorgRepo(bj["location"], "local-pass-cancel-cl", base_dir=tmp_path / "cancel-cl-base")
    _, took = cancel_mid_create(api, db, redis, bj, str(tmp_path / "cancel-cl-repos"), "cancel-cl/data",
                                bj["location"])
    print(f"cancel to final status: {took:.1f} s")
    throttle.close()
    assert checkpoints(repo), "borg create stopped with SIGINT writes a checkpoint archive"
    assert repo.archive_names() == []
    assert_next_backup(api, db, bj, repo, data)
    drop_local_backup(api, cl, bj)


@pytest.fixture()
def ssh_pair(test_root, controller, sshd_factory):
    d = test_root / "cancel-server"
    d.mkdir(mode=0o755)
    server = fl.Server(name="cancel-server", sshd=sshd_factory("cancel-server"), dir=d,
                       user=f"bfc{secrets.token_hex(3)}", pools=[{"name": "main", "path": str(d / "pool")}])
    cd = test_root / "cancel-client"
    cd.mkdir(mode=0o700)
    make_tree(cd / "data", seed="cancel-client")
    fill(cd / "data")
    client = fl.Client(name="cancel-client", sshd=sshd_factory("cancel-client"), dir=cd, server=server,
                       backups=[{"name": "data", "paths": [str(cd / "data")], "passphrase": fl.passphrase()}])
    yield server, client
    server.remove_user()


def test_cancel_mid_create_over_ssh(api, db, redis, start_worker, controller, ssh_pair, throttle):
    server, client = ssh_pair
    op = api("operator")
    bs, cl = add_ssh_pair(api, controller, server, client)
    b = client.backups[0]
    bj = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "data", "paths": b["paths"],
                                           "passphrase": b["passphrase"]}).json
    start_worker(1)
    job = wait_job(db, op.post(f"/api/servers/{bs['id']}/setup").json["job_id"])
    assert job["status"] == "succeeded", (job["error"], log_text(api, job["id"])[-3000:])
    repo = client.repo("data", controller)
    # Every session of the client's sshd (the module, its borg) runs throttled: new ones, and one the
    # setup run left open for ansible's ssh multiplexing (ControlPersist), which the backup may reuse.
    for pid in [client.sshd.proc.pid] + list(descendants(client.sshd.proc.pid)):
        try:
            throttle.add(pid)
        except OSError:
            pass   # gone meanwhile
    # The pool path is in the client's borg argv (the URL) and in borg serve's --restrict-to-path.
    row, took = cancel_mid_create(api, db, redis, bj, server.pools[0]["path"], "cancel-client/data",
                                client.repo_path("data"))
    print(f"cancel to final status: {took:.1f} s")
    throttle.close()
    assert checkpoints(repo), "borg create stopped with SIGINT over SSH writes a checkpoint archive"
    assert repo.archive_names() == []
    assert_next_backup(api, db, bj, repo, client.dir / "data")
    op.delete(f"/api/backup-jobs/{bj['id']}")
    op.delete(f"/api/servers/{cl['id']}")
    op.delete(f"/api/servers/{bs['id']}")


def kill_worker_only(w):
    """SIGKILL the RQ worker and its work horse, nothing else (as the OOM killer picks one)."""
    horse = [p for p in descendants(w.p.pid) if Path(f"/proc/{p}/stat").read_text().split()[3] == str(w.p.pid)]
    for pid in [w.p.pid] + horse:
        os.kill(pid, signal.SIGKILL)
    w.p.wait(timeout=30)


def test_killed_worker_next_backup_without_break_lock(api, db, redis, start_worker, tmp_path, ui_env, throttle):
    cl, bj = make_local_backup(api, tmp_path, "wkill-cl")
    data = tmp_path / "wkill-cl-data"
    fill(data)
    marker = str(tmp_path / "wkill-cl-repos")
    repo = BorgRepo(bj["location"], "local-pass-wkill-cl", base_dir=tmp_path / "wkill-cl-base")
    slow = worker_path(throttle, tmp_path)
    w = start_worker(1, slow)
    assert wait_job(db, api("operator").post(f"/api/servers/{cl['id']}/setup").json["job_id"])["status"] == "succeeded"

    def start_backup():
        return start_create(api, bj, marker, repo.url)

    def settle(job_id, instance):
        wait_for(lambda: not redis.exists(q.heartbeat_key(job_id)), timeout=q.HEARTBEAT_TTL + 5, what="heartbeat expiry")
        time.sleep(1)
        w = start_worker(instance, slow)
        row = wait_job(db, job_id, timeout=60)
        assert row["status"] == "abandoned", (row["status"], row["error"])
        assert not redis.exists(q.lock_key("wkill-cl/data"))
        # The new worker swept the dead run's private data dir.
        wait_for(lambda: not [n for n in os.listdir(ui_env["RUN_DIR"]) if n.startswith(f"job-{job_id}-")],
                 timeout=30, what="the dead run's directory to be swept")
        return w

    # 1. Only the worker and its work horse die: the playbook dies with them (not orphaned),
    #    so borg is stopped with SIGINT (a checkpoint) within the bounded stop time.
    job_id = start_backup()
    kill_worker_only(w)
    wait_for(lambda: not procs(f"job-{job_id}-") and not borgs(marker), timeout=q.STOP_HOLD + 10,
             what="the orphaned playbook and its borg to end")
    assert checkpoints(repo)
    throttle.limit(None)
    w = settle(job_id, 2)
    assert assert_next_backup(api, db, bj, repo, data, within=60) < 60

    # 2. The whole tree dies with SIGKILL, borg included: its repository lock is left behind, under
    #    this host's stable BORG_HOST_ID, so the next borg removes it itself (no break-lock).
    fill(data)  # new content: the archives so far hold every chunk of the old
    throttle.limit(10)
    job_id = start_backup()
    w.kill()
    throttle.limit(None)
    lock_dir = Path(repo.url) / "lock.exclusive"
    assert lock_dir.is_dir(), "a SIGKILLed borg leaves its repository lock"
    machine_id = Path("/etc/machine-id").read_text().strip()
    assert [n for n in os.listdir(lock_dir) if n.startswith(f"{socket.gethostname()}@{machine_id}.")], os.listdir(lock_dir)
    settle(job_id, 3)
    # A small change, so the 60 s measure the locks, not the upload.
    for f in data.glob("big-*.bin"):
        f.unlink()
    fill(data, files=2, mb=1)
    t0 = time.monotonic()
    assert_next_backup(api, db, bj, repo, data, within=60)
    print(f"next backup after a SIGKILLed worker: {time.monotonic() - t0:.1f} s")
    assert not lock_dir.exists()
    drop_local_backup(api, cl, bj)


def test_lock_wait_counts_in_the_budget_and_stops_on_cancel(api, db, redis, tmp_path, monkeypatch):
    """In-process run_job (no RQ around it) against a repository lock held by another job."""
    cl, bj = make_local_backup(api, tmp_path, "budget-cl")
    other = "a-job-holding-the-repository"
    assert q.try_lock(redis, "budget-cl/data", other, 300) is None
    budget = jobs.MIN_RUN + 5
    monkeypatch.setitem(KINDS, "backup", KINDS["backup"]._replace(timeout=budget))
    try:
        # RQ's own timeout is past the budget and the stop hold: it never kills a running playbook.
        first = api("operator").post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"]
        assert Job.fetch(first, connection=redis).timeout == q.rq_timeout("backup") > budget + q.STOP_HOLD
        t0 = time.monotonic()
        with pytest.raises(jobs.JobError, match="stayed locked by job a-job-holding-the-repository"):
            jobs.run_job(first)
        took = time.monotonic() - t0
        assert took < budget - jobs.MIN_RUN + 10, took  # the wait ended where the budget leaves a playbook too little
        row = job_row(db, first)
        assert row["status"] == "failed" and "whole time budget" in row["error"]

        second = api("operator").post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"]
        threading.Timer(2, lambda: redis.set(q.cancel_key(second), "1", ex=60)).start()
        t0 = time.monotonic()
        assert jobs.run_job(second) == "canceled"
        assert time.monotonic() - t0 < 6
        row = job_row(db, second)
        assert row["status"] == "canceled" and "while waiting for the repository" in row["error"]
        assert redis.get(q.lock_key("budget-cl/data")).decode() == other  # never taken, never freed
    finally:
        q.release_lock(redis, "budget-cl/data", other)
    drop_local_backup(api, cl, bj)


def test_module_borg_timeout(tmp_path):
    """The CLI/AWX path: borg_timeout stops borg with SIGINT and fails the task with a clear error.

    Deterministic: another borg holds the repository lock, so the module's borg waits (lock_wait
    600 s) until borg_timeout stops it."""
    data = tmp_path / "data"
    fill(data, files=2, mb=1)
    repo = BorgRepo(str(tmp_path / "repo"), "timeout-pass", base_dir=tmp_path / "base")
    repo.run("init", "--encryption", "repokey-blake2", repo.url)

    def archive(timeout, **kwargs):
        return run_module(tmp_path, "borg_archive", {
            "repository": repo.url, "passphrase": repo.passphrase, "borg_base_dir": str(repo.base_dir),
            "name": "t-{{ now(utc=true, fmt='%H%M%S%f') }}", "paths": [str(data)], "borg_timeout": timeout},
            **kwargs)

    holder = subprocess.Popen(["borg", "with-lock", repo.url, "sleep", "300"], env=repo.env(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_for(lambda: (Path(repo.url) / "lock.exclusive").is_dir(), timeout=30, what="the other borg's lock")
        t0 = time.monotonic()
        r = archive(4, expect_failure=True)
        took = time.monotonic() - t0
        assert "ran longer than borg_timeout (4 s) and was stopped with SIGINT" in r["msg"], r
        assert r["error_kind"] == "timeout", r
        assert took < 60, took
        assert [p for p in borgs(repo.url) if p != holder.pid] == []  # only the lock holder is left
    finally:
        os.killpg(holder.pid, signal.SIGTERM)  # its `sleep` too; borg releases the lock on SIGTERM
        holder.wait(30)
    archive(0)  # 0: no limit
    name = repo.archive_names()[0]
    one = sorted(data.iterdir())[0]
    out = repo.extract(name, tmp_path / "restore", str(one).lstrip("/"))
    assert (out / str(one).lstrip("/")).read_bytes() == one.read_bytes()


# --- the borg runner itself (module_utils), with real processes ------------------------------

from ansible_collections.borgfleet.backup.plugins.module_utils import _process, borg as b  # noqa: E402

# Stands in for borg: on SIGINT it "writes a checkpoint" (a marker file) and exits 2, as borg does;
# with IGNORE it ignores SIGINT, as a hung borg would.
SIGINT_CHILD = r"""
import signal, sys, time
def stop(*_):
    open(sys.argv[1], "w").write("sigint")
    sys.exit(2)
signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[2] == "IGNORE" else stop)
print("started", flush=True)
time.sleep(120)
"""


def test_runner_stops_the_command_when_its_output_reader_goes_away(tmp_path):
    """Over SSH the module outlives a killed playbook: its stdout's reader (sshd) goes away."""
    r, w = os.pipe()
    result = {}

    def run():
        try:
            _process.run([sys.executable, "-c", SIGINT_CHILD, str(tmp_path / "m"), "STOP"], dict(os.environ), watch_fd=w)
        except _process.Stopped as e:
            result["stopped"] = e
    t = threading.Thread(target=run)
    t.start()
    time.sleep(2)
    os.close(r)  # the reader of "the module's stdout" goes away
    t.join(15)
    os.close(w)
    e = result["stopped"]
    assert e.reason == "orphaned" and e.rc == 2 and "started" in e.stdout
    assert (tmp_path / "m").read_text() == "sigint"


def test_runner_kills_a_command_that_ignores_sigint_after_the_grace(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(_process.Stopped) as e:
        _process.run([sys.executable, "-c", SIGINT_CHILD, str(tmp_path / "m"), "IGNORE"], dict(os.environ),
                     timeout=1, grace=2, watch_fd=None)
    assert e.value.reason == "timeout" and e.value.rc == -9 and 3 <= time.monotonic() - t0 < 10
    assert procs(str(tmp_path / "m")) == {}


def test_runner_stops_the_command_when_the_module_is_killed(tmp_path):
    """On a local connection ansible-runner's cancel SIGKILLs the module with the playbook's group."""
    module = subprocess.Popen([sys.executable, "-c",
                               "import sys, os; from ansible_collections.borgfleet.backup.plugins.module_utils import _process;"
                               f"_process.run([sys.executable, '-c', {SIGINT_CHILD!r}, {str(tmp_path / 'm')!r}, 'STOP'],"
                               " dict(os.environ), watch_fd=None)"],
                              cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO / "collections")))
    wait_for(lambda: procs(str(tmp_path / "m"), "signal"), timeout=20, what="the command to start")
    time.sleep(1)
    module.kill()
    module.wait()
    wait_for(lambda: (tmp_path / "m").exists() and not procs(str(tmp_path / "m")), timeout=15,
             what="the guard to stop the command with SIGINT")
    assert (tmp_path / "m").read_text() == "sigint"


class Replies:
    """A fake runner (pure logic): answers each call with the next (rc, out, err)."""

    def __init__(self, *replies):
        self.replies, self.calls = list(replies), []

    def __call__(self, argv, env, cwd=None):
        self.calls.append(argv)
        return self.replies.pop(0)


LOCKED = json.dumps({"type": "log_message", "levelname": "ERROR", "msgid": "LockTimeout",
                     "message": "Failed to create/acquire the lock /r/lock.exclusive (timeout)."})


def test_a_held_lock_is_first_tried_quickly_then_waited_for():
    """borg sleeps lock_wait/20 s between lock attempts, also before retrying a stale lock it just
    removed: a quick first try makes a killed run's stale locks cost ~1 s, not minutes."""
    def lock_wait(argv):
        return argv[argv.index("--lock-wait") + 1]
    rec = Replies((2, "", LOCKED), (0, '{"archives": []}', ""))
    b.Borg(b.BorgSettings("/r", passphrase="a-passphrase-for-tests"), runner=rec).list_archives()
    assert [lock_wait(a) for a in rec.calls] == [str(b.QUICK_LOCK_WAIT), str(b.DEFAULT_LOCK_WAIT)]
    rec = Replies((2, "", json.dumps({"type": "log_message", "levelname": "ERROR", "msgid": "Repository.DoesNotExist",
                                      "message": "no repo"})))
    with pytest.raises(b.BorgError) as e:
        b.Borg(b.BorgSettings("/r", passphrase="a-passphrase-for-tests"), runner=rec).list_archives()
    assert e.value.kind == "repository_missing" and len(rec.calls) == 1  # only a lock is worth waiting for
    # User data after -- is never touched, even when it looks like the option.
    argv = b.Borg(b.BorgSettings("/r", passphrase="a-passphrase-for-tests")).command(["create"], [], ["/r::a", "--lock-wait", "9"])
    assert b._with_lock_wait(argv, 1)[-3:] == ["/r::a", "--lock-wait", "9"]
