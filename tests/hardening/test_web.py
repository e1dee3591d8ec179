"""The web service under attack (issue 10, "The web service"): the login's `next` never leaves
the site, failed logins are limited on Redis (per address and per user name) with 429, unknown
user names cost the same password hash, sessions die on logout / password change / disable,
security headers on every answer, error pages escape what they echo, API tokens expire and show
their last use, and a Redis with a password (the ACL install.sh writes) serves the app and a
real worker. Flask's test client against the real MariaDB and Redis fixtures; the password
Redis is a private redis-server on a free port."""
import datetime
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import pytest

from borgfleet_ui import auth, create_app, db as dbm, queue as q
from borgfleet_ui.auth import create_token, create_user
from tests.lib.sshd import free_port
from test_browser import CHROMIUM, browser, web  # noqa: F401  (fixtures: Chromium and the web process)
from uilib import REPO, UI, wait_for, worker_env

SITE = "http://bf.example"


def new_user(db, role="viewer"):
    name = "w" + uuid.uuid4().hex[:10]
    password = create_user(db, name, role)
    return name, password, dbm.query(db, "SELECT id FROM users WHERE username=%s", (name,), one=True)["id"]


def csrf(c, path="/login"):
    return re.search(r'name="csrf_token" value="([^"]+)"', c.get(path).get_data(as_text=True)).group(1)


def login(c, name, password, query=b""):
    return c.post("/login", query_string=query.decode("latin-1"),
                  data={"username": name, "password": password, "csrf_token": csrf(c)})


def client(app, addr):
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = addr
    return c


def where_browser_goes(location):
    """The URL a browser opens for a Location header: it drops tabs/newlines and reads `\\` as `/`."""
    cleaned = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    return urljoin(SITE + "/login", cleaned)


def test_login_next_never_leaves_the_site(app, db):
    name, password, _ = new_user(db)
    # Raw query strings: percent-encoded as an attacker would put them in a link.
    evil = [b"next=//evil.example", b"next=/%5Cevil.example", b"next=/%09/evil.example",
            b"next=https://evil.example/", b"next=/%5C/evil.example", b"next=javascript:alert(1)",
            b"next=/%0A/evil.example", b"next=/%0D%0A/evil.example", b"next=%5C%5Cevil.example",
            b"next=http:/evil.example", b"next=%20//evil.example", b"next=/%00/evil.example",
            b"next=//evil.example%2F%2E%2E", b"next=%2F%2Fevil.example", b"next=/\t/evil.example",
            b"next=https:evil.example", b"next=/%E3%80%82/evil.example", b"next=data:text/html,x",
            b"next=" + quote("/\\\t/evil.example", safe="").encode(), b"next=/.//evil.example%09"]
    c = client(app, "10.61.0.1")
    for query in evil:
        resp = login(c, name, password, query)
        assert resp.status_code == 302, (query, resp.status_code)
        target = where_browser_goes(resp.headers["Location"])
        assert urlsplit(target).netloc == "bf.example" and urlsplit(target).scheme == "http", (query, target)
    # Local paths are kept, query string included.
    for query, expected in ((b"next=/jobs%3Fstatus%3Dfailed", "/jobs?status=failed"), (b"next=/archives", "/archives")):
        assert login(c, name, password, query).headers["Location"] == expected


@pytest.fixture()
def limited(ui_env, redis):
    """Two app instances (as two web processes) with a limit of 3 failures, sharing the real Redis."""
    cfg = {"TESTING": True, "LOGIN_MAX_FAILURES": 3, "LOGIN_WINDOW_SECONDS": 120}
    yield create_app(cfg), create_app(cfg)
    for k in redis.scan_iter("borgfleet:login:*"):
        redis.delete(k)


