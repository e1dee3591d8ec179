"""REST API under /api (JSON). Documented in openapi.json, served at /api/openapi.json."""
from datetime import datetime, timezone

from flask import Blueprint, g, jsonify, request
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from . import fleet, forms, i18n, secret_store, workers
from . import openapi as openapi_doc
from .auth import has_role, role
from .db import get_db, get_redis, query
from .fleet.common import list_args

bp = Blueprint("api", __name__, url_prefix="/api")


def body():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise fleet.Invalid(_("a JSON object body is required"))
    return data


def page(items, cursor_key="id"):
    limit, _ = fleet.page_args(request.args)
    nxt = items[-1][cursor_key] if len(items) == limit else None
    return jsonify(items=items, next_before=nxt)


def accepted(job_id):
    return jsonify(job_id=job_id, status="queued", url=f"/api/jobs/{job_id}"), 202


@bp.errorhandler(fleet.Invalid)
def _invalid(e):
    return jsonify(error=str(e)), 400


@bp.errorhandler(fleet.NotFound)
def _missing(e):
    return jsonify(error=str(e)), 404


@bp.errorhandler(fleet.Forbidden)
def _forbidden(e):
    return jsonify(error=str(e)), 403


@bp.errorhandler(workers.Unavailable)
def _unavailable(e):
    return jsonify(error=str(e)), 409


@bp.errorhandler(secret_store.SecretError)
def _no_key(e):
    # The key file is missing or wrong on this host: an operator must fix it, the request was fine.
    return jsonify(error=str(e)), 503


@bp.errorhandler(HTTPException)
def _http(e):
    return jsonify(error=i18n.http_error(e)[1]), e.code


@bp.get("/health")
def health():
    out, code = {"db": "ok", "redis": "ok"}, 200
    try:
        query(get_db(), "SELECT 1")
    except Exception as e:  # health reports, never raises
        out["db"], code = f"error: {type(e).__name__}", 503
    try:
        get_redis().ping()
    except Exception as e:
        out["redis"], code = f"error: {type(e).__name__}", 503
    return jsonify(status="ok" if code == 200 else "degraded", **out), code


@bp.get("/openapi.json")
@role("viewer")
def openapi():
    return jsonify(openapi_doc.document())


@bp.get("/me")
@role("viewer")
def me():
    return jsonify(id=g.user["id"], username=g.user["username"], role=g.user["role"],
                   language=g.user.get("language"), theme=g.user.get("theme"))


@bp.put("/me/preferences")
@role("viewer")
def me_preferences():
    try:
        return jsonify(i18n.set_preferences(g.user, body()))
    except ValueError as e:
        raise fleet.Invalid(str(e)) from None


# --- servers ---
@bp.get("/servers")
@role("viewer")
def servers_list():
    limit, before = fleet.page_args(request.args)
    largs = list_args(fleet.servers.LISTING, request.args)
    return page(fleet.servers.list_servers(get_db(), limit=limit, before=before, largs=largs))


@bp.post("/servers")
@role("operator")
def servers_create():
    return jsonify(fleet.servers.create_server(get_db(), body(), admin=has_role(g.user, "admin"))), 201


@bp.post("/servers/test-connection")
@role("operator")
def servers_test_connection():
    """The add-server wizard's probe (fleet/probe.py): 200 with the verdict, whatever it is."""
    return jsonify(fleet.probe.test_connection(body(), admin=has_role(g.user, "admin")))


@bp.post("/servers/trust-host-key")
@role("operator")
def servers_trust_host_key():
    """Pin the host key whose fingerprint Test connection showed (only while none is pinned)."""
    data = body()
    return jsonify(fleet.probe.trust_host_key(data, data.get("fingerprint"), admin=has_role(g.user, "admin")))


@bp.get("/servers/<int:sid>")
@role("viewer")
def servers_get(sid):
    return jsonify(fleet.servers.get_server(get_db(), sid))


@bp.errorhandler(fleet.servers.ConnectionFailed)
def _connection_failed(e):
    return jsonify(error=str(e), connection_test=e.result), 400


@bp.route("/servers/<int:sid>", methods=["PUT", "PATCH"])
@role("operator")
def servers_update(sid):
    """Both partial: absent fields keep their value. test_connection / setup: see openapi.py."""
    data = body()
    test, setup = bool(data.pop("test_connection", False)), bool(data.pop("setup", False))
    server, result, job = fleet.servers.edit_server(get_db(), get_redis() if setup else None, sid, data,
                                                    g.user["username"], admin=has_role(g.user, "admin"),
                                                    test=test, setup=setup)
    return jsonify({**server, "connection_test": result, "setup_job_id": job})


