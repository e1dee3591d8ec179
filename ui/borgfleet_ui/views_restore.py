"""Pages of the restore area, on the pages blueprint (its login, roles and error pages): pick a
backup job and an archive, browse it level by level, a file's versions, and the restore wizard.

Levels and versions are read from the archive index (fleet/archive_index.py). An archive not indexed
yet is indexed on its first browse: a form posts, the page shows the index job until it ends
(static/wait.js polls and reloads; without JavaScript a meta refresh does), then the level. A file's
versions across archives not all indexed yet are a search.yml run shown the same way. The selection
of paths travels with the forms (checkboxes named sel) and the URL."""
from flask import g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from . import fleet
from .auth import role
from .db import get_db, get_redis
from .views import bp, submitted, to_job

PER_PAGE = 100


def _selection(values):
    sel = list(dict.fromkeys(fleet.restores.archive_path(p, "a selected path") for p in values if p.strip("/")))
    if len(sel) > fleet.restores.MAX_PATHS:
        raise fleet.Invalid(_("at most %(n)s paths can be selected at once", n=fleet.restores.MAX_PATHS))
    return sel


@bp.get("/restore")
@role("viewer")
def restore_start():
    """Pick a backup job, then one of its archives to browse."""
    db = get_db()
    bjs = fleet.backup_jobs.list_backup_jobs(db, limit=200)
    bid = request.args.get("backup_job_id", type=int)
    archives = fleet.archives.list_archives(db, bid, limit=50) if bid else []
    return render_template("restore_start.html", bjs=bjs, bid=bid, archives=archives)


@bp.get("/archives/<int:aid>/browse")
@role("viewer")
def archive_browse(aid):
    """A level of the archive from its index; while the archive is not indexed, its index job (the
    page waits for it, then shows the level) or a button queueing one."""
    db = get_db()
    a = fleet.archives.get_archive(db, aid)
    sel = _selection(request.args.getlist("sel"))
    path = fleet.restores.archive_path(request.args.get("path", ""))
    page = max(1, request.args.get("page", 1, type=int))
    level = fleet.archive_index.level(db, aid, path, page, PER_PAGE)
    job = None if level else fleet.archive_index.last_index_job(db, aid)
    shown = {e["path"] for e in level["entries"]} if level else set()
    return render_template("archive_browse.html", a=a, level=level, job=job, path=path, sel=sel,
                           hidden_sel=[p for p in sel if p not in shown])


@bp.post("/archives/<int:aid>/browse")
@role("viewer")
def archive_browse_post(aid):
    """Open a directory (field open) or another page of this one (field page); an archive not indexed
    yet gets its index job queued (field index, or opening it), the page then waits for it."""
    db = get_db()
    sel = _selection(request.form.getlist("sel"))
    path = request.form["open"] if "open" in request.form else request.form.get("cur", "")
    page = 1 if "open" in request.form else request.form.get("page", 1, type=int)
    if not fleet.archive_index.indexed(db, aid):
        fleet.archive_index.queue_index(db, get_redis(), aid, g.user["username"])
    return redirect(url_for("pages.archive_browse", aid=aid, path=fleet.restores.archive_path(path), page=page,
                            sel=sel))


@bp.post("/backup-jobs/<int:bid>/versions")
@role("viewer")
def file_versions_post(bid):
    """From the index when every archive of the backup job is indexed; else a search.yml run (and the
    archives not indexed yet are queued for indexing, so that the next look is answered at once)."""
    db = get_db()
    path = fleet.restores.archive_path(request.form.get("versions", ""))
    aid = request.args.get("aid", type=int)
    missing = fleet.archive_index.not_indexed(db, bid)
    if not missing:
        return redirect(url_for("pages.file_versions", bid=bid, path=path, aid=aid))
    for archive_id in missing:
        fleet.archive_index.queue_index(db, get_redis(), archive_id, g.user["username"])
    job_id = fleet.restores.search(db, get_redis(), bid, path, g.user["username"])
    return redirect(url_for("pages.file_versions", bid=bid, job=job_id, aid=aid))


@bp.get("/backup-jobs/<int:bid>/versions")
@role("viewer")
def file_versions(bid):
    """A search.yml job's findings (?job=), or the index's (?path=)."""
    db = get_db()
    bj = fleet.backup_jobs.get_backup_job(db, bid)
    if request.args.get("job"):
        job = fleet.restores.job_of(db, request.args["job"], "search", backup_job_id=bid)
        result = job["result"] if job["status"] == "succeeded" else None
    else:
        job = None
        result = fleet.archive_index.versions(db, bid, fleet.restores.archive_path(request.args.get("path", "")))
    # Archive names the service knows, to link each version to its browse page.
    known = {x["name"]: x["id"] for x in fleet.archives.list_archives(db, bid, limit=200)}
    return render_template("file_versions.html", bj=bj, job=job, result=result, known=known,
                           aid=request.args.get("aid", type=int))


@bp.post("/archives/<int:aid>/restore")
@role("operator")
def restore_wizard(aid):
    """The selected paths and where they go: the original place, another directory, another client."""
    sel = _selection(request.form.getlist("sel"))
    if not sel:
        raise fleet.Invalid(_("select at least one file or directory to restore"))
    return _wizard(aid, sel)


def _wizard(aid, sel, errors=None, code=200):
    """The wizard; after a refused restore, with the errors under their fields and what was typed."""
    return render_template("restore_wizard.html", a=fleet.archives.get_archive(get_db(), aid), sel=sel,
                           clients=fleet.servers.list_servers(get_db(), role="client", limit=200),
                           errors=errors or {}, values=request.form if errors else {}), code


@bp.post("/archives/<int:aid>/restore/run")
@role("operator")
def restore_run(aid):
    sel = _selection(request.form.getlist("sel"))
    queued = []
    errors, code = submitted("restore", {"archive_id": aid}, lambda data: queued.append(
        fleet.restores.restore(get_db(), get_redis(), aid, data, g.user["username"])))
    if errors:
        return _wizard(aid, sel, errors, code)
    return to_job(queued[0])
