"""Editing pages: a server (edit, delete, its pools), users (admins), the caller's API tokens, the
service's settings (admins). Each action is also an API route (api.py); both call fleet.*.
A generated password or token is rendered in the POST's answer, once, never flashed (the session
cookie is signed, not encrypted) nor stored."""
from zoneinfo import available_timezones

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from . import fleet, forms
from .auth import ROLES, has_role, role
from .db import get_db, get_redis
from .views import bp, submitted, to_job


# --- a server ---

@bp.route("/servers/<int:sid>/edit", methods=["GET", "POST"])
@role("operator")
def server_edit(sid):
    """Edit a server. Test connection (and Trust this key) probe the connection as typed, as the
    add-server wizard does; Save tests a changed connection first (unless "save even though the
    test failed"), saves, and queues the setup when the connection or role changed (fleet.servers.edit_server)."""
    db = get_db()
    server = fleet.servers.get_server(db, sid)
    admin = has_role(g.user, "admin")
    ctx = {"admin": admin, "server_id": sid}
    errors, code, result, pinned = {}, 200, None, None
    if request.method == "POST":
        # A Trust this key button posts the fingerprint it shows (a button sends its value only when pressed).
        action = "trust" if request.form.get("fingerprint") else request.form.get("action", "save")
        if action in ("test", "trust"):
            data, errors = forms.FORMS["server_edit"].parse(request.form, ctx)
            try:
                if errors:
                    raise fleet.Invalid(next(iter(errors.values())))
                if action == "trust":
                    pinned = fleet.servers.trust_edit(db, sid, data, request.form.get("fingerprint"), admin=admin)
                result = fleet.servers.test_edit(db, sid, data, admin=admin)
            except (fleet.Invalid, fleet.Forbidden) as err:
                errors, code = forms.verdict(db, "server_edit", request.form, ctx) or {forms.FORM_ERROR: str(err)}, 400
        else:
            done = {}

            def save(data):
                try:
                    done["out"] = fleet.servers.edit_server(db, get_redis(), sid, data, g.user["username"], admin=admin,
                                                            test=not request.form.get("save_anyway"))
                except fleet.servers.ConnectionFailed as err:
                    done["failed"] = err.result
                    raise

            errors, code = submitted("server_edit", ctx, save)
            if "failed" in done:
                result = done["failed"]
                errors = {forms.FORM_ERROR: _("Not saved: the connection test failed (below). Fix it and test again,"
                                              " or tick \"Save even though the test failed\" to set the server up"
                                              " later.")}
            elif not errors:
                _saved, _probe, job = done["out"]
                if job:
                    flash(_("Server saved. Its connection or role changed: its setup is queued so its keys follow."))
                    return to_job(job)
                flash(_("Server saved."))
                return redirect(url_for("pages.server_page", sid=sid))
    return render_template("server_edit.html", server=server, errors=errors,
                           values=request.form if request.method == "POST" else {},
                           result=result, pinned=pinned, role_problem=fleet.servers.role_change_problem(db, server),
                           deletion=fleet.servers.deletion(db, sid),
                           backup_servers=fleet.servers.list_servers(db, role="backup_server", limit=200)), code


@bp.post("/servers/<int:sid>/delete")
@role("operator")
def server_delete(sid):
    db = get_db()
    name = fleet.servers.get_server(db, sid)["name"]
    fleet.servers.delete_server(db, sid)
    flash(_("Server %(name)s deleted.", name=name))
    return redirect(url_for("pages.servers"))


@bp.post("/servers/<int:sid>/pools")
@role("operator")
def server_pool_add(sid):
    try:
        fleet.pools.create_pool(get_db(), {"server_id": sid, "name": request.form.get("name", "").strip() or "main",
                                           "path": request.form.get("path", "").strip()})
        flash(_("Pool added."))
    except fleet.Invalid as err:
        flash(str(err), "error")
    return redirect(url_for("pages.server_page", sid=sid, _anchor="pools"))


