"""Users, roles, API tokens, session login and CSRF.

Every endpoint declares its minimum role with @role(...); a request to an endpoint that
declares none is refused (fail closed). Only PUBLIC endpoints answer without a login.
"""
import hashlib
import secrets

from flask import (Blueprint, abort, current_app, g, jsonify, redirect, render_template,
                   request, session, url_for)
from werkzeug.security import check_password_hash, generate_password_hash

from .db import execute, get_db, query

bp = Blueprint("auth", __name__)

ROLES = ("viewer", "operator", "admin")
PUBLIC = {"auth.login", "api.health", "static"}


def role(minimum):
    assert minimum in ROLES

    def deco(fn):
        fn.min_role = minimum
        return fn
    return deco


def has_role(user, minimum):
    return user is not None and ROLES.index(user["role"]) >= ROLES.index(minimum)


def hash_token(token):
    # Tokens are 256-bit random values, so a fast hash is enough at rest (unlike passwords).
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(db, username, role_name, password=None):
    password = password or secrets.token_urlsafe(15)
    execute(db, "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s)",
            (username, generate_password_hash(password), role_name))
    return password


def create_token(db, user_id, name):
    token = "bf_" + secrets.token_urlsafe(32)
    execute(db, "INSERT INTO api_tokens (user_id, name, token_hash) VALUES (%s, %s, %s)",
            (user_id, name, hash_token(token)))
    return token


def _load_user():
    g.user, g.via_token = None, False
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        db = get_db()
        row = query(db, "SELECT u.*, t.id AS token_id FROM api_tokens t JOIN users u ON u.id=t.user_id"
                        " WHERE t.token_hash=%s AND u.disabled=0", (hash_token(header[7:].strip()),), one=True)
        if row:
            # At most one write a minute per token: scripts poll, and reads should stay reads.
            execute(db, "UPDATE api_tokens SET last_used_at=UTC_TIMESTAMP() WHERE id=%s AND"
                        " (last_used_at IS NULL OR last_used_at < UTC_TIMESTAMP() - INTERVAL 60 SECOND)",
                    (row["token_id"],))
            g.user, g.via_token = row, True
    elif session.get("user_id"):
        g.user = query(get_db(), "SELECT * FROM users WHERE id=%s AND disabled=0",
                       (session["user_id"],), one=True)


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
    _load_user()
    is_api = request.path.startswith("/api/")
    if g.user is None:
        if is_api:
            return jsonify(error="authentication required"), 401
        return redirect(url_for("auth.login", next=request.full_path))
    view = current_app.view_functions.get(endpoint)
    minimum = getattr(view, "min_role", None)
    if minimum is None or not has_role(g.user, minimum):
        if is_api:
            return jsonify(error=f"role {minimum or '?'} required"), 403
        abort(403)
    # Token requests carry no cookie, so they cannot be forged cross-site; sessions need the token.
    if request.method not in ("GET", "HEAD", "OPTIONS") and not g.via_token:
        _check_csrf()
    return None


def _check_csrf():
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
    if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
        abort(400, "CSRF token missing or wrong")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        user = query(get_db(), "SELECT * FROM users WHERE username=%s AND disabled=0",
                     (request.form.get("username", ""),), one=True)
        if user and check_password_hash(user["password_hash"], request.form.get("password", "")):
            session.clear()
            session["user_id"] = user["id"]
            nxt = request.args.get("next", "")
            # Only local paths: never redirect off-site after login.
            return redirect(nxt if nxt.startswith("/") and not nxt.startswith("//") else url_for("pages.dashboard"))
        error = "Wrong user name or password."
    return render_template("login.html", error=error), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
@role("viewer")
def logout():
    session.clear()
    return redirect(url_for("auth.login"))
