"""Private Redis and MariaDB servers for tests that stop and restart them.

The shared servers (127.0.0.1:3306 and :6379) are never restarted: a test that needs an outage
starts its own instance on a free port with its own data directory, and stops it after.
"""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(proc, port, log, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {Path(log).read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


class _Server:
    what = "server"

    def __init__(self, base):
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = None
        self.log = self.dir / f"{self.what}.log"

    def argv(self):
        raise NotImplementedError

    def start(self):
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_up(self.proc, self.port, self.log, self.what)
        self.ready()

    def ready(self):
        pass

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def restart(self, down=1.0):
        """Stop (as `systemctl restart` does: SIGTERM, a clean shutdown), stay down `down` s, start."""
        self.stop()
        time.sleep(down)
        self.start()


class PrivateRedis(_Server):
    """redis-server without persistence: a restart loses every key (heartbeats, locks, queued jobs)."""
    what = "redis"

    def argv(self):
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"]

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def ready(self):
        from redis import Redis
        deadline = time.monotonic() + 30
        while True:
            try:
                if Redis(host="127.0.0.1", port=self.port, socket_timeout=2).ping():
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)


class PrivateMariaDB(_Server):
    """mariadbd on its own data directory (root without password on 127.0.0.1, as the shared one)."""
    what = "mariadb"

    def __init__(self, base):
        super().__init__(base)
        self.datadir = self.dir / "data"
        self.socket = self.dir / "mariadb.sock"
        if not self.datadir.exists():
            out = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                                  "--auth-root-authentication-method=normal", "--skip-test-db"],
                                 capture_output=True, text=True, timeout=300)
            if out.returncode:
                raise RuntimeError(f"mariadb-install-db failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")

    def argv(self):
        return [shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.datadir}",
                f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root",
                f"--pid-file={self.dir / 'mariadb.pid'}", "--innodb-buffer-pool-size=32M",
                f"--log-error={self.dir / 'error.log'}"]

    def ready(self):
        import pymysql
        deadline = time.monotonic() + 60
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", connect_timeout=2).close()
                return
            except pymysql.err.Error:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


def processes_mentioning(text):
    """[(pid, argv)] of live processes whose command line contains text."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = b" ".join(argv).decode(errors="replace")
        if text in line:
            out.append((int(entry), line))
    return out
