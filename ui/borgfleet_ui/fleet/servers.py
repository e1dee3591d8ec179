"""Servers (clients and backup servers): rows, validation, and the runs queued for a server."""
import json
import re

from flask_babel import gettext as _

from .. import queue as q
from ..contract import contract
from ..db import execute, query
from .common import (Forbidden, Invalid, ListArgs, Listing, NotFound, about, absolute_path, by_contract, said,
                     field, int_between, list_query, matching)
from . import probe
from .archives import refresh_sort_keys
from .pools import backup_server_vars, create_pool

SERVER_COLS = ("id, name, role, address, port, ssh_user, connection, backup_server_id, local_pool_path,"
               " vars_json, setup_status, setup_at, created_at")


def server_out(row):
    row = dict(row)
    row["vars"] = json.loads(row.pop("vars_json") or "{}")
    return row


ROLES = ("client", "backup_server")
SETUP_STATES = {"ok": "setup_status='ok'", "needs setup": "setup_status='needs setup'",
                "not set up": "setup_status IS NULL"}
LISTING = Listing(
    source="FROM servers", key="id",
    sorts={"name": ("name", "asc"), "role": ("role", "asc"), "address": ("address", "asc"),
           "setup": ("COALESCE(setup_status, '')", "asc")},
    search=("name", "address"), choices={"role": ("role", ROLES), "setup": SETUP_STATES})


def list_servers(db, role=None, limit=50, before=None, largs=None):
    """A page of servers, newest first, or as `largs` (ListArgs of LISTING) sorts and filters."""
    largs = largs or ListArgs("", "desc", "", {})
    if role:
        largs = largs._replace(filters={**largs.filters, "role": matching(re.compile("client|backup_server"),
                                                                             role, "role")})
    sql, args = list_query(LISTING, SERVER_COLS, largs, before, limit)
    return [server_out(r) for r in query(db, sql, args)]


def get_server(db, server_id):
    row = query(db, f"SELECT {SERVER_COLS} FROM servers WHERE id=%s", (server_id,), one=True)
    if not row:
        raise NotFound(_("server %(server_id)s not found", server_id=server_id))
    return server_out(row)


def _host(value, what):
    """A host name, IPv4 or IPv6 address, as the collection's contract accepts it (never an option)."""
    problem = contract.host_problem(value)
    if problem:
        raise Invalid(_("%(what)s %(value)r %(problem)s", what=what, value=value, problem=said(problem)))
    return value


def check_vars(vars_, role, connection):
    """The validated extra vars of a server: the contract's allowlist (HOST_VARS), each with its check."""
    return by_contract(contract.check_host_vars, vars_, role, connection)


