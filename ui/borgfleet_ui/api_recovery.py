"""REST routes of instant recovery (fleet/recovery.py), on the /api blueprint (its error handlers
and login apply). Documented in openapi.py; viewers read sessions, operators act on them."""
from flask import g, jsonify, request
from flask_babel import gettext as _

from . import fleet
from .api import accepted, bp
from .auth import role
from .fleet.common import list_args
from .db import get_db, get_redis


@bp.post("/archives/<int:aid>/instant-recovery")
@role("operator")
def archive_recover(aid):
    data = request.get_json(silent=True) or {}
    if not isinstance(data, dict):
        raise fleet.Invalid(_("the body must be a JSON object"))
    return accepted(fleet.recovery.start(get_db(), get_redis(), aid, data, g.user["username"]))


@bp.get("/recovery-sessions")
@role("viewer")
def recovery_sessions():
    largs = list_args(fleet.recovery.LISTING, request.args)
    return jsonify(items=fleet.recovery.list_sessions(get_db(), largs=largs, health=request.args.get("health") or None))


@bp.post("/recovery-sessions/refresh")
@role("operator")
def recovery_refresh():
    return accepted(fleet.recovery.refresh(get_db(), get_redis(), g.user["username"],
                                           request.args.get("server_id", type=int)))


# sid: the session's id (as test_api's route checks name path ids).
@bp.get("/recovery-sessions/<int:sid>")
@role("viewer")
def recovery_session(sid):
    return jsonify(fleet.recovery.get_session(get_db(), sid))


@bp.post("/recovery-sessions/<int:sid>/stop")
@role("operator")
def recovery_stop(sid):
    return accepted(fleet.recovery.stop(get_db(), get_redis(), sid, g.user["username"]))


@bp.post("/recovery-sessions/<int:sid>/resume")
@role("operator")
def recovery_resume(sid):
    return accepted(fleet.recovery.resume(get_db(), get_redis(), sid, g.user["username"]))


@bp.post("/recovery-sessions/<int:sid>/refresh")
@role("operator")
def recovery_session_refresh(sid):
    s = fleet.recovery.get_session(get_db(), sid)
    return accepted(fleet.recovery.refresh(get_db(), get_redis(), g.user["username"], s["server_id"]))


@bp.delete("/recovery-sessions/<int:sid>")
@role("operator")
def recovery_remove(sid):
    return accepted(fleet.recovery.remove(get_db(), get_redis(), sid, g.user["username"]))


@bp.post("/servers/<int:sid>/recovery-cleanup")
@role("operator")
def recovery_cleanup(sid):
    return accepted(fleet.recovery.cleanup(get_db(), get_redis(), sid, g.user["username"]))