def test_login_rate_limit_per_address_and_per_user_on_redis(limited, db, redis):
    app_a, app_b = limited
    name, password, _ = new_user(db)
    # Per address: three failures with made-up user names, then even the right password gets 429,
    # from the other web process too; another address logs in.
    c = client(app_a, "10.62.0.1")
    for i in range(3):
        assert login(c, f"nobody{i}", "wrong-password").status_code == 401
    resp = login(c, name, password)
    assert resp.status_code == 429 and 0 < int(resp.headers["Retry-After"]) <= 120
    assert "Too many failed logins" in resp.get_data(as_text=True)
    assert login(client(app_b, "10.62.0.1"), name, password).status_code == 429
    assert int(redis.get("borgfleet:login:addr:10.62.0.1")) >= 3
    assert login(client(app_b, "10.62.0.2"), name, password).status_code == 302
    # Per user name: three failures from three addresses, then the user's own address gets 429.
    # Spellings that MariaDB's collation matches to the same user count for it too.
    victim, vpass, _ = new_user(db)
    for i, spelling in enumerate((victim, victim.upper(), victim.replace("w", "\u0175", 1) + " ")):
        assert login(client(app_a if i % 2 else app_b, f"10.63.0.{i}"), spelling, "wrong-password").status_code == 401
    assert login(client(app_b, "10.63.1.1"), victim, vpass).status_code == 429
    # Successes are not failures: many logins in a row never reach the limit.
    other, opass, _ = new_user(db)
    c = client(app_a, "10.64.0.1")
    assert [login(c, other, opass).status_code for _ in range(6)] == [302] * 6


def test_unknown_user_runs_the_password_hash(app, db, monkeypatch):
    """The same work for unknown, disabled and known users: a password hash check runs every time
    (a spy around the real werkzeug function; it still answers)."""
    checked = []

    def spy(pwhash, password):
        checked.append(pwhash.split("$")[0])
        return real(pwhash, password)
    real = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", spy)
    name, password, uid = new_user(db)
    off, offpass, offid = new_user(db)
    dbm.execute(db, "UPDATE users SET disabled=1 WHERE id=%s", (offid,))
    c = client(app, "10.65.0.1")
    answers = []
    for user, pw in ((name, "wrong-password"), ("no-such-user-" + uuid.uuid4().hex[:6], "wrong-password"),
                     (off, offpass)):
        before = len(checked)
        resp = login(c, user, pw)
        answers.append((resp.status_code, re.search(r'id="error">([^<]*)', resp.get_data(as_text=True)).group(1)))
        assert len(checked) == before + 1, user
    assert set(answers) == {(401, "Wrong user name or password.")}
    method = dbm.query(db, "SELECT password_hash FROM users WHERE id=%s", (uid,), one=True)["password_hash"]
    assert len(set(checked)) == 1 and checked[0] == method.split("$")[0]   # same algorithm and cost


def logged_in(app, name, password, addr="10.66.0.1"):
    c = client(app, addr)
    assert login(c, name, password).status_code == 302
    assert c.get("/api/me").json["username"] == name
    return c


def replay(app, c):
    """A new browser holding only the old session cookie."""
    cookie = c.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    return thief


def test_session_dies_on_logout(app, db):
    name, password, _ = new_user(db)
    c = logged_in(app, name, password)
    thief = replay(app, c)
    assert thief.get("/api/me").status_code == 200
    token = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").get_data(as_text=True)).group(1)
    assert c.post("/logout", data={"csrf_token": token}).status_code == 302
    assert thief.get("/api/me").status_code == 401
    assert "/login" in thief.get("/").headers["Location"]


def test_session_dies_on_password_change_api_and_cli(app, api, db, ui_env):
    name, password, uid = new_user(db)
    c = logged_in(app, name, password)
    thief = replay(app, c)
    assert api("operator").put(f"/api/users/{uid}", json={"password": "new-password-1"}).status_code == 403
    assert api("admin").put(f"/api/users/{uid}", json={"password": "short"}).status_code == 400
    assert thief.get("/api/me").status_code == 200
    resp = api("admin").put(f"/api/users/{uid}", json={"password": "new-password-1"})
    assert resp.status_code == 200 and "password" not in str(resp.json) and "new-password-1" not in str(resp.json)
    assert c.get("/api/me").status_code == 401 and thief.get("/api/me").status_code == 401
    assert login(client(app, "10.66.0.2"), name, password).status_code == 401
    c = logged_in(app, name, "new-password-1")
    # The CLI path: a generated password, printed once, never taken from argv.
    out = subprocess.run([sys.executable, "-m", "borgfleet_ui", "set-password", "--generate", name],
                         capture_output=True, text=True, env=worker_env(), cwd=str(REPO), check=True).stdout
    new = re.search(r"new password of '[^']+': (\S+)", out).group(1)
    assert c.get("/api/me").status_code == 401
    logged_in(app, name, new)


