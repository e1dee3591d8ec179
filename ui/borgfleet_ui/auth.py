"""Users, roles, API tokens, session login and CSRF.

Every endpoint declares its minimum role with @role(...); a request to an endpoint that
declares none is refused (fail closed). Only PUBLIC endpoints answer without a login.

Sessions live server-side (table user_sessions): the cookie holds a random id whose hash is
looked up on every request, so logout, a password change or disabling a user ends them.
"""
import datetime
import hashlib
import ipaddress
import secrets
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, g, jsonify, redirect, render_template,
                   request, session, url_for)
from flask_babel import gettext
from redis.exceptions import RedisError
from werkzeug.security import check_password_hash, generate_password_hash

from .db import execute, get_db, get_redis, query
from .fleet.common import Invalid   # the API answers 400 with its message

bp = Blueprint("auth", __name__)

ROLES = ("viewer", "operator", "admin")
PUBLIC = {"auth.login", "api.health", "static", "vendor.static", "vendor_charts.static", "i18n.language"}
PASSWORD_MIN, PASSWORD_MAX = 10, 1024


def role(minimum):
    assert minimum in ROLES

    def deco(fn):
        fn.min_role = minimum
        return fn
    return deco


def allow_networks(config_key):
    """Also let in, without a login, the addresses in the networks of app.config[config_key]. Such an
    endpoint is read by programs (a scraper has no browser to log in with): 401, never a redirect."""
    def deco(fn):
        fn.allow_networks = config_key
        return fn
    return deco


def _address_allowed(networks):
    try:
        addr = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(addr in n for n in networks)


def has_role(user, minimum):
    return user is not None and ROLES.index(user["role"]) >= ROLES.index(minimum)


def hash_token(token):
    # Tokens and session ids are 256-bit random values, so a fast hash is enough at rest (unlike passwords).
    return hashlib.sha256(token.encode()).hexdigest()


def check_password_rule(password):
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise Invalid(gettext("password must be a string of %(password_min)s to %(password_max)s characters",
                              password_min=PASSWORD_MIN, password_max=PASSWORD_MAX))
    return password


def generate_password():
    return secrets.token_urlsafe(15)


def create_user(db, username, role_name, password=None):
    password = password or generate_password()
    execute(db, "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s)",
            (username, generate_password_hash(password), role_name))
    return password


def end_sessions(db, user_id):
    return execute(db, "DELETE FROM user_sessions WHERE user_id=%s", (user_id,))


def set_password(db, user_id, password):
    """New password; every login session of the user ends (API tokens stay: revoke them apart)."""
    execute(db, "UPDATE users SET password_hash=%s WHERE id=%s",
            (generate_password_hash(check_password_rule(password)), user_id))
    end_sessions(db, user_id)


def set_disabled(db, user_id, disabled):
    """A disabled user's sessions end at once; its tokens are refused while it stays disabled."""
    execute(db, "UPDATE users SET disabled=%s WHERE id=%s", (1 if disabled else 0, user_id))
    if disabled:
        end_sessions(db, user_id)


def parse_expiry(value):
    """An ISO 8601 time in the future (UTC when it names no offset) -> naive UTC, or None."""
    if value is None:
        return None
    try:
        t = datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        t = None
    if t is None:
        raise Invalid(gettext("expires_at must be an ISO 8601 time, e.g. 2027-01-31T00:00:00Z"))
    if t.tzinfo is not None:
        t = t.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    if t <= datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None):
        raise Invalid(gettext("expires_at must be in the future"))
    return t.replace(microsecond=0)


def create_token(db, user_id, name, expires_at=None):
    token = "bf_" + secrets.token_urlsafe(32)
    execute(db, "INSERT INTO api_tokens (user_id, name, token_hash, expires_at) VALUES (%s, %s, %s, %s)",
            (user_id, name, hash_token(token), expires_at))
    return token


def _load_user():
    g.user, g.via_token = None, False
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        db = get_db()
        row = query(db, "SELECT u.*, t.id AS token_id FROM api_tokens t JOIN users u ON u.id=t.user_id"
                        " WHERE t.token_hash=%s AND u.disabled=0"
                        " AND (t.expires_at IS NULL OR t.expires_at > UTC_TIMESTAMP())",
                    (hash_token(header[7:].strip()),), one=True)
        if row:
            # At most one write a minute per token: scripts poll, and reads should stay reads.
            execute(db, "UPDATE api_tokens SET last_used_at=UTC_TIMESTAMP() WHERE id=%s AND"
                        " (last_used_at IS NULL OR last_used_at < UTC_TIMESTAMP() - INTERVAL 60 SECOND)",
                    (row["token_id"],))
            g.user, g.via_token = row, True
    elif session.get("sid"):
        g.user = query(get_db(), "SELECT u.* FROM user_sessions s JOIN users u ON u.id=s.user_id"
                                 " WHERE s.sid_hash=%s AND s.expires_at > UTC_TIMESTAMP() AND u.disabled=0",
                       (hash_token(session["sid"]),), one=True)
        if g.user is None:
            session.clear()   # ended, expired or disabled: the browser drops the dead cookie