@bp.post("/servers/<int:sid>/test-connection")
@role("operator")
def servers_edit_test_connection(sid):
    """Test connection of the server as the body would change it (nothing saved): 200 with the verdict."""
    return jsonify(fleet.servers.test_edit(get_db(), sid, body(), admin=has_role(g.user, "admin")))


@bp.post("/servers/<int:sid>/trust-host-key")
@role("operator")
def servers_edit_trust_host_key(sid):
    """Pin the key Test connection showed for the server's (edited) endpoint, while none is pinned."""
    data = body()
    fingerprint = data.pop("fingerprint", None)
    return jsonify(fleet.servers.trust_edit(get_db(), sid, data, fingerprint, admin=has_role(g.user, "admin")))


@bp.get("/servers/<int:sid>/deletion")
@role("viewer")
def servers_deletion(sid):
    """What deleting the server would take with it in the service (its repositories stay on the backup server)."""
    return jsonify(fleet.servers.deletion(get_db(), sid))


@bp.delete("/servers/<int:sid>")
@role("operator")
def servers_delete(sid):
    fleet.servers.delete_server(get_db(), sid)
    return "", 204


@bp.post("/servers/<int:sid>/setup")
@role("operator")
def servers_setup(sid):
    return accepted(fleet.servers.setup_server(get_db(), get_redis(), sid, g.user["username"]))


@bp.post("/servers/<int:sid>/collect-stats")
@role("operator")
def servers_collect(sid):
    return accepted(fleet.servers.collect_stats(get_db(), get_redis(), sid, g.user["username"]))


@bp.get("/servers/<int:sid>/stats")
@role("viewer")
def servers_stats(sid):
    return jsonify(items=fleet.servers.server_stats(get_db(), sid))


@bp.get("/servers/<int:sid>/stats/history")
@role("viewer")
def servers_stats_history(sid):
    range_ = request.args.get("range", "day")
    if range_ not in fleet.facts.RANGES:
        raise fleet.Invalid(_("range must be one of %(choices)s", choices=', '.join(fleet.facts.RANGES)))
    return jsonify(fleet.facts.stats_history(get_db(), sid, range_))


@bp.get("/servers/<int:sid>/capabilities")
@role("viewer")
def servers_capabilities(sid):
    db = get_db()
    fleet.servers.get_server(db, sid)
    caps = fleet.facts.capabilities(db, sid)
    if not caps:
        raise fleet.NotFound(_("no capabilities detected on this server yet (POST .../detect-capabilities)"))
    return jsonify(detected_at=caps["detected_at"], capabilities=caps["data"],
                   databases=fleet.facts.databases(caps["data"]))


@bp.post("/servers/<int:sid>/detect-capabilities")
@role("operator")
def servers_detect(sid):
    return accepted(fleet.facts.detect(get_db(), get_redis(), sid, g.user["username"]))


# --- storage pools ---
@bp.get("/storage-pools")
@role("viewer")
def pools_list():
    sid = request.args.get("server_id", type=int)
    return jsonify(items=fleet.pools.list_pools(get_db(), sid))


@bp.post("/storage-pools")
@role("operator")
def pools_create():
    return jsonify(fleet.pools.create_pool(get_db(), body())), 201


@bp.delete("/storage-pools/<int:pid>")
@role("operator")
def pools_delete(pid):
    fleet.pools.delete_pool(get_db(), pid)
    return "", 204


@bp.get("/storage-pools/usage")
@role("viewer")
def pools_usage():
    return jsonify(items=fleet.pools.usage(get_db()))


@bp.post("/storage-pools/analyze")
@role("operator")
def pools_analyze():
    return accepted(fleet.pools.analyze(get_db(), get_redis(), g.user["username"]))


# --- backup jobs ---
@bp.get("/backup-jobs")
@role("viewer")
def bj_list():
    limit, before = fleet.page_args(request.args)
    largs = list_args(fleet.backup_jobs.LISTING, request.args)
    return page(fleet.backup_jobs.list_backup_jobs(get_db(), limit=limit, before=before, largs=largs))


@bp.post("/backup-jobs")
@role("operator")
def bj_create():
    data = body()
    setup = data.pop("setup", False)
    if not isinstance(setup, bool):
        raise fleet.Invalid(_("setup must be true or false"))
    if not setup:
        return jsonify(fleet.backup_jobs.create_backup_job(get_db(), get_redis(), data)), 201
    # The client's setup queued too: it creates the repository (the backup wizard does the same).
    bj, job_id = fleet.backup_jobs.create_and_set_up(get_db(), get_redis(), data, g.user["username"])
    return jsonify(dict(bj, setup_job_id=job_id)), 201


