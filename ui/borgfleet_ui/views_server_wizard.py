"""Add a server, the wizard (/servers/new): role and connection, Test connection (fleet/probe.py)
with the exact reason when it fails (and, for a host whose key is not pinned yet, Trust this key
after comparing its fingerprint), a backup server's pools checked on the host, then Save, which
creates the server and queues its setup (capabilities detection follows by itself, kinds.py `then`)
and lands on the setup job's live page. Server-rendered: every step is a form post, so it works
without JavaScript (server_wizard.js only hides the other role's fields and copies keys)."""
import json

from flask import g, render_template, request
from flask_babel import gettext

from . import fleet
from .auth import has_role, role
from .contract import contract
from .db import get_db, get_redis
from .views import bp, to_job

MAX_POOLS = 20


def _wizard_form():
    """The posted form as the wizard shows it again (strings as typed) and the pool rows."""
    f = {k: (request.form.get(k) or "").strip() for k in ("name", "role", "address", "port", "ssh_user",
                                                          "backup_server_id", "vars")}
    f["role"] = f["role"] if f["role"] in ("client", "backup_server") else "client"
    names, paths = request.form.getlist("pool_name"), request.form.getlist("pool_path")
    rows = [{"name": n.strip(), "path": p.strip()} for n, p in zip(names, paths)][:MAX_POOLS]
    f["pools"] = rows or [{"name": "main", "path": ""}]
    return f


def _data(f, admin):
    """The form -> what create_server and the probe take; Invalid with the first problem."""
    data = {"name": f["name"] or None, "role": f["role"], "address": f["address"], "connection": "ssh",
            "port": f["port"] or 22, "ssh_user": f["ssh_user"] or "root"}
    if f["vars"] and admin:
        try:
            data["vars"] = json.loads(f["vars"])
        except ValueError:
            raise fleet.Invalid(gettext("extra vars must be JSON")) from None
    if f["role"] == "backup_server":
        pools = [p for p in f["pools"] if p["path"]]
        if not pools:
            raise fleet.Invalid(gettext("a backup server needs at least one storage pool path"))
        data["pools"] = [{"name": p["name"] or "main", "path": p["path"]} for p in pools]
    elif f["backup_server_id"]:
        data["backup_server_id"] = fleet.common.int_between(f["backup_server_id"], "backup server", 1, 2**62)
    return data


@bp.route("/servers/new", methods=["GET", "POST"])
@role("operator")
def server_new():
    db = get_db()
    admin = has_role(g.user, "admin")
    backup_servers = fleet.servers.list_servers(db, role="backup_server", limit=200)
    if request.method == "GET":
        f = {"name": "", "role": request.args.get("role") if request.args.get("role") == "backup_server" else "client",
             "address": "", "port": "22", "ssh_user": "root", "backup_server_id": "", "vars": "",
             "pools": [{"name": "main", "path": ""}]}
        return _render(f, backup_servers)
    f = _wizard_form()
    # A Trust this key button posts the fingerprint it shows (a button sends its value only when pressed).
    action = "trust" if request.form.get("fingerprint") else request.form.get("action", "test")
    if action == "add_pool":
        f["pools"] = (f["pools"] + [{"name": "", "path": ""}])[:MAX_POOLS]
        return _render(f, backup_servers)
    pinned = None
    try:
        data = _data(f, admin)
        if action == "trust":
            pinned = fleet.probe.trust_host_key(data, request.form.get("fingerprint"), admin=admin)
        result = fleet.probe.test_connection(data, admin=admin)
    except (fleet.Invalid, fleet.Forbidden) as e:
        return _render(f, backup_servers, error=str(e)), 400
    if action != "save":
        return _render(f, backup_servers, result=result, pinned=pinned)
    if not result["ok"] and not request.form.get("save_anyway"):
        return _render(f, backup_servers, result=result,
                       error=gettext("Not saved: the test failed (below). Fix it and test again, or tick"
                                     " \"Save even though the test failed\" to set the server up later.")), 400
    try:
        server = fleet.servers.create_server(db, data, admin=admin)
    except (fleet.Invalid, fleet.Forbidden) as e:
        return _render(f, backup_servers, result=result, error=str(e)), 400
    return to_job(fleet.servers.setup_server(db, get_redis(), server["id"], g.user["username"]))


def _render(f, backup_servers, result=None, error=None, pinned=None):
    return render_template("server_new.html", f=f, result=result, error=error, backup_servers=backup_servers,
                           server_vars=sorted(contract.HOST_VARS), max_pools=MAX_POOLS, pinned=pinned)
