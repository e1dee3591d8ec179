"""Throwaway database servers for the recovery tests: a PostgreSQL cluster and a MariaDB server
in a scratch directory, on their own sockets (no TCP), never touching the machine's services."""
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_ROWS = 5000


def _user(name):
    pw = pwd.getpwnam(name)
    return dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])


def _wait(check, what, timeout=60):
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"{what} not ready within {timeout} s"
        time.sleep(0.2)


class Postgres:
    """initdb + postgres as the postgres user; stop() crashes it (SIGKILL) like a snapshot would."""

    def __init__(self, root):
        self.root = Path(root)
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.proc = None

    def init(self):
        for d in (self.root, self.sock):
            d.mkdir(exist_ok=True)
            os.chown(d, *pwd.getpwnam("postgres")[2:4])
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=peer",
                        "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True, **_user("postgres"))
        return self

    def start(self):
        self.log = open(self.root / "postgres.log", "ab")
        self.proc = subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(self.data), "-k", str(self.sock),
                                      "-c", "listen_addresses=", "-p", "5999"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.root, **_user("postgres"))
        _wait(lambda: self.sql("SELECT 1", check=False).returncode == 0, "postgres")
        return self

    def sql(self, query, check=True, db="postgres"):
        proc = subprocess.run([str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", str(self.sock), "-p", "5999", "-d", db, "-c", query],
                              capture_output=True, text=True, **_user("postgres"))
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def crash(self):
        """SIGKILL the whole server: the data dir is what a crash-consistent snapshot holds
        (postmaster.pid included)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


class MariaDB:
    def __init__(self, root):
        self.root = Path(root)
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.proc = None

    def init(self):
        self.root.mkdir(exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        os.chown(self.sock, *pwd.getpwnam("mysql")[2:4])
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=mysql",
                        "--skip-test-db"], check=True, capture_output=True)
        return self

    def start(self):
        self.log = open(self.root / "mariadbd.log", "ab")
        self.proc = subprocess.Popen(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.data}",
                                      f"--socket={self.sock}/mysqld.sock", "--skip-networking",
                                      f"--pid-file={self.data}/test.pid", "--innodb-log-file-size=16M",
                                      "--innodb-buffer-pool-size=32M", "--skip-log-bin"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     **_user("mysql"))
        _wait(lambda: self.sql("SELECT 1", check=False).returncode == 0, "mariadbd")
        return self

    def sql(self, query, check=True):
        proc = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.sock}/mysqld.sock", "-u", "root",
                               "--batch", "--skip-column-names", "-e", query], capture_output=True, text=True)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def crash(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


def crashed_postgres(root):
    """A cluster with PG_ROWS known rows in `accounts` plus one committed after the last checkpoint
    (only the WAL has it), killed: its data dir is what a crash-consistent snapshot holds."""
    pg = Postgres(root).init().start()
    pg.sql("CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance bigint NOT NULL)")
    pg.sql(f"INSERT INTO accounts SELECT g, 'owner-' || g, g * 7 FROM generate_series(1, {PG_ROWS}) g")
    # As on a replica: a recovered copy must follow neither (both are unreachable here).
    pg.sql("ALTER SYSTEM SET primary_conninfo = 'host=192.0.2.1 user=replicator'")
    pg.sql("ALTER SYSTEM SET restore_command = 'false'")
    pg.sql("CHECKPOINT")
    pg.sql("INSERT INTO accounts VALUES (100001, 'after-checkpoint', 42)")
    pg.crash()
    assert (pg.data / "postmaster.pid").exists()  # stale in the backup: recovery must drop it
    return pg.data