def test_session_dies_on_disable(app, api, db):
    name, password, uid = new_user(db, "operator")
    c = logged_in(app, name, password)
    token = create_token(db, uid, "script")
    assert app.test_client().get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert api("admin").put(f"/api/users/{uid}", json={"disabled": True}).json["disabled"] == 1
    assert c.get("/api/me").status_code == 401
    assert app.test_client().get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert login(client(app, "10.67.0.1"), name, password).status_code == 401
    assert api("admin").put(f"/api/users/{uid}", json={"disabled": False, "role": "viewer"}).status_code == 200
    assert logged_in(app, name, password).get("/api/me").json["role"] == "viewer"


def test_session_lifetime(ui_env, db):
    app = create_app({"TESTING": True, "SESSION_MINUTES": 30})
    name, password, uid = new_user(db)
    c = client(app, "10.68.0.1")
    resp = login(c, name, password)
    expires = re.search(r"Expires=([^;]+)", resp.headers["Set-Cookie"]).group(1)
    left = datetime.datetime.strptime(expires, "%a, %d %b %Y %H:%M:%S GMT") - datetime.datetime.utcnow()
    assert datetime.timedelta(minutes=29) < left <= datetime.timedelta(minutes=30, seconds=5)
    row = dbm.query(db, "SELECT TIMESTAMPDIFF(SECOND, created_at, expires_at) AS s FROM user_sessions"
                        " WHERE user_id=%s", (uid,), one=True)
    assert row["s"] == 30 * 60
    # Past its end the server refuses the cookie, whatever the browser keeps.
    dbm.execute(db, "UPDATE user_sessions SET expires_at=UTC_TIMESTAMP() - INTERVAL 1 SECOND WHERE user_id=%s", (uid,))
    assert c.get("/api/me").status_code == 401


HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def check_headers(resp, hsts=False):
    for k, v in HEADERS.items():
        assert resp.headers.get(k) == v, (resp.request.path, k)
    csp = resp.headers["Content-Security-Policy"]
    for part in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"):
        assert part in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert ("Strict-Transport-Security" in resp.headers) == hsts


def test_security_headers_on_pages_and_api(app, api, db, ui_env):
    name, password, _ = new_user(db)
    c = logged_in(app, name, password)
    for resp in (c.get("/login"), c.get("/"), c.get("/archives"), c.get("/static/style.css"), c.get("/nope"),
                 app.test_client().get("/api/health"), api("viewer").get("/api/me"), app.test_client().get("/api/me")):
        check_headers(resp)
    secure = create_app({"TESTING": True, "SECURE_COOKIES": True})
    sc = client(secure, "10.69.0.1")
    resp = login(sc, name, password)
    assert "Secure" in resp.headers["Set-Cookie"] and "HttpOnly" in resp.headers["Set-Cookie"]
    check_headers(resp, hsts=True)
    check_headers(secure.test_client().get("/api/health"), hsts=True)
    # The CSP holds for the pages as written: no inline script, handler or style in any template.
    for t in (UI / "borgfleet_ui" / "templates").glob("*.html"):
        text = t.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), t.name
        assert not re.search(r"\son[a-z]+\s*=", text, re.I) and "style=" not in text and "<style" not in text, t.name


