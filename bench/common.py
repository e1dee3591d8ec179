"""What the benchmarks share: where they keep data, scratch and results, the throwaway service
(a database, a Redis db, gunicorn, workers), percentiles, the load average and signals.

Imported as `bench.common`: each entry point puts the checkout on sys.path first, e.g.

    REPO = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(REPO))
    from bench.common import ...  # noqa: E402
"""
import contextlib
import importlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UI = REPO / "ui"
OUTPUT = REPO / "bench" / "output"
# Data built once and kept between runs (trees, repositories, seeds).
CACHE = Path(os.environ.get("BORGFLEET_BENCH_CACHE", "/var/tmp/borgfleet-bench"))
# One run's scratch: sshd's StrictModes and the borg user need root-owned, non-world-writable
# parents (not /tmp).
SCRATCH = Path(os.environ.get("BORGFLEET_BENCH_ROOT", "/var/lib/borgfleet-bench"))
# Set by bench/run for one run of the benchmarks: every results file of that run carries it.
RUN_ENV = "BORGFLEET_BENCH_RUN"

if str(UI) not in sys.path:
    sys.path.insert(0, str(UI))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values, p):
    """The p-th percentile (nearest rank on the sorted values)."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def summary(values, ndigits=None):
    """{median, min, max, n} of values, rounded to ndigits when given."""
    r = (lambda v: v) if ndigits is None else (lambda v: round(v, ndigits))
    return {"median": r(statistics.median(values)), "min": r(min(values)), "max": r(max(values)), "n": len(values)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_span(start, end=None):
    """'load average A at the start, B at the end, on N CPUs' (end: now when not given)."""
    end = os.getloadavg() if end is None else end
    return f"load average {start[0]:.1f} at the start, {end[0]:.1f} at the end, on {os.cpu_count()} CPUs"


def utc_stamp():
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def write_json(filename, data):
    """Write data as bench/output/<filename>; returns the path. Under bench/run the file carries
    the run's id (`bench_run`, from BORGFLEET_BENCH_RUN): bench/summary.py reads that run's files only."""
    run = os.environ.get(RUN_ENV)
    if run and isinstance(data, dict):
        data = {**data, "bench_run": run}
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / filename
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def scratch_dir(prefix):
    """A new directory of this run under SCRATCH (0755, see there); the caller removes it."""
    SCRATCH.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH))
    root.chmod(0o755)
    return root


def exit_on_signals():
    """TERM and HUP unwind like Ctrl-C, through the callers' finally blocks (processes stopped,
    databases dropped, scratch removed)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))


@contextlib.contextmanager
def environ(extra):
    """os.environ with `extra` set for the block (what a playbook run inherits), then as before."""
    saved = dict(os.environ)
    os.environ.update(extra or {})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class SshFleet:
    """One run's scratch directory, a controller key and real sshds on loopback addresses
    (tests/lib/sshd.py) whose host keys the controller pins. The CPU of every process started
    after it is counted (backup_overhead/cpu.py); close() stops and removes it all."""

    def __init__(self, prefix, log=log):
        from bench.backup_overhead.cpu import CpuMeter
        self.log = log
        self.cpu = CpuMeter(log=log)  # first: every process started from here on is counted
        self.sshds, self.server = [], None
        self.root = scratch_dir(prefix)

    def start_controller(self, comment):
        from tests.lib.fleet import Controller
        from tests.lib.sshd import keygen
        d = self.root / "controller"
        d.mkdir(mode=0o700)
        self.controller = Controller(key=d / "id_ed25519", known_hosts=d / "known_hosts")
        keygen(self.controller.key, comment=comment)
        self.controller.known_hosts.touch(mode=0o600)

    def sshd(self, name, address):
        from tests.lib.sshd import Sshd
        sshd = Sshd(name, address, self.root / f"sshd-{name}",
                    Path(f"{self.controller.key}.pub").read_text().strip()).start()
        self.sshds.append(sshd)
        with open(self.controller.known_hosts, "a") as f:
            f.write(sshd.known_hosts_line + "\n")
        return sshd

    def control_dir(self):
        # A fresh ControlPath dir per playbook run: every run opens its SSH connections cold, as a
        # scheduled run would, instead of reusing a persisted master.
        d = Path(tempfile.mkdtemp(prefix="cp-", dir=self.root))
        d.chmod(0o700)
        return d

    def close(self):
        for sshd in reversed(self.sshds):
            try:
                sshd.stop()
            except Exception as e:  # keep cleaning up the rest
                self.log(f"warning: stopping sshd {sshd.name}: {e}")
        if self.server is not None:
            self.server.remove_user()
        self.cpu.close()
        shutil.rmtree(self.root, ignore_errors=True)


