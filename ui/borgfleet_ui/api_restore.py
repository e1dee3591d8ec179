"""REST routes of the restore area on the /api blueprint (its error handlers and helpers): browse an
archive, a path's versions across archives, restores.

From the archive index (fleet/archive_index.py), answered at once: GET .../tree (a level) and GET
.../versions. Queued (202; the job's result at GET /api/jobs/{id}): indexing an archive, and the
borg-run fallbacks browse and search (an archive not indexed yet), restores."""
from flask import g, jsonify, request
from flask_babel import gettext as _

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


@bp.post("/archives/<int:aid>/index")
@role("viewer")
def archives_index(aid):
    """Index the archive (202, its job), or 200 with the index when it is indexed already."""
    db = get_db()
    job_id = fleet.archive_index.queue_index(db, get_redis(), aid, g.user["username"])
    if job_id:
        return accepted(job_id)
    return jsonify(indexed=True, **_index_out(fleet.archive_index.indexed(db, aid)))


def _index_out(ix):
    return {k: ix[k] for k in ("items", "dirs", "new_listings", "seconds", "indexed_at")}


@bp.get("/archives/<int:aid>/tree")
@role("viewer")
def archives_tree(aid):
    """One level of an indexed archive (?path=&page=&per_page=); 409 with the index job while it is not indexed."""
    db = get_db()
    per_page = fleet.common.int_between(request.args.get("per_page", 100), "per_page", 1, 1000)
    page = fleet.common.int_between(request.args.get("page", 1), "page", 1, 10**9)
    path = fleet.restores.archive_path(request.args.get("path", ""))
    level = fleet.archive_index.level(db, aid, path, page, per_page)
    if level is None:
        last = fleet.archive_index.last_index_job(db, aid)
        return jsonify(error=_("archive %(id)s is not indexed yet: POST /api/archives/%(id)s/index", id=aid),
                       index_job=last), 409
    return jsonify(level)


@bp.get("/backup-jobs/<int:bid>/versions")
@role("viewer")
def bj_versions(bid):
    """Which indexed archives hold a path or glob (?path=&last=), and when it changed."""
    path = fleet.restores.archive_path(request.args.get("path", ""))
    last = fleet.common.int_between(request.args.get("last", 0), "last", 0, 100000)
    return jsonify(fleet.archive_index.versions(get_db(), bid, path, last))


@bp.post("/archives/<int:aid>/restore")
@role("operator")
def archives_restore(aid):
    return accepted(fleet.restores.restore(get_db(), get_redis(), aid, body(), g.user["username"]))
