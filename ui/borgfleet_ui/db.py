"""MariaDB access (PyMySQL): one connection per request in `g`, versioned SQL migrations.

Every query takes parameters (%s placeholders); no SQL is built from user data.
"""
import os
import re

import pymysql
import pymysql.cursors
from flask import current_app, g

from .config import db_params

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")


def connect(cfg, database=True):
    params = db_params(cfg)
    if not database:
        params.pop("database")
    return pymysql.connect(cursorclass=pymysql.cursors.DictCursor, autocommit=True,
                           charset="utf8mb4", **params)


def get_db():
    if "db" not in g:
        g.db = connect(current_app.config)
    return g.db


def close_db(_exc=None):
    db = g.pop("db", None)
    if db is not None:
        db.close()


def query(conn, sql, args=(), one=False):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    return (rows[0] if rows else None) if one else list(rows)


def execute(conn, sql, args=()):
    """Run a write; returns lastrowid (inserts) or rowcount."""
    with conn.cursor() as cur:
        n = cur.execute(sql, args)
        return cur.lastrowid or n


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
    app.teardown_appcontext(close_db)