def test_error_pages_escape_what_they_echo(ui_env, api, db):
    app = create_app({"TESTING": True})
    payload = "<script>alert(1)</script>"

    # A route of this test only: it echoes the query into an HTTP error, as any abort(400, msg) may.
    @app.get("/echo-test")
    @auth.role("viewer")
    def echo():
        from flask import abort, request
        abort(400, request.args["q"])
    token = api("viewer").h
    resp = app.test_client().get("/echo-test", query_string={"q": payload}, headers=token)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 400 and payload not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    check_headers(resp)
    # Real pages that echo what was typed: a refused server name, unknown URLs.
    name, password, _ = new_user(db, "operator")
    c = logged_in(app, name, password, "10.71.0.1")
    meta = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/servers").get_data(as_text=True)).group(1)
    resp = c.post("/servers", data={"name": payload, "role": "client", "csrf_token": meta})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 400 and payload not in body and "&lt;script&gt;" in body
    for path in (f"/{quote(payload)}", f"/jobs/{quote(payload)}", f"/api/{quote(payload)}"):
        assert payload not in c.get(path).get_data(as_text=True)


def test_token_expiry_and_last_use(app, db):
    name, password, uid = new_user(db)
    base = create_token(db, uid, "base")
    h = {"Authorization": f"Bearer {base}"}
    c = app.test_client()
    now = datetime.datetime.now(datetime.timezone.utc)
    for bad in ("tomorrow", (now - datetime.timedelta(minutes=1)).isoformat(), 12345):
        resp = c.post("/api/tokens", json={"name": "bad", "expires_at": bad}, headers=h)
        assert resp.status_code == 400 and "expires_at" in resp.json["error"], bad
    soon = (now + datetime.timedelta(seconds=3)).isoformat()
    made = c.post("/api/tokens", json={"name": "short", "expires_at": soon}, headers=h)
    assert made.status_code == 201 and made.json["expires_at"]
    short = {"Authorization": f"Bearer {made.json['token']}"}
    assert c.get("/api/me", headers=short).status_code == 200
    listed = {t["name"]: t for t in c.get("/api/tokens", headers=h).json["items"]}
    assert listed["short"]["last_used_at"] and listed["short"]["expires_at"]
    assert listed["base"]["last_used_at"] and listed["base"]["expires_at"] is None
    wait_for(lambda: c.get("/api/me", headers=short).status_code == 401, timeout=10, what="the token to expire")
    assert c.get("/api/servers", headers=short).status_code == 401
    assert c.get("/api/me", headers=h).status_code == 200   # the token without expiry still works


def acl_rules():
    text = (UI / "systemd" / "install.sh").read_text()
    return re.search(r"^REDIS_ACL_RULES='([^']+)'$", text, re.M).group(1)