def claim_redis_db():
    """(db number, release function): a Redis db claimed as the tests claim theirs
    (tests/ui/uilib.py), so a benchmark and a test run never flush each other's queues."""
    # Importing uilib shortens the workers' heartbeat for the tests (BORGFLEET_HEARTBEAT_TTL);
    # a benchmark runs the service's own, here (queue reads it once) and in what it spawns.
    importlib.import_module("borgfleet_ui.queue")
    had_ttl = "BORGFLEET_HEARTBEAT_TTL" in os.environ
    sys.path.insert(0, str(REPO / "tests" / "ui"))
    from uilib import claim_redis_db
    if not had_ttl:
        os.environ.pop("BORGFLEET_HEARTBEAT_TTL", None)
    return claim_redis_db()


class Service:
    """A throwaway service: a MariaDB database of its own (created here, dropped by close()), a
    claimed Redis db, a run directory and secret key in a temporary directory, and the processes
    started with spawn(). open() migrates the database and empties the Redis db; admin_token()
    makes the `bench` admin whose token call() sends."""

    WORKER_INSTANCE = "77"   # RQ's shutdown commands go by worker name over pub/sub, across Redis dbs:
    #                          not the tests' 1, 2, ...

    def __init__(self, name, tmp_dir=None):
        self.procs, self.db, self.r, self.token = {}, None, None, None
        self.keep_db = False   # True: close() leaves the database, to look into it afterwards
        self.redis_db, self._unclaim = claim_redis_db()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bf-bench-{name}-", dir=tmp_dir))
        os.environ.update(BORGFLEET_DB_NAME=f"bf_bench_{name}_{os.getpid()}",
                          BORGFLEET_REDIS_URL=f"redis://127.0.0.1:6379/{self.redis_db}",
                          BORGFLEET_RUN_DIR=str(self.tmp / "runs"), BORGFLEET_SECRET_KEY=uuid.uuid4().hex,
                          BORGFLEET_SECRET_KEY_FILE=str(self.tmp / "secret.key"))
        from borgfleet_ui import db as dbm, queue as q, secret_store
        from borgfleet_ui.config import load_config
        self.dbm, self.q = dbm, q
        self.cfg = load_config()
        secret_store.ensure_key(self.cfg)  # passphrases are encrypted at rest with this key
        self.port = free_port()
        self.env = dict(os.environ, PYTHONPATH=str(UI))
        dbm.create_database(self.cfg)

    def open(self):
        self.db = self.dbm.connect(self.cfg)
        self.dbm.upgrade(self.db)
        self.r = self.dbm.connect_redis(self.cfg)
        self.r.flushdb()

    def admin_token(self):
        from borgfleet_ui.auth import create_token, create_user
        create_user(self.db, "bench", "admin")  # admin: clients carry extra vars (SSH settings)
        uid = self.dbm.query(self.db, "SELECT id FROM users WHERE username='bench'", one=True)["id"]
        self.token = create_token(self.db, uid, "bench")
        return self.token

    def spawn(self, name, argv):
        log = open(self.tmp / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self, name):
        p = self.procs.pop(name)
        p.terminate()
        p.wait(timeout=30)

    def start_web(self):
        """gunicorn (2 workers x 4 threads) on self.port; returns once /api/health answers."""
        self.spawn("web", [str(Path(sys.executable).parent / "gunicorn"), "-b", f"127.0.0.1:{self.port}",
                           "-w", "2", "--threads", "4", "borgfleet_ui:create_app()"])
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def start_worker(self):
        self.spawn("worker", [sys.executable, "-m", "borgfleet_ui", "worker", "--instance", self.WORKER_INSTANCE])

    def call(self, method, path, body=None):
        """One API request as the bench admin; the decoded JSON answer."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def wait_job(self, job_id, timeout=300):
        """The job's row once it is final."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.dbm.query(self.db, "SELECT * FROM jobs WHERE id=%s", (job_id,), one=True)
            if row["status"] in self.q.FINAL:
                return row
            time.sleep(0.1)
        raise SystemExit(f"job {job_id} did not finish")

    def close(self):
        try:
            for name in list(self.procs):
                self.stop(name)
            if self.r is not None:
                self.r.flushdb()
            if self.keep_db:
                log(f"kept database {self.cfg['DB_NAME']} (drop it when done)")
            else:
                conn = self.dbm.connect(self.cfg, database=False)
                self.dbm.execute(conn, f"DROP DATABASE IF EXISTS `{self.cfg['DB_NAME']}`")
                conn.close()
        finally:
            self._unclaim()
            shutil.rmtree(self.tmp, ignore_errors=True)
