"""Server-rendered pages. Forms post here with the session's CSRF token; actions reuse fleet.*."""
import json

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from . import fleet, i18n, secret_store, workers
from .auth import has_role, role
from .contract import contract
from .db import get_db, get_redis

bp = Blueprint("pages", __name__)


def to_job(job_id):
    """After an action queued a job: its page, with a toast saying so (and a link to all jobs)."""
    flash(job_id, "queued")
    return redirect(url_for("pages.job", job_id=job_id))


def _settings():
    return fleet.settings.get_settings(get_db())


@bp.app_context_processor
def _globals():
    if getattr(g, "user", None):
        return {"app_name": _settings().get("app_name", "BorgFleet"), "user": g.user}
    return {"app_name": "BorgFleet", "user": None}


def _form_json(name, default):
    raw = request.form.get(name, "").strip()
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise fleet.Invalid(f"{name} must be JSON") from None


def _lines(name):
    return [x.strip() for x in request.form.get(name, "").splitlines() if x.strip()]


@bp.get("/")
@role("viewer")
def dashboard():
    db = get_db()
    servers = fleet.servers.list_servers(db, limit=200)
    bjs = fleet.backup_jobs.list_backup_jobs(db, limit=200)
    failures = [j for status in ("failed", "abandoned", "missed")
                for j in fleet.runs.list_jobs(db, status=status, limit=10)]
    recent = fleet.runs.list_jobs(db, limit=10)
    active = [j for status in ("running", "waiting", "queued") for j in fleet.runs.list_jobs(db, status=status, limit=20)]
    health = fleet.backup_jobs.health(db, bjs)
    pools = fleet.pools.usage(db)
    storage = {k: sum(p[k] or 0 for p in pools) for k in ("total_bytes", "used_bytes", "free_bytes",
                                                           "repositories_size_bytes")}
    storage["original"] = sum(r["original_size"] or 0 for p in pools for r in p["repositories"])
    storage["deduplicated"] = sum(r["deduplicated_size"] or 0 for p in pools for r in p["repositories"])
    return render_template("dashboard.html", servers=servers, bjs=bjs, failures=failures, recent=recent,
                           active=active, health=health, pools=pools, storage=storage,
                           sessions=[x for x in fleet.recovery.list_sessions(db) if x["health_label"] != "stopped"])


@bp.route("/servers", methods=["GET", "POST"])
@role("viewer")
def servers():
    db = get_db()
    error, code = None, 200
    if request.method == "POST":
        if not has_role(g.user, "operator"):
            abort(403)
        try:
            data = {k: request.form.get(k) or None for k in
                    ("name", "role", "address", "port", "ssh_user", "connection", "local_pool_path")}
            data["backup_server_id"] = request.form.get("backup_server_id", type=int)
            data["vars"] = _form_json("vars", {})
            if request.form.get("pool_path"):
                data["pools"] = [{"name": request.form.get("pool_name") or "main", "path": request.form["pool_path"]}]
            fleet.servers.create_server(db, {k: v for k, v in data.items() if v is not None},
                                admin=has_role(g.user, "admin"))
            return redirect(url_for("pages.servers"))
        except fleet.Invalid as e:
            error, code = str(e), 400
        except fleet.Forbidden as e:
            error, code = str(e), 403
    rows = fleet.servers.list_servers(db, limit=200)
    pools = fleet.pools.list_pools(db)
    return render_template("servers.html", servers=rows, pools=pools, error=error,
                           server_vars=sorted(contract.HOST_VARS),
                           backup_servers=[s for s in rows if s["role"] == "backup_server"]), code


@bp.post("/servers/<int:sid>/setup")
@role("operator")
def server_setup(sid):
    job_id = fleet.servers.setup_server(get_db(), get_redis(), sid, g.user["username"])
    return to_job(job_id)


