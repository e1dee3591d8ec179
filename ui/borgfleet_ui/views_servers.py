"""A server's page (fleet/servers.py, fleet/facts.py): what it is, its system stats in an accordion
with history charts, its detected capabilities, and Collect now / Reload capabilities / Run setup."""
from flask import g, render_template, request

from . import fleet
from .db import get_db, get_redis
from .auth import role
from .views import bp, to_job


@bp.get("/servers/<int:sid>")
@role("viewer")
def server_page(sid):
    db = get_db()
    server = fleet.servers.get_server(db, sid)
    range_ = request.args.get("range", "day")
    if range_ not in fleet.facts.RANGES:
        range_ = "day"
    caps = fleet.facts.capabilities(db, sid)
    jobs = fleet.backup_jobs.list_backup_jobs(db, client_id=sid, limit=200) if server["role"] == "client" else []
    return render_template("server.html", server=server, stats=fleet.facts.latest_stats(db, sid), caps=caps,
                           databases=fleet.facts.databases(caps["data"] if caps else None),
                           history=fleet.facts.stats_history(db, sid, range_), ranges=list(fleet.facts.RANGES),
                           backup_jobs=jobs,
                           pools=fleet.pools.list_pools(db, sid) if server["role"] == "backup_server" else [])


@bp.post("/servers/<int:sid>/detect")
@role("operator")
def server_detect(sid):
    return to_job(fleet.facts.detect(get_db(), get_redis(), sid, g.user["username"]))


@bp.post("/servers/<int:sid>/collect-stats")
@role("operator")
def server_collect(sid):
    return to_job(fleet.servers.collect_stats(get_db(), get_redis(), sid, g.user["username"]))
