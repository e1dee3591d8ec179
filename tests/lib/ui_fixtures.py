"""Fixtures for the service: a throwaway MariaDB database and a private Redis db per run,
the Flask app/client, users with tokens, and real RQ workers in subprocesses.

Registered once, by the root conftest, so tests/ui and tests/hardening share ONE service per
session: two would each point os.environ (which workers inherit) at their own database."""
import os
import sys
import uuid
from pathlib import Path

import pytest

# uilib as the top-level module the test files import (one module object, one state).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))
from uilib import WorkerProc, claim_redis_db  # noqa: E402  (also puts ui/ on sys.path)
from borgfleet_ui import create_app, db as dbm, secret_store  # noqa: E402
from borgfleet_ui.auth import create_token, create_user  # noqa: E402
from borgfleet_ui.config import load_config  # noqa: E402


@pytest.fixture(scope="session")
def ui_env(tmp_path_factory):
    name = f"bfui_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    run_dir = tmp_path_factory.mktemp("runs")
    redis_db, unclaim = claim_redis_db()
    env = {"BORGFLEET_DB_NAME": name, "BORGFLEET_REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
           "BORGFLEET_RUN_DIR": str(run_dir), "BORGFLEET_SECRET_KEY": "test-" + uuid.uuid4().hex,
           "BORGFLEET_SECRET_KEY_FILE": str(tmp_path_factory.mktemp("etc") / "secret.key"),
           # Every test client logs in from 127.0.0.1: the tests of the limit set their own low one.
           "BORGFLEET_LOGIN_MAX_FAILURES": "1000",
           # No index run after each backup of every test (the archive index tests turn it on).
           "BORGFLEET_INDEX_AFTER_BACKUP": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cfg = load_config()
    assert secret_store.ensure_key(cfg)
    dbm.create_database(cfg)
    conn = dbm.connect(cfg)
    assert dbm.upgrade(conn) == [v for v, _ in dbm.migrations()]
    # Most tests set a client up only to back it up: the capabilities detection every setup queues
    # would hold their backups back. tests/ui/test_server_page.py turns it on for its own setups.
    dbm.execute(conn, "INSERT INTO settings (name, value) VALUES ('detect_after_setup', '0')")
    conn.close()
    r = dbm.connect_redis(cfg)
    r.flushdb()
    yield cfg
    r.flushdb()
    unclaim()
    conn = dbm.connect(cfg, database=False)
    dbm.execute(conn, f"DROP DATABASE `{name}`")
    conn.close()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def app(ui_env):
    return create_app({"TESTING": True})


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def db(ui_env):
    conn = dbm.connect(ui_env)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def redis(ui_env):
    return dbm.connect_redis(ui_env)


@pytest.fixture(scope="session")
def users(db):
    """{role: (username, password, token)} for admin, operator and viewer."""
    out = {}
    for role in ("admin", "operator", "viewer"):
        name = f"t_{role}"
        password = create_user(db, name, role)
        uid = dbm.query(db, "SELECT id FROM users WHERE username=%s", (name,), one=True)["id"]
        out[role] = (name, password, create_token(db, uid, "tests"))
    return out


@pytest.fixture(scope="session")
def api(app, users):
    """api(role).get/post/put/delete(path, json=...) with that role's bearer token."""
    class Caller:
        def __init__(self, token):
            self.c, self.h = app.test_client(), {"Authorization": f"Bearer {token}"}

        def __getattr__(self, method):
            return lambda path, **kw: getattr(self.c, method)(path, headers=self.h, **kw)
    return lambda role: Caller(users[role][2])


@pytest.fixture()
def start_worker(ui_env, tmp_path):
    started = []

    def start(instance=1, env=None):
        w = WorkerProc(instance, tmp_path, env)
        started.append(w)
        return w
    yield start
    for w in started:
        w.stop()


