"""Pages of instant recovery (fleet/recovery.py), on the pages blueprint: start a session from an
archive, the sessions of every host, one session with its health and connection details."""
import datetime

from flask import abort, g, redirect, render_template, request, url_for

from . import fleet
from .auth import has_role, role
from .db import get_db, get_redis
from .fleet.common import list_args
from .views import bp, to_job

HEALTH_FRESH = datetime.timedelta(seconds=60)


@bp.route("/archives/<int:aid>/instant-recovery", methods=["GET", "POST"])
@role("viewer")
def archive_recover(aid):
    db = get_db()
    archive = fleet.archives.get_archive(db, aid)
    error = None
    if request.method == "POST":
        if not has_role(g.user, "operator"):
            abort(403)
        data = {k: request.form.get(k) or None for k in ("address", "port", "name")}
        if request.form.get("where") == "remote":
            data["host_id"] = request.form.get("host_id", type=int)
        try:
            job_id = fleet.recovery.start(db, get_redis(), aid, data, g.user["username"])
            return to_job(job_id)
        except fleet.Invalid as e:
            error = str(e)
    hosts = [c for c in fleet.servers.list_servers(db, role="client", limit=200) if c["name"] != archive["client_name"]]
    return render_template("recovery_start.html", archive=archive, hosts=hosts, error=error), (400 if error else 200)


@bp.get("/recovery")
@role("viewer")
def recovery_sessions():
    db = get_db()
    clients = fleet.servers.list_servers(db, role="client", limit=200)
    ls = list_args(fleet.recovery.LISTING, request.args)
    health = request.args.get("health") or None
    sessions = fleet.recovery.list_sessions(db, largs=ls, health=health)
    # health is filtered after the query (fleet.recovery.health_label): it joins the other filters for the form.
    ls = ls._replace(filters={**ls.filters, "health": health})
    return render_template("recovery_sessions.html", sessions=sessions, ls=ls, clients=clients,
                           host_options=[(c["id"], c["name"]) for c in clients],
                           health_labels=fleet.recovery.HEALTH, engines=fleet.recovery.LISTING.choices["engine"][1])


@bp.post("/recovery/refresh")
@role("operator")
def recovery_refresh():
    return to_job(fleet.recovery.refresh(get_db(), get_redis(), g.user["username"]))


@bp.get("/recovery/<int:sid>")
@role("viewer")
def recovery_session(sid):
    session = fleet.recovery.get_session(get_db(), sid)
    # Opened by an operator with a health older than this, the page asks the host again by itself.
    stale = datetime.datetime.utcnow() - session["checked_at"] > HEALTH_FRESH
    refresh = None   # the query this page queued (?job=), while it runs or when it failed
    if request.args.get("job"):
        try:
            refresh = fleet.runs.get_job(get_db(), request.args["job"])
        except fleet.NotFound:
            pass
        if refresh and refresh["status"] == "succeeded":
            refresh = None
    return render_template("recovery_session.html", s=session, refresh=refresh, stale=stale)


@bp.post("/recovery/<int:sid>/refresh")
@role("operator")
def recovery_session_refresh(sid):
    s = fleet.recovery.get_session(get_db(), sid)
    job_id = fleet.recovery.refresh(get_db(), get_redis(), g.user["username"], s["server_id"])
    # Back to the session: its page waits for the query and shows the health it found.
    return redirect(url_for("pages.recovery_session", sid=sid, job=job_id))


@bp.post("/recovery/<int:sid>/<any(stop, resume, remove):action>")
@role("operator")
def recovery_action(sid, action):
    fn = {"stop": fleet.recovery.stop, "resume": fleet.recovery.resume, "remove": fleet.recovery.remove}[action]
    return to_job(fn(get_db(), get_redis(), sid, g.user["username"]))


@bp.post("/recovery/cleanup")
@role("operator")
def recovery_cleanup():
    server_id = fleet.common.int_between(request.form.get("server_id"), "server", 1, 2**31)
    return to_job(fleet.recovery.cleanup(get_db(), get_redis(), server_id, g.user["username"]))