@bp.route("/backup-jobs", methods=["GET", "POST"])
@role("viewer")
def backup_jobs():
    db = get_db()
    error = None
    if request.method == "POST":
        if not has_role(g.user, "operator"):
            abort(403)
        try:
            data = {"client_id": request.form.get("client_id", type=int), "name": request.form.get("name"),
                    "paths": _lines("paths"), "exclude": _lines("exclude"),
                    "databases": _form_json("databases", []),
                    "passphrase": request.form.get("passphrase"),
                    "schedule": request.form.get("schedule") or None,
                    "verify_schedule": request.form.get("verify_schedule") or None,
                    "timezone": request.form.get("timezone") or "UTC",
                    "retention": _form_json("retention", None)}
            fleet.backup_jobs.create_backup_job(db, get_redis(), data)
            return redirect(url_for("pages.backup_jobs"))
        except (fleet.Invalid, secret_store.SecretError) as e:   # bad input, or no key file here
            error = str(e)
    rows = fleet.backup_jobs.list_backup_jobs(db, limit=200)
    clients = fleet.servers.list_servers(db, role="client", limit=200)
    return render_template("backup_jobs.html", bjs=rows, clients=clients, error=error), (400 if error else 200)


@bp.post("/backup-jobs/<int:bid>/run")
@role("operator")
def backup_run(bid):
    job_id = fleet.backup_jobs.run(get_db(), get_redis(), "backup", bid, g.user["username"])
    return to_job(job_id)


@bp.post("/backup-jobs/<int:bid>/verify")
@role("operator")
def backup_verify(bid):
    job_id = fleet.backup_jobs.run(get_db(), get_redis(), "verify", bid, g.user["username"])
    return to_job(job_id)


@bp.get("/archives")
@role("viewer")
def archives():
    limit, before = fleet.page_args(request.args)
    rows = fleet.archives.list_archives(get_db(), request.args.get("backup_job_id", type=int), limit, before)
    nxt = rows[-1]["id"] if len(rows) == limit else None
    return render_template("archives.html", archives=rows, next_before=nxt)


@bp.post("/archives/<int:aid>/delete")
@role("operator")
def archive_delete(aid):
    job_id = fleet.archives.delete_archive(get_db(), get_redis(), aid, g.user["username"])
    return to_job(job_id)


@bp.get("/jobs")
@role("viewer")
def jobs():
    limit, before = fleet.page_args(request.args)
    rows = fleet.runs.list_jobs(get_db(), request.args.get("status") or None, None, limit, before)
    nxt = rows[-1]["seq"] if len(rows) == limit else None
    return render_template("jobs.html", jobs=rows, next_before=nxt)


@bp.get("/jobs/<job_id>")
@role("viewer")
def job(job_id):
    try:
        row = fleet.runs.get_job(get_db(), job_id)
    except fleet.NotFound:
        abort(404)
    return render_template("job.html", job=row)


@bp.post("/jobs/<job_id>/cancel")
@role("operator")
def job_cancel(job_id):
    fleet.runs.cancel_job(get_db(), get_redis(), job_id)
    return to_job(job_id)


@bp.post("/preferences")
@role("viewer")
def preferences():
    """The navigation's language switch (and the theme toggle without JavaScript)."""
    try:
        i18n.set_preferences(g.user, {k: request.form[k] for k in ("language", "theme") if k in request.form})
    except ValueError as e:
        flash(str(e), "error")
    return redirect(i18n.safe_next(request.form.get("next")))


@bp.get("/workers")
@role("admin")
def workers_page():
    r = get_redis()
    return render_template("workers.html", workers=workers.list_workers(r), scheduler=workers.scheduler_status(r),
                           systemd=workers.systemd_running())


@bp.get("/workers/<name>/logs")
@role("admin")
def worker_logs(name):
    lines, since, error, code, text = request.args.get("lines", "200"), request.args.get("since", ""), None, 200, []
    try:
        text = workers.logs(name, *workers.log_filters(lines, since))
    except ValueError as e:
        error, code = str(e), 400
    except workers.Unavailable as e:
        error, code = str(e), 409
    return render_template("worker_logs.html", name=name, lines=lines, since=since, text=text, error=error), code


@bp.post("/workers/<name>/<any(start, stop, restart):action>")
@role("admin")
def worker_control(name, action):
    try:
        workers.control(get_redis(), name, action)
    except workers.Unavailable as e:
        return render_template("message.html", message=str(e)), 409
    return redirect(url_for("pages.workers_page"))


@bp.errorhandler(fleet.Invalid)
def _invalid(e):
    return render_template("message.html", message=str(e)), 400


@bp.errorhandler(fleet.NotFound)
def _notfound(e):
    return render_template("message.html", message=str(e)), 404
