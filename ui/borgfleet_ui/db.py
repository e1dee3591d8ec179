"""The service's connections: MariaDB (PyMySQL; versioned SQL migrations) and Redis, each built
in one place with the config's timeouts, and one of each per request in `g` (get_db, get_redis).

Every query takes parameters (%s placeholders); no SQL is built from user data.

A statement whose connection was lost (MariaDB restarted, network cut) reconnects and runs
again for up to DB_RETRY_SECONDS; any other error is raised at once. Connections are in
autocommit mode (no multi-statement transactions), so a statement retried on a new connection
is whole. A write whose reply alone was lost can be applied twice: our writes are idempotent
UPDATEs or appends to a job's log (where that costs at most a repeated line).
"""
import logging
import os
import re
import time

import pymysql
import pymysql.cursors
from flask import current_app, g
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry as RedisRetry

from .config import db_params

log = logging.getLogger("borgfleet.db")

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")

# Errors that say the connection failed, not the statement: server shutting down (1053), connection
# killed (1927), cannot connect (2003), gone away (2006), lost during a query (2013), lost (2055).
CONNECTION_ERRORS = {1053, 1927, 2003, 2006, 2013, 2055}


def connection_lost(e):
    if isinstance(e, pymysql.err.InterfaceError):   # a call on a connection already closed
        return True
    return isinstance(e, pymysql.err.OperationalError) and bool(e.args) and e.args[0] in CONNECTION_ERRORS


def timed_out(e):
    """The read timeout (DB_READ_TIMEOUT) cut a statement: it is not run again."""
    return isinstance(e, pymysql.err.OperationalError) and len(e.args) > 1 and e.args[0] == 2013 \
        and "timed out" in str(e.args[1])


def connect(cfg, database=True):
    params = db_params(cfg)
    if not database:
        params.pop("database")
    budget = float(cfg.get("DB_RETRY_SECONDS", 0))
    conn = _retry(None, budget, lambda: pymysql.connect(cursorclass=pymysql.cursors.DictCursor, autocommit=True,
                                                        charset="utf8mb4", **params))
    conn.retry_seconds = budget
    return conn


def get_db():
    if "db" not in g:
        g.db = connect(current_app.config)
    return g.db


def close_connections(_exc=None):
    db = g.pop("db", None)
    if db is not None:
        db.close()
    r = g.pop("redis", None)
    if r is not None:
        r.close()


def connect_redis(cfg):
    """A Redis client with connect/read timeouts that reconnects while Redis restarts.

    Only connection errors (and refused connects) are retried, for about REDIS_RETRY_SECONDS:
    a read timeout means a command hung, and running it again could pop a job twice. RQ's worker
    raises the read timeout of its own connection above its blocking dequeue; the scheduler keeps
    its own above its BLPOP wait (scheduler.RENEW).
    """
    budget = float(cfg.get("REDIS_RETRY_SECONDS", 30))
    return Redis.from_url(cfg["REDIS_URL"], socket_connect_timeout=cfg.get("REDIS_CONNECT_TIMEOUT", 5),
                          socket_timeout=cfg.get("REDIS_SOCKET_TIMEOUT", 30), socket_keepalive=True,
                          retry=RedisRetry(ExponentialBackoff(cap=1.0, base=0.1), int(budget) + 3,
                                           supported_errors=(RedisConnectionError, OSError)),
                          retry_on_error=[RedisConnectionError])


def get_redis():
    """The request's Redis client (closed with the request, like get_db's connection)."""
    if "redis" not in g:
        g.redis = connect_redis(current_app.config)
    return g.redis


def _retry(conn, budget, fn):
    """fn(), run again (after reconnecting conn) while the connection is lost, for up to budget seconds."""
    deadline = time.monotonic() + budget
    delay = 0.2
    while True:
        try:
            return fn()
        except pymysql.err.Error as e:
            if not connection_lost(e) or timed_out(e) or time.monotonic() + delay > deadline:
                raise
            log.warning("MariaDB connection lost (%s); retrying", e)
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
        if conn is not None:
            try:
                conn.ping(reconnect=True)
            except pymysql.err.Error:
                pass   # still down: the next attempt fails the same way and waits again


def retrying(conn, fn, budget=None):
    """fn() with conn's reconnect-and-retry budget (or the one given; 0 tries once)."""
    return _retry(conn, getattr(conn, "retry_seconds", 0) if budget is None else budget, fn)


def query(conn, sql, args=(), one=False, retry=None):
    def run():
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    rows = retrying(conn, run, retry)
    return (rows[0] if rows else None) if one else list(rows)


def execute(conn, sql, args=(), retry=None):
    """Run a write; returns lastrowid (inserts) or rowcount."""
    def run():
        with conn.cursor() as cur:
            n = cur.execute(sql, args)
            return cur.lastrowid or n
    return retrying(conn, run, retry)


def create_database(cfg):
    conn = connect(cfg, database=False)
    try:
        name = cfg["DB_NAME"]
        if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", name):
            raise ValueError("database name must match [A-Za-z0-9_]+")
        # Identifiers cannot be parameters; the name was validated above.
        execute(conn, f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()


def migrations():
    """[(version, filename)] sorted; files are NNNN_description.sql."""
    out = []
    for fn in os.listdir(MIGRATIONS_DIR):
        m = re.fullmatch(r"(\d{4})_[a-z0-9_]+\.sql", fn)
        if m:
            out.append((int(m.group(1)), fn))
    return sorted(out)


def upgrade(conn):
    """Apply pending migrations in order; returns the versions applied."""
    execute(conn, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                  " version INT PRIMARY KEY, name VARCHAR(200) NOT NULL,"
                  " applied_at DATETIME NOT NULL DEFAULT UTC_TIMESTAMP())")
    done = {r["version"] for r in query(conn, "SELECT version FROM schema_migrations")}
    applied = []
    for version, fn in migrations():
        if version in done:
            continue
        with open(os.path.join(MIGRATIONS_DIR, fn)) as f:
            text = f.read()
        # DDL commits implicitly in MariaDB; a failed migration stops here with its version unrecorded.
        for stmt in _statements(text):
            execute(conn, stmt)
        execute(conn, "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, fn))
        applied.append(version)
    return applied


def _statements(text):
    text = "\n".join(l for l in text.splitlines() if not l.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def init_app(app):
    app.teardown_appcontext(close_connections)
