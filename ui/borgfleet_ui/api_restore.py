"""REST routes of the restore area on the /api blueprint (its error handlers and helpers): browse an
archive, a path's versions across archives, restores. Each queues a job (202); its result (GET
/api/jobs/{id}) holds the listing, the versions, or what was restored."""
from flask import g

from . import fleet
from .api import accepted, body, bp
from .auth import role
from .db import get_db, get_redis


@bp.post("/archives/<int:aid>/browse")
@role("viewer")
def archives_browse(aid):
    return accepted(fleet.restores.browse(get_db(), get_redis(), aid, body().get("path", ""), g.user["username"]))


@bp.post("/backup-jobs/<int:bid>/search")
@role("viewer")
def bj_search(bid):
    data = body()
    return accepted(fleet.restores.search(get_db(), get_redis(), bid, data.get("path"), g.user["username"],
                                          data.get("last", 0)))


@bp.post("/archives/<int:aid>/restore")
@role("operator")
def archives_restore(aid):
    return accepted(fleet.restores.restore(get_db(), get_redis(), aid, body(), g.user["username"]))