@pytest.fixture()
def password_redis(tmp_path):
    """A private redis-server with the ACL install.sh writes (default user off); never the shared one."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    port, tls_port, password = free_port("127.0.0.1"), free_port("127.0.0.1"), "pw-" + uuid.uuid4().hex
    # TLS as docs/service.md sets it up for remote workers: a self-signed certificate for 127.0.0.1.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    conf = tmp_path / "redis.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {tmp_path}\n"
                    f"tls-port {tls_port}\ntls-cert-file {tmp_path}/cert.pem\ntls-key-file {tmp_path}/key.pem\n"
                    f"tls-ca-cert-file {tmp_path}/cert.pem\ntls-auth-clients no\n"
                    f"user default off\nuser borgfleet on >{password} {acl_rules()}\n")
    p = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    from redis import Redis
    wait_for(lambda: _pings(Redis(port=port, username="borgfleet", password=password)), timeout=20,
             what="the private redis-server")
    yield port, password, tls_port, tmp_path / "cert.pem"
    p.terminate()
    p.wait(timeout=20)


def _pings(r):
    try:
        return r.ping()
    except Exception:
        return False


def test_redis_password_in_url_app_and_worker(password_redis, ui_env, db, tmp_path):
    from redis import Redis
    from redis.exceptions import AuthenticationError
    port, password, tls_port, ca = password_redis
    with pytest.raises(AuthenticationError):   # the default user is off: no password, no Redis
        Redis(port=port).ping()
    url = f"redis://borgfleet:{password}@127.0.0.1:{port}/0"
    app = create_app({"TESTING": True, "REDIS_URL": url})
    assert app.test_client().get("/api/health").json["redis"] == "ok"
    name, password_u, _ = new_user(db)
    assert login(client(app, "10.70.0.1"), name, "wrong-password").status_code == 401
    r = Redis(port=port, username="borgfleet", password=password)
    assert r.get("borgfleet:login:addr:10.70.0.1") == b"1"   # the limiter counted in this Redis
    bad = create_app({"TESTING": True, "REDIS_URL": f"redis://borgfleet:wrong@127.0.0.1:{port}/0"})
    health = bad.test_client().get("/api/health")
    assert health.status_code == 503 and "wrong" not in health.get_data(as_text=True)
    resp = login(client(bad, "10.70.0.2"), name, password_u)
    assert resp.status_code == 503 and "Login is unavailable" in resp.get_data(as_text=True)
    # A real worker, configured only through the URL (ACL user and password over TLS, as a remote
    # worker host is), takes a job from this Redis and runs it.
    job = q.queues(r)[0].enqueue("os.getpid")
    tls_url = f"rediss://borgfleet:{password}@127.0.0.1:{tls_port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    env = worker_env({"BORGFLEET_REDIS_URL": tls_url})
    out = subprocess.run([sys.executable, "-m", "borgfleet_ui", "worker", "--instance", "77", "--burst"],
                         env=env, cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert password not in out.stdout + out.stderr
    job.refresh()
    assert job.get_status() == "finished" and isinstance(job.return_value(), int)
    wrong = subprocess.run([sys.executable, "-m", "borgfleet_ui", "worker", "--instance", "78", "--burst"],
                           env=worker_env({"BORGFLEET_REDIS_URL": f"redis://borgfleet:nope@127.0.0.1:{port}/0"}),
                           cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and ("WRONGPASS" in wrong.stderr or "invalid username-password" in wrong.stderr)
    assert "borgfleet:nope@" not in wrong.stdout + wrong.stderr   # the URL itself is not printed


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_pages_break_no_csp_rule_in_chromium(browser, web, users):  # noqa: F811
    """The real pages in Debian's chromium: no Content-Security-Policy violation on any page, and a
    page framed by another origin stays blank (frame-ancestors 'none')."""
    page = browser.new_context().new_page()
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(web + "/login")
    page.fill("input[name=username]", users["admin"][0])
    page.fill("input[name=password]", users["admin"][1])
    page.click("#login")
    page.wait_for_url(web + "/")
    for path in ("/servers", "/backup-jobs", "/archives", "/jobs", "/workers"):
        assert page.goto(web + path).status == 200
    assert violations == []
    page.set_content(f'<iframe id="f" src="{web}/login"></iframe>')
    page.wait_for_timeout(1500)
    assert page.frame_locator("#f").locator("#login").count() == 0
    assert any("frame-ancestors" in v for v in violations)   # refused by the policy, not by chance


def test_redis_requirepass_in_url(ui_env, db, tmp_path):
    """The older form: `requirepass` (the default user's password) and `redis://:PASSWORD@host/db`."""
    from redis import Redis
    from redis.exceptions import AuthenticationError
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port, password = free_port("127.0.0.1"), "rp-" + uuid.uuid4().hex
    conf = tmp_path / "redis.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {tmp_path}\nrequirepass {password}\n")
    p = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        r = Redis(port=port, password=password)
        wait_for(lambda: _pings(r), timeout=20, what="the private redis-server")
        with pytest.raises(AuthenticationError):
            Redis(port=port).get("x")
        app = create_app({"TESTING": True, "REDIS_URL": f"redis://:{password}@127.0.0.1:{port}/0"})
        assert app.test_client().get("/api/health").json["redis"] == "ok"
        assert login(client(app, "10.72.0.1"), "nobody", "wrong-password").status_code == 401
        assert r.get("borgfleet:login:addr:10.72.0.1") == b"1"
    finally:
        p.terminate()
        p.wait(timeout=20)
