"""Issue 10, faults: Redis or MariaDB restarted during a backup.

The service runs against PRIVATE servers (tests/lib/private_services.py: redis-server without
persistence, so a restart loses every key; mariadbd on its own data directory) so they can be
restarted; the shared ones never are. A real RQ worker runs a real backup of a local client and
a real scheduler sweeps for abandoned jobs every heartbeat TTL (6 s here). The backup is held
inside `borg create` by a wrapper in front of borg (it waits for a gate file, then execs the
real borg), so the restart happens mid-run at a known point.

Each run must end `succeeded` with its archive recorded and readable with borg, its log whole
and in order, never marked abandoned, with no ansible-playbook or borg left behind; the worker
and the scheduler stay up and the next backup succeeds.
"""
import os
import subprocess
import sys
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from borgfleet_ui import create_app, db as dbm, queue as q, secret_store
from borgfleet_ui.auth import create_token, create_user
from borgfleet_ui.config import load_config
from tests.lib.borgrepo import BorgRepo
from tests.lib.private_services import PrivateMariaDB, PrivateRedis, processes_mentioning
from uilib import REPO, WorkerProc, drop_local_backup, make_local_backup, wait_for, worker_env


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """The service configured for a private Redis and MariaDB: its app, an API caller, the env."""
    base = tmp_path_factory.mktemp("private-services")
    redis_srv, maria = PrivateRedis(base / "redis"), PrivateMariaDB(base / "mariadb")
    redis_srv.start()
    maria.start()
    env = {"BORGFLEET_DB_HOST": "127.0.0.1", "BORGFLEET_DB_PORT": str(maria.port), "BORGFLEET_DB_USER": "root",
           "BORGFLEET_DB_PASSWORD": "", "BORGFLEET_DB_NAME": "borgfleet_restart",
           "BORGFLEET_REDIS_URL": redis_srv.url, "BORGFLEET_RUN_DIR": str(base / "runs"),
           "BORGFLEET_SECRET_KEY": "test-" + uuid.uuid4().hex,
           "BORGFLEET_SECRET_KEY_FILE": str(base / "etc" / "secret.key")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        cfg = load_config()
        secret_store.ensure_key(cfg)
        dbm.create_database(cfg)
        conn = dbm.connect(cfg)
        dbm.upgrade(conn)
        # An admin: the tests add local clients, which only admins may.
        create_user(conn, "r_admin", "admin")
        uid = dbm.query(conn, "SELECT id FROM users WHERE username='r_admin'", one=True)["id"]
        token = create_token(conn, uid, "restart tests")
        conn.close()
        app = create_app({"TESTING": True})

        class Caller:
            def __init__(self):
                self.c, self.h = app.test_client(), {"Authorization": f"Bearer {token}"}

            def __getattr__(self, method):
                return lambda path, **kw: getattr(self.c, method)(path, headers=self.h, **kw)
        yield SimpleNamespace(cfg=cfg, env=env, redis=redis_srv, mariadb=maria, base=base,
                              api=lambda role=None: Caller())
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        redis_srv.stop()
        maria.stop()


def gated_borg(tmp_path):
    """A `borg` first on PATH: `borg create` touches `started` and waits for `go`; all else is borg."""
    bindir, started, go = tmp_path / "bin", tmp_path / "create-started", tmp_path / "go"
    bindir.mkdir()
    (bindir / "borg").write_text(
        "#!/bin/sh\n"
        f"if [ \"$1\" = create ]; then\n  touch '{started}'\n  i=0\n"
        f"  while [ ! -e '{go}' ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done\nfi\n"
        "exec /usr/bin/borg \"$@\"\n")
    (bindir / "borg").chmod(0o755)
    return bindir, started, go


class StatusWatch(threading.Thread):
    """Records every status a job row shows while it runs (MariaDB outages are skipped over)."""

    def __init__(self, cfg, job_id):
        super().__init__(daemon=True)
        self.cfg, self.job_id, self.seen, self.stop = dict(cfg, DB_RETRY_SECONDS=0), job_id, [], threading.Event()

    def run(self):
        conn = None
        while not self.stop.wait(0.2):
            try:
                conn = conn or dbm.connect(self.cfg)
                row = dbm.query(conn, "SELECT status FROM jobs WHERE id=%s", (self.job_id,), one=True, retry=0)
                if not self.seen or self.seen[-1] != row["status"]:
                    self.seen.append(row["status"])
            except Exception:
                conn = None


def read_job(cfg, job_id):
    conn = dbm.connect(cfg)
    try:
        row = dbm.query(conn, "SELECT * FROM jobs WHERE id=%s", (job_id,), one=True)
        log = dbm.query(conn, "SELECT n, line FROM job_log WHERE job_id=%s ORDER BY n", (job_id,))
        archive = dbm.query(conn, "SELECT name FROM archives WHERE id=%s", (row["archive_id"],), one=True) \
            if row["archive_id"] else None
        return row, log, archive
    finally:
        conn.close()


def wait_final(cfg, job_id, timeout=300):
    def final():
        try:
            row = read_job(cfg, job_id)[0]
        except Exception:   # MariaDB still coming back
            return None
        return row if row["status"] in q.FINAL else None
    return wait_for(final, timeout=timeout, interval=0.5, what=f"job {job_id} to end")


@pytest.mark.parametrize("service", ["redis", "mariadb"])
def test_backup_survives_a_restart(private, service, tmp_path):
    cfg, api = private.cfg, private.api()
    bindir, started, go = gated_borg(tmp_path)
    cl, bj = make_local_backup(private.api, tmp_path, f"rs-{service}",
                               files={"a.bin": os.urandom(200_000), "b.txt": b"hello " * 1000})
    worker = WorkerProc(1, tmp_path, {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    with open(tmp_path / "scheduler.log", "w") as slog:
        sched = subprocess.Popen([sys.executable, "-m", "borgfleet_ui", "scheduler"], env=worker_env(),
                                 stdout=slog, stderr=subprocess.STDOUT, cwd=str(REPO))
    watch = None
    try:
        setup_id = api.post(f"/api/servers/{cl['id']}/setup").json["job_id"]
        assert wait_final(cfg, setup_id)["status"] == "succeeded"
        job_id = api.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"]
        watch = StatusWatch(cfg, job_id)
        watch.start()
        wait_for(started.exists, timeout=180, what="borg create to start")
        assert read_job(cfg, job_id)[0]["status"] == "running"
        if service == "redis":
            # Redis restarts (every key lost: heartbeat, repository lock, the RQ job) while borg runs;
            # borg then goes on for three heartbeat TTLs, long enough for the scheduler's sweeps.
            private.redis.restart(down=3)
            # The running job takes its repository lock again (a second job of it must keep waiting).
            rr = dbm.connect_redis(cfg)
            wait_for(lambda: rr.get(q.lock_key(f"rs-{service}/data")) == job_id.encode(),
                     timeout=4 * q.HEARTBEAT_TTL, what="the repository lock to be held again")
            time.sleep(3 * q.HEARTBEAT_TTL)
            go.touch()
        else:
            # MariaDB goes down while borg runs; the playbook ends its backup and reports the
            # archive (events, the end of the run) while MariaDB is still down, then it comes back.
            private.mariadb.stop()
            go.touch()
            time.sleep(8)
            private.mariadb.start()
        row = wait_final(cfg, job_id)
        watch.stop.set()
        watch.join()
        row, log, archive = read_job(cfg, job_id)
        assert row["status"] == "succeeded", (row["status"], row["error"], watch.seen)
        assert "abandoned" not in watch.seen, watch.seen
        text = "\n".join(entry["line"] for entry in log)
        assert "abandoned" not in text
        # The whole log, numbered without gap: the task that ran across the outage and the recap.
        assert [entry["n"] for entry in log] == list(range(1, len(log) + 1))
        assert "Create the archives" in text and "PLAY RECAP" in text, text[-3000:]
        assert archive is not None
        names = BorgRepo(bj["location"], f"local-pass-rs-{service}", base_dir=tmp_path / f"rs-{service}-base") \
            .archive_names()
        assert names == [archive["name"]]
        # Nothing of the run is left: no borg (nor the wrapper) on our repository, no ansible-playbook of the job.
        wait_for(lambda: not processes_mentioning(str(tmp_path)) and not processes_mentioning(f"job-{job_id}-"),
                 timeout=30, what="the run's processes to be gone")
        # The service lived through it: the same worker runs the next backup, the scheduler still runs.
        assert worker.p.poll() is None and sched.poll() is None
        again = wait_final(cfg, api.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
        assert again["status"] == "succeeded", again["error"]
        assert len(BorgRepo(bj["location"], f"local-pass-rs-{service}",
                            base_dir=tmp_path / f"rs-{service}-base").archive_names()) == 2
    finally:
        go.touch()
        if watch:
            watch.stop.set()
        sched.terminate()
        sched.wait(timeout=30)
        worker.stop()
        drop_local_backup(private.api, cl, bj)


def test_no_job_is_judged_abandoned_right_after_a_redis_restart(private):
    """A restarted Redis has lost every heartbeat: the sweep waits one heartbeat TTL (running jobs
    write theirs again meanwhile) before it judges; a job whose worker is really gone still ends
    abandoned after that."""
    cfg = private.cfg
    conn, r = dbm.connect(cfg), dbm.connect_redis(cfg)
    try:
        job_id = q.create_job_row(conn, "backup")
        dbm.execute(conn, "UPDATE jobs SET status='running', started_at=UTC_TIMESTAMP(3) - INTERVAL 60 SECOND"
                          " WHERE id=%s", (job_id,))
        r.set(q.heartbeat_key(job_id), "1", ex=q.HEARTBEAT_TTL)
        private.redis.restart(down=0.5)   # between two beats: the key is gone
        assert not r.exists(q.heartbeat_key(job_id))
        assert q.sweep_abandoned(conn, r) == []
        assert dbm.query(conn, "SELECT status FROM jobs WHERE id=%s", (job_id,), one=True)["status"] == "running"
        # No beat comes back (there is no worker): once Redis has been up a TTL, the job is abandoned.
        assert wait_for(lambda: q.sweep_abandoned(conn, r), timeout=3 * q.HEARTBEAT_TTL,
                        what="the sweep to judge the job") == [job_id]
    finally:
        conn.close()