def _start_session(db, user):
    sid = secrets.token_urlsafe(32)
    execute(db, "DELETE FROM user_sessions WHERE expires_at < UTC_TIMESTAMP()")
    execute(db, "INSERT INTO user_sessions (user_id, sid_hash, expires_at)"
                " VALUES (%s, %s, UTC_TIMESTAMP() + INTERVAL %s MINUTE)",
            (user["id"], hash_token(sid), current_app.config["SESSION_MINUTES"]))
    session.clear()
    session.permanent = True   # the cookie expires with the session (PERMANENT_SESSION_LIFETIME)
    session["sid"] = sid


def csrf_token():
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def enforce():
    """before_request for the whole app: authentication, role, CSRF."""
    endpoint = request.endpoint
    if endpoint in PUBLIC or endpoint is None:
        if request.method == "POST" and endpoint == "auth.login":
            _check_csrf()
        return None
    allow = getattr(current_app.view_functions.get(endpoint), "allow_networks", None)
    if allow and request.method == "GET" and _address_allowed(current_app.config[allow]):
        g.user, g.via_token = None, False
        return None
    _load_user()
    is_api = request.path.startswith("/api/") or allow is not None
    if g.user is None:
        if is_api:
            return jsonify(error=gettext("authentication required")), 401
        return redirect(url_for("auth.login", next=request.full_path))
    view = current_app.view_functions.get(endpoint)
    minimum = getattr(view, "min_role", None)
    if minimum is None or not has_role(g.user, minimum):
        if is_api:
            return jsonify(error=gettext("role %(role)s required", role=minimum or "?")), 403
        abort(403)
    # Token requests carry no cookie, so they cannot be forged cross-site; sessions need the token.
    if request.method not in ("GET", "HEAD", "OPTIONS") and not g.via_token:
        _check_csrf()
    return None


def _check_csrf():
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
    if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
        abort(400, gettext("CSRF token missing or wrong"))


def safe_next(nxt):
    """Where to go after login: a local path, else the dashboard.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
    `/\\t/evil.example` or `/\\evil.example` would become `//evil.example` (another site): only
    printable ASCII without spaces or backslashes, one leading slash, no scheme or host."""
    if (not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt
            or any(not 0x21 <= ord(c) <= 0x7e for c in nxt)):
        return url_for("pages.dashboard")
    parts = urlsplit(nxt)
    return url_for("pages.dashboard") if parts.scheme or parts.netloc else nxt


_dummy = []


def _dummy_hash():
    # Unknown and disabled users are checked against this hash so that they cost the same
    # password work as known ones: the answer time does not tell which user names exist.
    if not _dummy:
        _dummy.append(generate_password_hash(secrets.token_urlsafe(16)))
    return _dummy[0]


def _login_keys(username):
    addr = request.remote_addr or "unknown"
    user = hashlib.sha256(username.encode()).hexdigest()
    return [f"borgfleet:login:addr:{addr}", f"borgfleet:login:user:{user}"]


def _take_attempt(r, keys):
    """Count one attempt on every key at once (atomic, so parallel guesses cannot slip past the
    limit); a success gives it back, so only failures add up. Returns the seconds to wait, 0 if allowed."""
    cap, window = current_app.config["LOGIN_MAX_FAILURES"], current_app.config["LOGIN_WINDOW_SECONDS"]
    with r.pipeline() as p:
        for k in keys:
            p.set(k, 0, ex=window, nx=True)
            p.incr(k)
        counts = p.execute()[1::2]
    over = [k for k, n in zip(keys, counts) if n > cap]
    return max([r.ttl(k) for k in over] + [1]) if over else 0


def _give_back(r, keys):
    with r.pipeline() as p:
        for k in keys:
            p.decr(k)
        p.execute()


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", error=None)
    username = request.form.get("username", "")[:200]
    password = request.form.get("password", "")
    db = get_db()
    user = query(db, "SELECT * FROM users WHERE username=%s", (username,), one=True)
    # The column's collation matches `ADMIN` and `ádmin ` to `admin`: count them all on the stored name.
    keys = _login_keys(user["username"] if user else username.lower())
    try:
        r = get_redis()
        wait = _take_attempt(r, keys)
    except RedisError:
        return render_template("login.html", error=gettext("Login is unavailable: the queue (Redis) cannot be reached.")), 503
    if wait:
        resp = current_app.make_response((render_template(
            "login.html", error=gettext("Too many failed logins: try again in %(minutes)d minute(s).",
                                      minutes=(wait + 59) // 60)), 429))
        resp.headers["Retry-After"] = str(wait)
        return resp
    # The same hash work whether the user exists or not (see _dummy_hash).
    ok = check_password_hash(user["password_hash"] if user else _dummy_hash(), password)
    if ok and not user["disabled"]:
        _give_back(r, keys)
        _start_session(db, user)
        return redirect(safe_next(request.args.get("next", "")))
    return render_template("login.html", error=gettext("Wrong user name or password.")), 401


@bp.route("/logout", methods=["POST"])
@role("viewer")
def logout():
    execute(get_db(), "DELETE FROM user_sessions WHERE sid_hash=%s", (hash_token(session.get("sid", "")),))
    session.clear()
    return redirect(url_for("auth.login"))
