"""Throwaway, real database engines on a btrfs loop filesystem, and a write load.

Nothing here touches the machine's own MariaDB / PostgreSQL services: every instance has its
own datadir, socket and port under the test tree, runs as a subprocess, and is stopped at the end.
"""
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import zlib
from pathlib import Path

from plugins.module_utils.engines.base import Session  # the same pipe session the module uses

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SECRET = "Db-Test-Passphrase-9"
# Snapshot mounts of this test process only: suites running side by side (developers, CI) must
# not see - or clean up - each other's snapshots.
MOUNT_ROOT = "/run/borgfleet/test-snapshots-%d" % os.getpid()


def sh(argv, **kw):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if proc.returncode:
        raise RuntimeError("%s: rc %d: %s" % (argv, proc.returncode, proc.stderr[-2000:]))
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Btrfs:
    """A btrfs filesystem in a sparse file, loop-mounted (the loop device goes with the mount)."""

    def __init__(self, root):
        self.image = root / "btrfs.img"
        self.mnt = root / "btrfs"

    def start(self, size="3G"):
        sh(["truncate", "-s", size, str(self.image)])
        sh(["mkfs.btrfs", "-q", str(self.image)])
        self.mnt.mkdir()
        sh(["mount", "-o", "loop", str(self.image), str(self.mnt)])
        self.mnt.chmod(0o755)
        return self

    def subvolume(self, name, owner=None):
        path = self.mnt / name
        sh(["btrfs", "subvolume", "create", str(path)])
        if owner:
            shutil.chown(path, owner, owner)
        return path

    def snapshots(self):
        """Every subvolume whose name says it is ours."""
        out = sh(["btrfs", "subvolume", "list", str(self.mnt)]).stdout
        return [line.split()[-1] for line in out.splitlines() if "borgfleet-" in line]

    def stop(self):
        subprocess.run(["umount", str(self.mnt)], check=False)


def our_mounts(prefix=MOUNT_ROOT):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


class MariaDB:
    def __init__(self, datadir, rundir):
        self.datadir = Path(datadir)
        self.rundir = Path(rundir)
        self.socket = self.rundir / "mysqld.sock"
        self.proc = None

    def install(self):
        self.rundir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.rundir, "mysql", "mysql")
        sh(["mariadb-install-db", "--no-defaults", "--user=mysql", "--datadir=%s" % self.datadir,
            "--auth-root-authentication-method=socket", "--skip-test-db"])
        return self

    def start(self):
        self.rundir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.rundir, "mysql", "mysql")
        log = open(self.rundir / "error.log", "a")
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--user=mysql", "--datadir=%s" % self.datadir,
             "--socket=%s" % self.socket, "--skip-networking", "--pid-file=%s" % (self.rundir / "pid"),
             "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M", "--skip-log-bin"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mariadbd exited: " + (self.rundir / "error.log").read_text()[-2000:])
            if subprocess.run(["mariadb-admin", "--socket=%s" % self.socket, "ping"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError("mariadbd did not start: " + (self.rundir / "error.log").read_text()[-2000:])

    def client(self):
        return ["mariadb", "--socket=%s" % self.socket, "--batch", "--skip-column-names", "--unbuffered"]

    def sql(self, statement):
        return sh(self.client() + ["--execute", statement]).stdout

    def session(self):
        return Session(self.client())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Postgres:
    def __init__(self, datadir, rundir):
        self.datadir = Path(datadir)
        self.rundir = Path(rundir)
        self.port = free_port()

    def _as_pg(self, argv, **kw):
        return sh(["runuser", "-u", "postgres", "--"] + argv, **kw)

    def install(self):
        self.rundir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.rundir, "postgres", "postgres")
        self._as_pg([str(PG_BIN / "initdb"), "-D", str(self.datadir), "--auth-local=peer",
                     "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"])
        return self

    def start(self):
        self.rundir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.rundir, "postgres", "postgres")
        for stale in ("postmaster.pid",):
            if (self.datadir / stale).exists():
                (self.datadir / stale).unlink()
        opts = "-p %d -k %s -c listen_addresses='' -c shared_buffers=32MB -c fsync=on" % (self.port, self.rundir)
        self._as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-o", opts, "-l",
                     str(self.rundir / "log"), "-w", "-t", "60", "start"])
        return self

    def client(self, db="postgres"):
        return ["runuser", "-u", "postgres", "--", str(PG_BIN / "psql"), "--no-psqlrc", "-q", "-A", "-t",
                "-v", "ON_ERROR_STOP=1", "-h", str(self.rundir), "-p", str(self.port), "-d", db]

    def sql(self, statement, db="postgres"):
        return sh(self.client(db) + ["-c", statement]).stdout

    def session(self):
        return Session(self.client())

    def stop(self):
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.datadir),
                        "-m", "fast", "-w", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stale_secret_dirs():
    """Credential dirs of module runs that are gone (their pid is in the name)."""
    stale = []
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "borgfleet-db-*")):
        m = re.search(r"borgfleet-db-(\d+)-", path)
        if m and not os.path.exists("/proc/" + m.group(1)):
            stale.append(path)
    return stale


def payload(i):
    return "row-%08d-%08x" % (i, zlib.crc32(b"%d" % i))


class Writer(threading.Thread):
    """Inserts rows one autocommit statement at a time and records, per row, when the insert
    was sent and when its commit was confirmed."""

    def __init__(self, db, table="load"):
        super().__init__(daemon=True)
        self.db = db
        self.table = table
        self.started_at = {}
        self.committed_at = {}
        self.stop_flag = threading.Event()
        self.error = None

    def run(self):
        session = self.db.session()
        try:
            i = 0
            while not self.stop_flag.is_set():
                i += 1
                self.started_at[i] = time.time()
                session.send("INSERT INTO %s (id, payload) VALUES (%d, '%s');\n\\echo ok-%d\n"
                             % (self.table, i, payload(i), i) if isinstance(self.db, Postgres) else
                             "INSERT INTO %s (id, payload) VALUES (%d, '%s');\nSELECT 'ok-%d';\n"
                             % (self.table, i, payload(i), i))
                if session.read_until("ok-%d" % i, 120) is None:
                    raise RuntimeError("insert %d not confirmed in 120 s" % i)
                self.committed_at[i] = time.time()
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            session.close()

    def halt(self):
        self.stop_flag.set()
        self.join(150)


def check_restored(rows, writer, before, after):
    """rows: {id: payload} read from the restored copy. Every row committed before `before`
    must be there with its payload; none sent after `after` may be."""
    committed = {i for i, t in writer.committed_at.items() if t < before}
    late = {i for i, t in writer.started_at.items() if t > after}
    missing = committed - set(rows)
    assert not missing, "rows committed before the snapshot are missing: %s" % sorted(missing)[:10]
    assert not (set(rows) & late), "rows sent after the snapshot are present: %s" % sorted(set(rows) & late)[:10]
    wrong = [i for i, p in rows.items() if p != payload(i)]
    assert not wrong, "rows with a wrong payload: %s" % wrong[:10]
    return len(committed), len(rows)