@bp.post("/backup-jobs/check-draft")
@role("operator")
def bj_check_draft():
    """A backup job's data checked as POST /backup-jobs checks it, the passphrase apart (the backup
    wizard's step check), nothing saved: the backup as the collection resolves it."""
    resolved = fleet.backup_jobs.check_draft(get_db(), body())
    return jsonify({k: resolved[k] for k in ("name", "repository", "local", "pool", "paths", "exclude",
                                             "compression", "retention")})


@bp.get("/schedules/next-runs")
@role("viewer")
def schedules_next_runs():
    """The next runs of ?cron= in ?timezone= (UTC), as the scheduler computes them (the backup wizard)."""
    cron, tz = request.args.get("cron", ""), request.args.get("timezone") or "UTC"
    count = fleet.common.int_between(request.args.get("count", 5), "count", 1, 50)
    after = request.args.get("after")
    if after:
        try:
            after = datetime.fromisoformat(after.replace("Z", "+00:00"))
        except ValueError:
            raise fleet.Invalid(_("after must be an ISO 8601 time")) from None
        after = after if after.tzinfo else after.replace(tzinfo=timezone.utc)   # naive: UTC
    return jsonify(cron=cron, timezone=tz, runs=fleet.wizard.run_times(cron, tz, count, after or None))


@bp.get("/backup-jobs/<int:bid>")
@role("viewer")
def bj_get(bid):
    return jsonify(fleet.backup_jobs.get_backup_job(get_db(), bid))


@bp.put("/backup-jobs/<int:bid>")
@role("operator")
def bj_update(bid):
    return jsonify(fleet.backup_jobs.update_backup_job(get_db(), get_redis(), bid, body()))


@bp.delete("/backup-jobs/<int:bid>")
@role("operator")
def bj_delete(bid):
    fleet.backup_jobs.delete_backup_job(get_db(), get_redis(), bid)
    return "", 204


@bp.post("/backup-jobs/<int:bid>/run")
@role("operator")
def bj_run(bid):
    return accepted(fleet.backup_jobs.run(get_db(), get_redis(), "backup", bid, g.user["username"]))


@bp.post("/backup-jobs/<int:bid>/verify")
@role("operator")
def bj_verify(bid):
    return accepted(fleet.backup_jobs.run(get_db(), get_redis(), "verify", bid, g.user["username"]))


@bp.post("/backup-jobs/<int:bid>/refresh-archives")
@role("operator")
def bj_refresh(bid):
    return accepted(fleet.backup_jobs.run(get_db(), get_redis(), "list_archives", bid, g.user["username"]))


@bp.post("/backup-jobs/<int:bid>/prune")
@role("operator")
def bj_prune(bid):
    return accepted(fleet.backup_jobs.run(get_db(), get_redis(), "prune", bid, g.user["username"]))


@bp.post("/backup-jobs/<int:bid>/prune-preview")
@role("operator")
def bj_prune_preview(bid):
    """A dry run of the retention in the body (or the saved one): the job's result lists kept and pruned."""
    data = request.get_json(silent=True) or {}
    options = {"retention": data["retention"]} if data.get("retention") is not None else {}
    return accepted(fleet.backup_jobs.run(get_db(), get_redis(), "prune_preview", bid, g.user["username"], options))


@bp.post("/backup-jobs/<int:bid>/check")
@role("operator")
def bj_check(bid):
    data = request.get_json(silent=True) or {}
    options = {k: data[k] for k in ("scope", "verify_data") if data.get(k) is not None}
    return accepted(fleet.backup_jobs.run(get_db(), get_redis(), "check", bid, g.user["username"], options))


# --- archives ---
@bp.get("/archives")
@role("viewer")
def archives_list():
    limit, before = fleet.page_args(request.args)
    largs = list_args(fleet.archives.LISTING, request.args)
    return page(fleet.archives.list_archives(get_db(), limit=limit, before=before, largs=largs))


@bp.get("/archives/<int:aid>")
@role("viewer")
def archives_get(aid):
    return jsonify(fleet.archives.get_archive(get_db(), aid))


@bp.delete("/archives/<int:aid>")
@role("operator")
def archives_delete(aid):
    return accepted(fleet.archives.delete_archive(get_db(), get_redis(), aid, g.user["username"]))


# --- jobs ---
@bp.get("/jobs")
@role("viewer")
def jobs_list():
    limit, before = fleet.page_args(request.args)
    largs = list_args(fleet.runs.LISTING, request.args)
    return page(fleet.runs.list_jobs(get_db(), limit=limit, before=before, largs=largs), "seq")


