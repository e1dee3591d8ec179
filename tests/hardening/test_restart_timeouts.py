"""Issue 10, timeouts: the Redis and PyMySQL clients give up on a server that stops answering
(read timeouts; connect timeouts, for a TCP connect that gets no answer, are set the same way:
a loopback test cannot drop SYNs without a firewall rule), and a short read timeout still
leaves RQ's blocking dequeue and the scheduler's BLPOP wait working."""
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pymysql
import pytest
import redis as redislib

from borgfleet_ui import db as dbm, queue as q
from borgfleet_ui.scheduler import LOCK
from uilib import REPO, drop_local_backup, make_local_backup, wait_for, wait_job, worker_env


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


@pytest.fixture()
def silent_server():
    """A TCP server that accepts connections and never says a word (a hung Redis)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def bounded(fn, limit):
    """(exception raised by fn, seconds) — or (None, None) if fn still runs after `limit` s."""
    out = {}

    def run():
        t = time.monotonic()
        try:
            fn()
            out["exc"] = None
        except Exception as e:
            out["exc"] = e
        out["took"] = time.monotonic() - t
    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(limit)
    return (out.get("exc"), out.get("took")) if "took" in out else (None, None)


def test_redis_read_timeout_on_a_hung_server(silent_server):
    r = dbm.connect_redis({"REDIS_URL": f"redis://127.0.0.1:{silent_server}/0", "REDIS_SOCKET_TIMEOUT": 1,
                      "REDIS_CONNECT_TIMEOUT": 1, "REDIS_RETRY_SECONDS": 5})
    exc, took = bounded(r.ping, 20)
    assert took is not None, "PING to a server that never answers is still waiting after 20 s"
    # A read timeout is not retried (the command may have run): it fails after one timeout.
    assert isinstance(exc, redislib.exceptions.TimeoutError) and took < 4, (exc, took)
    kw = r.connection_pool.connection_kwargs
    assert kw["socket_connect_timeout"] == 1 and kw["socket_timeout"] == 1


def test_mariadb_read_and_connect_timeouts(ui_env, silent_server):
    conn = dbm.connect(dict(ui_env, DB_READ_TIMEOUT=1))
    try:
        # A statement the server does not answer within the read timeout fails, and is not run again.
        exc, took = bounded(lambda: dbm.query(conn, "SELECT SLEEP(6)"), 20)
        assert isinstance(exc, pymysql.err.OperationalError) and took < 4, (exc, took)
        assert dbm.query(conn, "SELECT 1 AS one", one=True) == {"one": 1}   # the connection comes back
    finally:
        conn.close()
    # A server that accepts but never greets (PyMySQL's connect timeout covers the TCP connect only;
    # the handshake is a read): the read timeout ends the wait.
    exc, took = bounded(lambda: dbm.connect(dict(ui_env, DB_PORT=silent_server, DB_CONNECT_TIMEOUT=1,
                                                 DB_READ_TIMEOUT=1, DB_RETRY_SECONDS=0)), 20)
    assert isinstance(exc, pymysql.err.OperationalError) and took < 4, (exc, took)


def test_short_read_timeout_keeps_worker_and_scheduler_waits(api, db, redis, start_worker, tmp_path):
    """A 1 s read timeout: the RQ worker idles in its blocking dequeue (rq raises the timeout of its
    own connection above it) and the scheduler sleeps in BLPOP (it keeps RENEW + 5 s) without error."""
    short = {"BORGFLEET_REDIS_SOCKET_TIMEOUT": "1"}
    cl, bj = make_local_backup(api, tmp_path, "tmo-cl", schedule="0 3 * * *")
    worker = start_worker(1, env=short)
    redis.delete(LOCK)
    slog = tmp_path / "scheduler.log"
    with open(slog, "w") as out:
        sched = subprocess.Popen([sys.executable, "-m", "borgfleet_ui", "scheduler"], env=worker_env(short),
                                 stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO))
    try:
        wait_for(lambda: redis.get(LOCK), what="the scheduler to take the lock")
        time.sleep(8)   # idle: several BLPOP waits of the scheduler, one long dequeue of the worker
        assert worker.p.poll() is None and sched.poll() is None
        setup = wait_job(db, api("operator").post(f"/api/servers/{cl['id']}/setup").json["job_id"])
        assert setup["status"] == "succeeded", setup["error"]
        due = (utcnow() + timedelta(seconds=2)).replace(microsecond=0)
        dbm.execute(db, "UPDATE backup_jobs SET next_run_at=%s WHERE id=%s", (due, bj["id"]))
        q.wake_scheduler(redis)
        fired = wait_for(lambda: dbm.query(db, "SELECT id FROM jobs WHERE backup_job_id=%s AND kind='backup'",
                                           (bj["id"],)), timeout=30, what="the due backup to be queued")
        assert len(fired) == 1
        assert wait_job(db, fired[0]["id"])["status"] == "succeeded"
        assert worker.p.poll() is None and sched.poll() is None
        text = slog.read_text()
        assert "tick failed" not in text and "Traceback" not in text, text[-2000:]
        assert "Redis connection timeout" not in (tmp_path / "worker-1.log").read_text()
    finally:
        sched.terminate()
        sched.wait(timeout=30)
        drop_local_backup(api, cl, bj)
