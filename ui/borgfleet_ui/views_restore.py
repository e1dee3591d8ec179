"""Pages of the restore area, on the pages blueprint (its login, roles and error pages): pick a
backup job and an archive, browse it level by level, a file's versions, and the restore wizard.

Each listing is a queued run (browse.yml, search.yml): a form posts, the page then shows the job
until it ends (static/wait.js polls and reloads; without JavaScript a meta refresh does) and renders
its result. The selection of paths travels with the forms (checkboxes named sel) and the URL."""
from flask import g, redirect, render_template, request, url_for

from . import fleet
from .auth import role
from .db import get_db, get_redis
from .views import bp, submitted, to_job

PER_PAGE = 100


def _selection(values):
    sel = list(dict.fromkeys(fleet.restores.archive_path(p, "a selected path") for p in values if p.strip("/")))
    if len(sel) > fleet.restores.MAX_PATHS:
        raise fleet.Invalid(f"at most {fleet.restores.MAX_PATHS} paths can be selected at once")
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
    db = get_db()
    a = fleet.archives.get_archive(db, aid)
    sel = _selection(request.args.getlist("sel"))
    job_id = request.args.get("job")
    job = fleet.restores.job_of(db, job_id, "browse", archive_id=aid) if job_id else None
    path = job["result"]["path"] if job and job["result"] else request.args.get("path", "")
    entries, pages = [], 1
    page = max(1, request.args.get("page", 1, type=int))
    if job and job["status"] == "succeeded":
        everything = job["result"]["entries"]
        pages = max(1, -(-len(everything) // PER_PAGE))
        page = min(page, pages)
        entries = everything[(page - 1) * PER_PAGE:page * PER_PAGE]
    shown = {e["path"] for e in entries}
    return render_template("archive_browse.html", a=a, job=job, path=fleet.restores.archive_path(path),
                           entries=entries, page=page, pages=pages, sel=sel,
                           hidden_sel=[p for p in sel if p not in shown])


@bp.post("/archives/<int:aid>/browse")
@role("viewer")
def archive_browse_post(aid):
    """Open a directory (a new listing: field open) or another page of this one (field page)."""
    db = get_db()
    sel = _selection(request.form.getlist("sel"))
    if "open" in request.form:
        path = request.form["open"]
        job_id = fleet.restores.browse(db, get_redis(), aid, path, g.user["username"])
        page = 1
    else:
        job = fleet.restores.job_of(db, request.form.get("job", ""), "browse", archive_id=aid)
        job_id, path = job["id"], request.form.get("cur", "")
        page = request.form.get("page", 1, type=int)
    return redirect(url_for("pages.archive_browse", aid=aid, job=job_id, path=path, page=page, sel=sel))


@bp.post("/backup-jobs/<int:bid>/versions")
@role("viewer")
def file_versions_post(bid):
    job_id = fleet.restores.search(get_db(), get_redis(), bid, request.form.get("versions", ""), g.user["username"])
    return redirect(url_for("pages.file_versions", bid=bid, job=job_id, aid=request.args.get("aid", type=int)))


@bp.get("/backup-jobs/<int:bid>/versions")
@role("viewer")
def file_versions(bid):
    db = get_db()
    bj = fleet.backup_jobs.get_backup_job(db, bid)
    job = fleet.restores.job_of(db, request.args.get("job", ""), "search", backup_job_id=bid)
    # Archive names the service knows, to link each version to its browse page.
    known = {x["name"]: x["id"] for x in fleet.archives.list_archives(db, bid, limit=200)}
    return render_template("file_versions.html", bj=bj, job=job, known=known, aid=request.args.get("aid", type=int))


@bp.post("/archives/<int:aid>/restore")
@role("operator")
def restore_wizard(aid):
    """The selected paths and where they go: the original place, another directory, another client."""
    sel = _selection(request.form.getlist("sel"))
    if not sel:
        raise fleet.Invalid("select at least one file or directory to restore")
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