@bp.get("/jobs/<job_id>")
@role("viewer")
def jobs_get(job_id):
    return jsonify(fleet.runs.get_job(get_db(), job_id))


@bp.get("/jobs/<job_id>/log")
@role("viewer")
def jobs_log(job_id):
    job = fleet.runs.get_job(get_db(), job_id)
    after = request.args.get("after", 0, type=int)
    lines = fleet.runs.job_log(get_db(), job_id, after)
    return jsonify(status=job["status"], lines=[x["line"] for x in lines],
                   next=lines[-1]["n"] if lines else after)


@bp.post("/jobs/<job_id>/cancel")
@role("operator")
def jobs_cancel(job_id):
    fleet.runs.cancel_job(get_db(), get_redis(), job_id)
    return jsonify(fleet.runs.get_job(get_db(), job_id)), 202


# --- inline validation of the pages' forms ---
@bp.post("/validate/<form>")
@role("operator")
def validate(form):
    """The verdict the form's operation gives on typed values, per input, saving nothing (forms.py)."""
    spec = forms.FORMS.get(form)
    if spec is None:
        raise fleet.NotFound(_("no form %(form)s; forms: %(choices)s",
                               form=form, choices=', '.join(sorted(forms.FORMS))))
    data = body()
    values = data.get("values")
    if not isinstance(values, dict) or not all(
            isinstance(x, str) for v in values.values() for x in (v if isinstance(v, list) else [v])):
        raise fleet.Invalid(_("values must map each input's name to its text (or a list of texts)"))
    ctx = {"admin": has_role(g.user, "admin")}
    if spec.context:
        ctx[spec.context] = fleet.common.int_between(data.get(spec.context), spec.context, 1, 2**62)
    pairs = [(k, x) for k, v in values.items() for x in (v if isinstance(v, list) else [v])]
    errors = forms.verdict(get_db(), form, MultiDict(pairs), ctx)
    return jsonify(valid=not errors, errors=errors)


# --- workers (admin) ---
@bp.get("/workers")
@role("admin")
def workers_list():
    r = get_redis()
    return jsonify(items=workers.list_workers(r), scheduler=workers.scheduler_status(r),
                   systemd=workers.systemd_running())


@bp.post("/workers/<name>/<any(start, stop, restart):action>")
@role("admin")
def workers_control(name, action):
    workers.control(get_redis(), name, action)
    return jsonify(name=name, action=action), 202


@bp.get("/workers/<name>/logs")
@role("admin")
def workers_logs(name):
    try:
        lines, since = workers.log_filters(request.args.get("lines", "200"), request.args.get("since", ""))
    except ValueError as e:
        raise fleet.Invalid(str(e)) from None
    return jsonify(lines=workers.logs(name, lines, since))


# --- settings ---
@bp.get("/settings")
@role("viewer")
def settings_get():
    return jsonify(fleet.settings.get_settings(get_db()))


@bp.put("/settings")
@role("admin")
def settings_put():
    return jsonify(fleet.settings.update_settings(get_db(), body()))


# --- users and tokens ---
@bp.get("/users")
@role("admin")
def users_list():
    return jsonify(items=fleet.users.list_users(get_db()))


@bp.post("/users")
@role("admin")
def users_create():
    data = body()
    user, password = fleet.users.create_user(get_db(), data)
    return jsonify(username=user["username"], role=user["role"], id=user["id"],
                   password=None if data.get("password") else password), 201


@bp.put("/users/<int:uid>")
@role("admin")
def users_update(uid):
    """Change a user's password, role or disabled flag; a new password or disabling ends its sessions."""
    return jsonify(fleet.users.update_user(get_db(), uid, body()))


@bp.post("/users/<int:uid>/reset-password")
@role("admin")
def users_reset_password(uid):
    """A new generated password, returned once; the old one is refused from now on."""
    db = get_db()
    password = fleet.users.reset_password(db, uid)
    return jsonify(dict(fleet.users.get_user(db, uid), password=password))


@bp.post("/tokens")
@role("viewer")
def tokens_create():
    name, token, expires_at = fleet.users.create_token(get_db(), g.user["id"], body())
    # Shown once; only its hash is stored.
    return jsonify(name=name, token=token, expires_at=expires_at), 201


@bp.get("/tokens")
@role("viewer")
def tokens_list():
    return jsonify(items=fleet.users.list_tokens(get_db(), g.user["id"]))


@bp.delete("/tokens/<int:tid>")
@role("viewer")
def tokens_delete(tid):
    fleet.users.revoke_token(get_db(), g.user["id"], tid)
    return "", 204
