"""Server-rendered pages. Forms post here with the session's CSRF token; actions reuse fleet.*."""
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from . import fleet, forms, i18n, secret_store, workers
from .auth import has_role, role
from .contract import contract
from .db import get_db, get_redis, query
from .fleet.common import list_args
from .notifications import alerts
from .queue import STATUSES

bp = Blueprint("pages", __name__)


def listed(listing, fetch, cursor="id"):
    """One page of a sortable, filterable list: (rows, its ListArgs, the next page's cursor).
    fetch(limit, before, largs) reads the rows."""
    limit, before = fleet.page_args(request.args)
    largs = list_args(listing, request.args)
    rows = fetch(limit=limit, before=before, largs=largs)
    return rows, largs, (rows[-1][cursor] if len(rows) == limit else None)


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


def submitted(name, ctx, act):
    """Run a form's operation on the posted values: act(data) if they parse. Returns ({}, 200) when it
    was done; on a refusal ({input: message}, 400 or 403) for every field the operation refuses
    (forms.verdict), to show under each field with the typed values kept."""
    data, errors = forms.FORMS[name].parse(request.form, ctx)
    if errors:   # unreadable text (JSON): judge the other fields too
        return forms.verdict(get_db(), name, request.form, ctx), 400
    try:
        act(data)
        return {}, 200
    except (fleet.Invalid, fleet.Forbidden) as err:
        code = 403 if isinstance(err, fleet.Forbidden) else 400
        return forms.verdict(get_db(), name, request.form, ctx) or {forms.FORM_ERROR: str(err)}, code


DASHBOARD_ROWS = 50   # servers and backup jobs the dashboard lists (newest first)


@bp.get("/")
@role("viewer")
def dashboard():
    db = get_db()
    # Bounded: a fleet of thousands is browsed on the servers and backup jobs pages (paged); the
    # totals are counted.
    servers = fleet.servers.list_servers(db, limit=DASHBOARD_ROWS)
    bjs = fleet.backup_jobs.list_backup_jobs(db, limit=DASHBOARD_ROWS)
    totals = query(db, "SELECT (SELECT COUNT(*) FROM servers) AS servers,"
                       " (SELECT COUNT(*) FROM backup_jobs) AS backup_jobs", one=True)
    failures = [j for status in ("failed", "abandoned", "missed")
                for j in fleet.runs.list_jobs(db, status=status, limit=10)]
    recent = fleet.runs.list_jobs(db, limit=10)
    active = [j for status in ("running", "waiting", "queued") for j in fleet.runs.list_jobs(db, status=status, limit=20)]
    health = fleet.backup_jobs.health(db, bjs)
    pools = fleet.pools.usage(db, top=0)   # the figures and totals, no repository listed
    storage = {k: sum(p[k] or 0 for p in pools) for k in ("total_bytes", "used_bytes", "free_bytes",
                                                           "repositories_size_bytes")}
    storage["original"] = sum(p["repositories_original_size"] for p in pools)
    storage["deduplicated"] = sum(p["repositories_deduplicated_size"] for p in pools)
    return render_template("dashboard.html", servers=servers, bjs=bjs, totals=totals, failures=failures, recent=recent,
                           active=active, health=health, pools=pools, storage=storage,
                           sessions=[x for x in fleet.recovery.list_sessions(db) if x["health_label"] != "stopped"],
                           incidents=alerts.failing_now(db, limit=DASHBOARD_ROWS))


@bp.route("/servers", methods=["GET", "POST"])
@role("viewer")
def servers():
    db = get_db()
    errors, code = {}, 200
    if request.method == "POST":
        if not has_role(g.user, "operator"):
            abort(403)
        admin = has_role(g.user, "admin")
        errors, code = submitted("server", {"admin": admin},
                                 lambda data: fleet.servers.create_server(db, data, admin=admin))
        if not errors:
            return redirect(url_for("pages.servers"))
    rows, ls, nxt = listed(fleet.servers.LISTING, lambda **kw: fleet.servers.list_servers(db, **kw))
    pools = fleet.pools.list_pools(db)
    return render_template("servers.html", servers=rows, ls=ls, next_before=nxt, pools=pools, errors=errors,
                           values=request.form if errors else {},
                           server_vars=sorted(contract.HOST_VARS),
                           backup_servers=fleet.servers.list_servers(db, role="backup_server", limit=200)), code


@bp.post("/servers/<int:sid>/setup")
@role("operator")
def server_setup(sid):
    job_id = fleet.servers.setup_server(get_db(), get_redis(), sid, g.user["username"])
    return to_job(job_id)


@bp.route("/backup-jobs", methods=["GET", "POST"])
@role("viewer")
def backup_jobs():
    db = get_db()
    errors, code = {}, 200
    if request.method == "POST":
        if not has_role(g.user, "operator"):
            abort(403)
        try:
            errors, code = submitted("backup_job", {},
                                     lambda data: fleet.backup_jobs.create_backup_job(db, get_redis(), data))
        except secret_store.SecretError as e:   # no key file on this host: not the form's fault
            errors, code = {forms.FORM_ERROR: str(e)}, 400
        if not errors:
            return redirect(url_for("pages.backup_jobs"))
    rows, ls, nxt = listed(fleet.backup_jobs.LISTING, lambda **kw: fleet.backup_jobs.list_backup_jobs(db, **kw))
    clients = fleet.servers.list_servers(db, role="client", limit=200)
    return render_template("backup_jobs.html", bjs=rows, ls=ls, next_before=nxt, clients=clients,
                           client_options=[(c["id"], c["name"]) for c in clients],
                           errors=errors, values=request.form if errors else {}), code


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
    db = get_db()
    rows, ls, nxt = listed(fleet.archives.LISTING, lambda **kw: fleet.archives.list_archives(db, **kw))
    bjs = fleet.backup_jobs.list_backup_jobs(db, limit=200, largs=list_args(fleet.backup_jobs.LISTING, {"sort": "client"}))
    return render_template("archives.html", archives=rows, ls=ls, next_before=nxt,
                           bj_options=[(b["id"], f"{b['client_name']}/{b['name']}") for b in bjs])


@bp.post("/archives/<int:aid>/delete")
@role("operator")
def archive_delete(aid):
    job_id = fleet.archives.delete_archive(get_db(), get_redis(), aid, g.user["username"])
    return to_job(job_id)


@bp.get("/jobs")
@role("viewer")
def jobs():
    rows, ls, nxt = listed(fleet.runs.LISTING, lambda **kw: fleet.runs.list_jobs(get_db(), **kw), "seq")
    return render_template("jobs.html", jobs=rows, ls=ls, next_before=nxt, statuses=STATUSES,
                           kinds=fleet.runs.LISTING.choices["kind"][1])


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
