"""The backup job page (/backup-jobs/<id>): its settings, runs, archives count, schedules, and the
actions on its repository: prune now, check now, and retention edited with a preview (a queued
prune.yml --check of the retention in the form, shown as a table before anything is saved)."""
from zoneinfo import available_timezones

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from . import fleet, forms, views
from .auth import role
from .contract import contract
from .db import get_db, get_redis

bp = Blueprint("backup_job", __name__)
bp.register_error_handler(fleet.Invalid, views._invalid)
bp.register_error_handler(fleet.NotFound, views._notfound)


@bp.get("/backup-jobs/<int:bid>")
@role("viewer")
def page(bid):
    return _page(bid)


def _page(bid, errors=None, code=200):
    """The page; after a refused form (errors: {input: message}) with what was typed in that form."""
    bj = fleet.backup_jobs.overview(get_db(), bid)
    preview = _preview(bj, request.args.get("preview"))
    # The retention in the form: the one typed and refused, the one just previewed (carried in the
    # URL), else the saved one.
    typed = request.form if errors else request.args if preview else None
    shown = {k: typed[k] for k in contract.RETENTION_KEYS if typed.get(k)} if typed is not None \
        else (bj["retention"] or {})
    return render_template("backup_job.html", bj=bj, preview=preview, shown=shown, errors=errors or {},
                           values=request.form if errors else {}, form=request.form.get("form") if errors else None,
                           retention_keys=contract.RETENTION_KEYS, timezones=sorted(available_timezones())), code


@bp.get("/backup-jobs/<int:bid>/preview/<job_id>")
@role("viewer")
def preview_part(bid, job_id):
    """The preview table alone, for the page's script to swap in once the job is over."""
    bj = fleet.backup_jobs.get_backup_job(get_db(), bid)
    return render_template("_prune_preview.html", bj=bj, preview=_preview(bj, job_id))


def _preview(bj, job_id):
    """The preview job of this backup job (its rows sorted newest first, with the time the service
    knows for each archive), or None."""
    if not job_id:
        return None
    job = fleet.runs.get_job(get_db(), job_id)
    if job["kind"] != "prune_preview" or job["backup_job_id"] != bj["id"]:
        abort(404)
    result = job["result"] or {}
    starts = {a["name"]: a["start_at"] for a in fleet.archives.list_archives(get_db(), bj["id"], limit=200)}
    rows = [{"name": a["name"], "kept": True, "rule": a.get("rule")} for a in result.get("kept") or []] + \
           [{"name": name, "kept": False, "rule": None} for name in result.get("pruned") or []]
    for row in rows:
        row["start_at"] = starts.get(row["name"])
    return {"job": job, "rows": sorted(rows, key=lambda x: x["name"], reverse=True)}


@bp.post("/backup-jobs/<int:bid>/retention")
@role("operator")
def retention(bid):
    """Preview the retention of the form (nothing saved), or save it with the prune schedule."""
    queued = []

    def act(data):
        if request.form.get("action") == "preview":
            queued.append(fleet.backup_jobs.run(get_db(), get_redis(), "prune_preview", bid, g.user["username"],
                                                {"retention": data["retention"]}))
        else:
            fleet.backup_jobs.update_backup_job(get_db(), get_redis(), bid, data)
    errors, code = views.submitted("retention", {"backup_job_id": bid}, act)
    if errors:
        return _page(bid, errors, code)
    if queued:
        return redirect(url_for("backup_job.page", bid=bid, preview=queued[0], **forms.retention_of(request.form),
                                _anchor="retention"))
    flash(_("Retention saved."))
    return redirect(url_for("backup_job.page", bid=bid, _anchor="retention"))


@bp.post("/backup-jobs/<int:bid>/settings")
@role("operator")
def settings(bid):
    """Schedule, time zone, excludes, compression and verify schedule (PUT /api/backup-jobs/<id>)."""
    errors, code = views.submitted("backup_settings", {"backup_job_id": bid},
                                   lambda data: fleet.backup_jobs.update_backup_job(get_db(), get_redis(), bid, data))
    if errors:
        return _page(bid, errors, code)
    flash(_("Backup settings saved."))
    return redirect(url_for("backup_job.page", bid=bid, _anchor="bj-edit"))


@bp.post("/backup-jobs/<int:bid>/enabled")
@role("operator")
def enabled(bid):
    """Enable or disable the backup job: a disabled one has no next run (nothing scheduled)."""
    on = request.form.get("enabled") == "1"
    fleet.backup_jobs.update_backup_job(get_db(), get_redis(), bid, {"enabled": on})
    flash(_("Backup job enabled.") if on else _("Backup job disabled."))
    return redirect(url_for("backup_job.page", bid=bid))


@bp.post("/backup-jobs/<int:bid>/delete")
@role("operator")
def delete(bid):
    """Delete the backup job and its rows in the service; its repository and archives stay in borg."""
    bj = fleet.backup_jobs.get_backup_job(get_db(), bid)
    fleet.backup_jobs.delete_backup_job(get_db(), get_redis(), bid)
    flash(_("Backup job %(name)s deleted.", name=bj["name"]))
    return redirect(url_for("pages.server_page", sid=bj["client_id"]))


@bp.post("/backup-jobs/<int:bid>/check-settings")
@role("operator")
def check_settings(bid):
    errors, code = views.submitted("check", {"backup_job_id": bid},
                                   lambda data: fleet.backup_jobs.update_backup_job(get_db(), get_redis(), bid, data))
    if errors:
        return _page(bid, errors, code)
    flash(_("Check settings saved."))
    return redirect(url_for("backup_job.page", bid=bid, _anchor="checks"))


def _queued(bid, kind, options=None):
    """Queue a run of this backup job and show its job page."""
    job_id = fleet.backup_jobs.run(get_db(), get_redis(), kind, bid, g.user["username"], options)
    return views.to_job(job_id)


@bp.post("/backup-jobs/<int:bid>/prune")
@role("operator")
def prune(bid):
    return _queued(bid, "prune")


@bp.post("/backup-jobs/<int:bid>/refresh-archives")
@role("operator")
def refresh_archives(bid):
    """Read the archive list again from borg (list_archives.yml)."""
    return _queued(bid, "list_archives")


@bp.post("/backup-jobs/<int:bid>/check")
@role("operator")
def check(bid):
    """Check now, with the options of the check form (the saved scope where it has none)."""
    options = {"verify_data": bool(request.form.get("verify_data"))}
    if request.form.get("check_scope"):
        options["scope"] = request.form["check_scope"]
    return _queued(bid, "check", options)