@bp.post("/servers/<int:sid>/pools/<int:pid>/delete")
@role("operator")
def server_pool_delete(sid, pid):
    try:
        fleet.pools.delete_pool(get_db(), pid)
        flash(_("Pool removed."))
    except fleet.Invalid as err:
        flash(str(err), "error")
    return redirect(url_for("pages.server_page", sid=sid, _anchor="pools"))


# --- users (admins) ---

def _users_page(created=None, reset=None, errors=None, code=200):
    return render_template("users.html", users=fleet.users.list_users(get_db()), roles=ROLES, created=created,
                           reset=reset, errors=errors or {}, values=request.form if errors else {}), code


@bp.get("/users")
@role("admin")
def users_page():
    return _users_page()


@bp.post("/users")
@role("admin")
def users_create():
    try:
        user, password = fleet.users.create_user(get_db(), {"username": request.form.get("username", "").strip(),
                                                            "role": request.form.get("role")})
    except fleet.Invalid as err:
        return _users_page(errors={err.field or forms.FORM_ERROR: str(err)}, code=400)
    return _users_page(created={"user": user, "password": password})


@bp.post("/users/<int:uid>")
@role("admin")
def users_update(uid):
    data = {}
    if request.form.get("role"):
        data["role"] = request.form["role"]
    if request.form.get("disabled") in ("0", "1"):
        data["disabled"] = request.form["disabled"] == "1"
    try:
        user = fleet.users.update_user(get_db(), uid, data)
        flash(_("User %(name)s saved.", name=user["username"]))
    except fleet.Invalid as err:
        flash(str(err), "error")
    return redirect(url_for("pages.users_page"))


@bp.post("/users/<int:uid>/reset-password")
@role("admin")
def users_reset_password(uid):
    db = get_db()
    password = fleet.users.reset_password(db, uid)
    return _users_page(reset={"user": fleet.users.get_user(db, uid), "password": password})


# --- the caller's API tokens ---

def _tokens_page(created=None, errors=None, code=200):
    return render_template("tokens.html", tokens=fleet.users.list_tokens(get_db(), g.user["id"]), created=created,
                           errors=errors or {}, values=request.form if errors else {}), code


@bp.get("/tokens")
@role("viewer")
def tokens_page():
    return _tokens_page()


@bp.post("/tokens")
@role("viewer")
def tokens_create():
    data = {"name": request.form.get("name", "").strip(), "expires_at": request.form.get("expires_at") or None}
    try:
        name, token, expires_at = fleet.users.create_token(get_db(), g.user["id"], data)
    except fleet.Invalid as err:
        return _tokens_page(errors={err.field or forms.FORM_ERROR: str(err)}, code=400)
    return _tokens_page(created={"name": name, "token": token, "expires_at": expires_at})


@bp.post("/tokens/<int:tid>/delete")
@role("viewer")
def tokens_revoke(tid):
    fleet.users.revoke_token(get_db(), g.user["id"], tid)
    flash(_("Token revoked."))
    return redirect(url_for("pages.tokens_page"))


# --- the service's settings (admins) ---

SETTINGS = ("app_name", "default_timezone", "stats_interval_minutes", "pool_warn_percent")


@bp.route("/settings", methods=["GET", "POST"])
@role("admin")
def settings_page():
    db = get_db()
    errors, code = {}, 200
    if request.method == "POST":
        data = {k: request.form.get(k, "").strip() for k in SETTINGS}
        data["detect_after_setup"] = "1" if request.form.get("detect_after_setup") else "0"
        try:
            fleet.settings.update_settings(db, data)
            flash(_("Settings saved."))
            return redirect(url_for("pages.settings_page"))
        except fleet.Invalid as err:
            errors, code = {err.field or forms.FORM_ERROR: str(err)}, 400
    current = fleet.settings.get_settings(db)
    current.setdefault("default_timezone", fleet.settings.default_timezone(db))
    current.setdefault("pool_warn_percent", str(fleet.pools.DEFAULT_WARN_PERCENT))
    current.setdefault("detect_after_setup", "1")
    return render_template("settings.html", current=current, errors=errors, values=request.form if errors else {},
                           timezones=sorted(available_timezones())), code