def _server_fields(db, data, current=None, admin=False):
    """Validated columns of a server; a refusal names the field it is about (Invalid.field)."""
    cur = current or {}
    out = {}
    with about("name"):
        # As boring as a backup name (the contract's rule): it names directories on the backup server.
        out["name"] = matching(contract.BACKUP_NAME_RE, field(data, "name", cur.get("name"), required=True), "name")
    with about("role"):
        out["role"] = field(data, "role", cur.get("role"), required=True)
        if out["role"] not in ("client", "backup_server"):
            raise Invalid(_("role must be client or backup_server"))
    with about("connection"):
        out["connection"] = field(data, "connection", cur.get("connection", "ssh"))
        if out["connection"] not in ("ssh", "local"):
            raise Invalid(_("connection must be ssh or local"))
    # A local client is the worker host itself, backed up (and restored) as the service's user:
    # whoever adds one can read any file there, the service's key file included.
    if out["connection"] == "local" and cur.get("connection") != "local" and not admin:
        raise Forbidden(_("only an admin can add a local server (connection local runs on the worker host itself)"),
                        "connection")
    with about("address"):
        out["address"] = _host(field(data, "address", cur.get("address", "127.0.0.1")), "address")
    with about("port"):
        out["port"] = int_between(field(data, "port", cur.get("port", 22)), "port", 1, 65535)
    with about("ssh_user"):
        out["ssh_user"] = matching(contract.SERVER_USER_RE, field(data, "ssh_user", cur.get("ssh_user", "root")),
                                   "ssh_user")
    bsid = field(data, "backup_server_id", cur.get("backup_server_id"))
    lpp = field(data, "local_pool_path", cur.get("local_pool_path"))
    if out["role"] == "client":
        if bsid is None and lpp is None:
            raise Invalid(_("a client needs backup_server_id, or local_pool_path for local repositories"),
                          "backup_server_id")
        if bsid is not None:
            bs = query(db, "SELECT role FROM servers WHERE id=%s", (bsid,), one=True)
            if not bs or bs["role"] != "backup_server":
                raise Invalid(_("backup_server_id %(bsid)s is not a backup server", bsid=bsid), "backup_server_id")
            lpp = None
        else:
            with about("local_pool_path"):
                lpp = absolute_path(lpp, "local_pool_path")
    else:
        bsid, lpp = None, None
    out["backup_server_id"], out["local_pool_path"] = bsid, lpp
    old_vars = cur.get("vars") or {}
    vars_ = field(data, "vars", old_vars)
    # Extra vars reach ssh and Ansible on the worker host: only admins set or change them.
    if vars_ != old_vars and not admin:
        raise Forbidden(_("only an admin can set or change a server's extra vars"), "vars")
    with about("vars"):
        out["vars_json"] = json.dumps(check_vars(vars_, out["role"], out["connection"]))
    return out


def role_change_problem(db, server):
    """Why `server` cannot change its role now (what to move or delete first), or None when nothing
    depends on its current role: a client's backup jobs have repositories named after it on its
    backup server; a backup server's clients send their backups to it and its pools hold repositories."""
    sid, name = server["id"], server["name"]
    n = lambda sql: query(db, sql, (sid,), one=True)["n"]   # noqa: E731
    if server["role"] == "client":
        jobs = n("SELECT COUNT(*) AS n FROM backup_jobs WHERE client_id=%s")
        if jobs:
            return _("client %(name)s has %(n)s backup job(s) whose repositories are named after it: it cannot be"
                     " turned into a backup server while they back it up; delete its backup jobs first (their"
                     " repositories stay on the backup server), or add the host again as a new server",
                     name=name, n=jobs)
        return None
    clients = n("SELECT COUNT(*) AS n FROM servers WHERE backup_server_id=%s")
    repos = n("SELECT COUNT(*) AS n FROM repositories WHERE server_id=%s")
    if clients:
        if repos:
            return _("backup server %(name)s has clients (%(n)s): it cannot become a client; move them to another"
                     " backup server or delete them first, and delete the backup jobs whose %(repos)s"
                     " repository(ies) its pools hold", name=name, n=clients, repos=repos)
        return _("backup server %(name)s has clients (%(n)s): it cannot become a client; move them to another"
                 " backup server or delete them first", name=name, n=clients)
    if repos:
        return _("backup server %(name)s holds %(n)s repository(ies) in its pools: it cannot become a client;"
                 " delete the backup jobs they belong to first", name=name, n=repos)
    return None


def _check_move(db, cur, f):
    """A server's repositories live at <pool>/<client name>/<backup> on its backup server (or under
    its local pool path): renaming or moving a client that has some would strand its archives."""
    if cur["role"] == "client" and f["role"] == "client":
        n = query(db, "SELECT COUNT(*) AS n FROM backup_jobs WHERE client_id=%s", (cur["id"],), one=True)["n"]
        if n:
            for col, what in (("name", _("renamed")),
                              ("backup_server_id", _("moved to another backup server")),
                              ("local_pool_path", _("moved to another place"))):
                if f[col] != cur[col]:
                    raise Invalid(_("client %(name)s has %(n)s backup job(s) whose repositories are named after"
                                    " it and live on its current backup server: it cannot be %(what)s"
                                    " (its archives would become unreachable); delete its backup jobs first,"
                                    " or add a new client", name=cur["name"], n=n, what=what), col)
    elif cur["role"] == "backup_server" and \
            query(db, "SELECT id FROM repositories WHERE server_id=%s LIMIT 1", (cur["id"],), one=True):
        # The repositories belong to the account running borg serve; another account cannot open them.
        # (Its name, address and port may change: repositories are found by pool, client and backup.)
        old_user = cur["vars"].get("borgfleet_server_user", "borg")
        if json.loads(f["vars_json"]).get("borgfleet_server_user", "borg") != old_user:
            raise Invalid(_("backup server %(name)s holds repositories owned by %(user)s:"
                            " borgfleet_server_user cannot change while clients have backup jobs there",
                            name=cur["name"], user=old_user), "vars")


# What changes how the service (and its playbooks) reach a server: setup must run again for it.
CONNECTION_FIELDS = ("address", "port", "ssh_user", "connection")


def needs_setup(cur, f):
    """Whether these validated fields change the server's connection or role (setup must follow:
    a new host needs borg and its keys; a moved backup server's clients must pin its new endpoint)."""
    return f["role"] != cur["role"] or any(f[k] != cur[k] for k in CONNECTION_FIELDS) or \
        json.loads(f["vars_json"]) != cur["vars"]


def create_server(db, data, admin=False, dry_run=False):
    """Add a server (and its pools); dry_run: only judge `data` (nothing written, None)."""
    f = _server_fields(db, data, admin=admin)
    if query(db, "SELECT id FROM servers WHERE name=%s", (f["name"],), one=True):
        raise Invalid(_("a server named %(name)s exists", name=f['name']), "name")
    pools = field(data, "pools", []) or []
    if pools:
        if f["role"] != "backup_server":
            raise Invalid(_("storage pools belong to backup servers"), "pools")
        # All of them checked before the server row exists: a refused pool leaves nothing behind.
        server = {"id": None, "address": f["address"], "port": f["port"], "vars_json": f["vars_json"]}
        hv = dict(backup_server_vars(db, server), borgfleet_storage_pools=pools)
        with about("pools"):
            by_contract(contract.server_settings, f["name"], hv)
    if dry_run:
        return None
    sid = execute(db, "INSERT INTO servers (name, role, address, port, ssh_user, connection,"
                      " backup_server_id, local_pool_path, vars_json) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                  (f["name"], f["role"], f["address"], f["port"], f["ssh_user"], f["connection"],
                   f["backup_server_id"], f["local_pool_path"], f["vars_json"]))
    for pool in pools:
        create_pool(db, {"server_id": sid, **pool})
    return get_server(db, sid)


def _judged(db, cur, data, admin):
    """The validated columns of `cur` changed by `data` (Invalid/Forbidden naming the field)."""
    role = data.get("role") or cur["role"]
    if role != cur["role"] and role in ROLES:
        # Before the other fields: what depends on the old role is what the person must act on first.
        problem = role_change_problem(db, cur)
        if problem:
            raise Invalid(problem, "role")
    f = _server_fields(db, data, cur, admin=admin)
    if f["name"] != cur["name"] and query(db, "SELECT id FROM servers WHERE name=%s", (f["name"],), one=True):
        raise Invalid(_("a server named %(name)s exists", name=f['name']), "name")
    _check_move(db, cur, f)
    return f


def update_server(db, server_id, data, admin=False, dry_run=False):
    """Change a server; dry_run: only judge `data` (nothing written, None). A new connection or role
    marks it "needs setup" (edit_server queues it); a new address or port drops the host key pinned
    for the old endpoint (the new one is pinned by a person: Test connection, Trust this key)."""
    cur = get_server(db, server_id)
    f = _judged(db, cur, data, admin)
    if dry_run:
        return None
    execute(db, "UPDATE servers SET name=%s, role=%s, address=%s, port=%s, ssh_user=%s, connection=%s,"
                " backup_server_id=%s, local_pool_path=%s, vars_json=%s WHERE id=%s",
            (f["name"], f["role"], f["address"], f["port"], f["ssh_user"], f["connection"],
             f["backup_server_id"], f["local_pool_path"], f["vars_json"], server_id))
    if f["name"] != cur["name"]:
        refresh_sort_keys(db, server_id)   # its archives' copy of its name (the archives list's sorts)
    if needs_setup(cur, f):
        execute(db, "UPDATE servers SET setup_status='needs setup' WHERE id=%s", (server_id,))
    if cur["role"] == "backup_server" and f["role"] == "client":
        # Nothing is in them (role_change_problem): a client has no pools. Their directories stay on the host.
        execute(db, "DELETE FROM storage_pools WHERE server_id=%s", (server_id,))
    if cur["connection"] == "ssh" and (f["address"], f["port"]) != (cur["address"], cur["port"]):
        _forget_old_endpoint(db, cur)
    if cur["role"] == f["role"] == "backup_server":
        # Same repositories reached by a new address/port/user: keep the shown locations what clients use.
        settings = by_contract(contract.server_settings, f["name"], backup_server_vars(db, {**cur, **f}))
        for repo in query(db, "SELECT r.id, c.name AS client, b.name, p.path AS pool_path"
                              " FROM repositories r JOIN backup_jobs b ON b.id=r.backup_job_id"
                              " JOIN servers c ON c.id=b.client_id LEFT JOIN storage_pools p ON p.id=b.pool_id"
                              " WHERE r.server_id=%s", (server_id,)):
            pool_path = repo["pool_path"] or settings["pools"][0]["path"]
            location = contract.ssh_url(settings["user"], settings["ssh_host"], settings["ssh_port"],
                                        f"{pool_path}/{repo['client']}/{repo['name']}")
            execute(db, "UPDATE repositories SET location=%s WHERE id=%s", (location, repo["id"]))
    return get_server(db, server_id)


def _forget_old_endpoint(db, cur):
    """The host key pinned for the endpoint `cur` left, unless another server still uses that
    endpoint through the same known_hosts file (the same host under two names, a port forward...)."""
    known_hosts = probe.known_hosts_file(cur["vars"])
    for other in query(db, "SELECT vars_json FROM servers WHERE address=%s AND port=%s AND connection='ssh'"
                           " AND id<>%s", (cur["address"], cur["port"], cur["id"])):
        if probe.known_hosts_file(json.loads(other["vars_json"] or "{}")) == known_hosts:
            return False
    return probe.forget_host_key(cur["address"], cur["port"], cur["vars"])


class ConnectionFailed(Invalid):
    """Test connection failed for the edited connection: nothing saved. `result` is the probe's verdict."""

    def __init__(self, result):
        super().__init__(f"not saved: the connection test failed ({result['title']}): {result['message']}")
        self.result = result


def _probe_data(db, cur, f):
    """What the probe takes for the server as edited: its new connection, and a backup server's
    pools (checked on the host it now points to)."""
    data = {"name": f["name"], "role": f["role"], "address": f["address"], "port": f["port"],
            "ssh_user": f["ssh_user"]}
    if f["role"] == "backup_server":
        data["pools"] = [{"name": p["name"], "path": p["path"]}
                         for p in query(db, "SELECT name, path FROM storage_pools WHERE server_id=%s ORDER BY id",
                                        (cur["id"],))]
    return data


def test_edit(db, server_id, data, admin=False):
    """Test connection for a server as `data` would change it (nothing saved), with the key and
    known_hosts its saved (or, for an admin, new) vars name: the add-server wizard's probe."""
    cur = get_server(db, server_id)
    f = _judged(db, cur, data, admin)
    if f["connection"] != "ssh":
        raise Invalid(_("a local server runs on the worker host itself: there is no connection to test"),
                      "connection")
    return probe.test_connection(_probe_data(db, cur, f), saved_vars=json.loads(f["vars_json"]))


def trust_edit(db, server_id, data, fingerprint, admin=False):
    """Trust this key for the server's edited endpoint (probe.trust_host_key: only while none is pinned)."""
    cur = get_server(db, server_id)
    f = _judged(db, cur, data, admin)
    return probe.trust_host_key(_probe_data(db, cur, f), fingerprint, saved_vars=json.loads(f["vars_json"]))


def edit_server(db, r, server_id, data, user, admin=False, test=True, setup=True):
    """Change a server as an operator does from its page: when the connection changes, Test
    connection first (test=True: a failure raises ConnectionFailed, nothing saved), then save, then
    queue its setup (setup=True) when its connection or role changed. -> (server, probe result or
    None, setup job id or None)."""
    cur = get_server(db, server_id)
    f = _judged(db, cur, data, admin)
    changed = needs_setup(cur, f)
    result = None
    if test and f["connection"] == "ssh" and any(f[k] != cur[k] for k in CONNECTION_FIELDS):
        result = probe.test_connection(_probe_data(db, cur, f), saved_vars=json.loads(f["vars_json"]))
        if not result["ok"]:
            raise ConnectionFailed(result)
    server = update_server(db, server_id, data, admin=admin)
    job = setup_server(db, r, server_id, user) if setup and changed else None
    return server, result, job


def deletion(db, server_id):
    """What deleting a server takes with it in the service: its backup jobs (their archive rows,
    runs' links), its pools. Repositories on a backup server are never touched."""
    get_server(db, server_id)
    n = lambda sql: query(db, sql, (server_id,), one=True)["n"]   # noqa: E731
    return {"backup_jobs": n("SELECT COUNT(*) AS n FROM backup_jobs WHERE client_id=%s"),
            "archives": n("SELECT COUNT(*) AS n FROM archives a JOIN repositories r ON r.id=a.repository_id"
                          " WHERE r.client_id=%s"),
            "pools": n("SELECT COUNT(*) AS n FROM storage_pools WHERE server_id=%s"),
            "clients": n("SELECT COUNT(*) AS n FROM servers WHERE backup_server_id=%s")}


def delete_server(db, server_id):
    get_server(db, server_id)
    if query(db, "SELECT id FROM servers WHERE backup_server_id=%s LIMIT 1", (server_id,), one=True):
        raise Invalid(_("clients still use this backup server; move or delete them first"))
    if query(db, "SELECT id FROM repositories WHERE server_id=%s LIMIT 1", (server_id,), one=True):
        raise Invalid(_("backup jobs keep repositories on this backup server; delete them first"))
    execute(db, "DELETE FROM servers WHERE id=%s", (server_id,))


def setup_server(db, r, server_id, user):
    s = get_server(db, server_id)
    ids = [s["id"]]
    if s["role"] == "client" and s["backup_server_id"]:
        ids.append(s["backup_server_id"])
    elif s["role"] == "backup_server":
        ids += [c["id"] for c in query(db, "SELECT id FROM servers WHERE backup_server_id=%s", (server_id,))]
    names = [query(db, "SELECT name FROM servers WHERE id=%s", (i,), one=True)["name"] for i in ids]
    return q.create_job(db, r, "setup", {"limit": names, "server_ids": ids}, server_id=server_id, user=user)


def server_stats(db, server_id):
    """The server's last 100 system stats (collect_stats.yml), newest first."""
    get_server(db, server_id)
    rows = query(db, "SELECT collected_at, data_json FROM server_stats WHERE server_id=%s"
                     " ORDER BY collected_at DESC LIMIT 100", (server_id,))
    return [{"collected_at": x["collected_at"], "data": json.loads(x["data_json"])} for x in rows]


def collect_stats(db, r, server_id, user):
    s = get_server(db, server_id)
    return q.create_job(db, r, "collect_stats", {"limit": [s["name"]]}, server_id=server_id, user=user)
