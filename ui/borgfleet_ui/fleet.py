"""Fleet operations shared by the REST API and the pages: validation, rows, queued runs.

Raises Invalid (-> 400), Forbidden (-> 403) and NotFound (-> 404); callers turn them into responses.
"""
import json
import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from flask import current_app

from . import queue as q
from . import secret_store
from .contract import ContractError, contract
from .db import execute, query

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")          # contract: backup/host names
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# What a backup, pool, retention or database is: the collection's contract (contract.py), never
# re-stated here. Only what is the service's own lives below: no database password (the service
# would keep it in clear), one database per job, schedules, time zones.
MAX_LIMIT = 200


class Invalid(ValueError):
    pass


class NotFound(LookupError):
    pass


class Forbidden(PermissionError):
    """The caller's role may not make this change (-> 403)."""


def _get(d, key, default=None, required=False):
    if key not in d or d[key] is None:
        if required and default is None:
            raise Invalid(f"{key} is required")
        return default
    return d[key]


def _match(regex, value, what):
    if not isinstance(value, str) or not regex.fullmatch(value):
        raise Invalid(f"{what} {value!r} is not valid")
    return value


def _int(value, what, lo, hi):
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise Invalid(f"{what} must be a number") from None
    if not lo <= v <= hi:
        raise Invalid(f"{what} must be between {lo} and {hi}")
    return v


def _abs_path(p, what):
    if not isinstance(p, str) or not p.startswith("/") or "\n" in p or "\0" in p:
        raise Invalid(f"{what} must be an absolute path")
    return p


def page_args(args):
    """limit + before (a keyset cursor: the last id of the previous page)."""
    limit = _int(args.get("limit", 50), "limit", 1, MAX_LIMIT)
    before = args.get("before")
    return limit, (_int(before, "before", 0, 2**62) if before not in (None, "") else None)


# --- servers ---

SERVER_COLS = ("id, name, role, address, port, ssh_user, connection, backup_server_id, local_pool_path,"
               " vars_json, setup_status, setup_at, created_at")


def server_out(row):
    row = dict(row)
    row["vars"] = json.loads(row.pop("vars_json") or "{}")
    return row


def list_servers(db, role=None, limit=50, before=None):
    sql, args = f"SELECT {SERVER_COLS} FROM servers WHERE 1=1", []
    if role:
        sql += " AND role=%s"
        args.append(_match(re.compile("client|backup_server"), role, "role"))
    if before:
        sql += " AND id < %s"
        args.append(before)
    sql += " ORDER BY id DESC LIMIT %s"
    args.append(limit)
    return [server_out(r) for r in query(db, sql, args)]


def get_server(db, server_id):
    row = query(db, f"SELECT {SERVER_COLS} FROM servers WHERE id=%s", (server_id,), one=True)
    if not row:
        raise NotFound(f"server {server_id} not found")
    return server_out(row)


def _host(value, what):
    """A host name, IPv4 or IPv6 address, as the collection's contract accepts it (never an option)."""
    problem = contract.host_problem(value)
    if problem:
        raise Invalid(f"{what} {value!r} {problem}")
    return value


def check_vars(vars_, role, connection):
    """The validated extra vars of a server: the contract's allowlist (HOST_VARS), each with its check."""
    return _contract(contract.check_host_vars, vars_, role, connection)


def _server_fields(db, data, current=None, admin=False):
    cur = current or {}
    out = {}
    out["name"] = _match(NAME_RE, _get(data, "name", cur.get("name"), required=True), "name")
    out["role"] = _get(data, "role", cur.get("role"), required=True)
    if out["role"] not in ("client", "backup_server"):
        raise Invalid("role must be client or backup_server")
    out["connection"] = _get(data, "connection", cur.get("connection", "ssh"))
    if out["connection"] not in ("ssh", "local"):
        raise Invalid("connection must be ssh or local")
    # A local client is the worker host itself, backed up (and restored) as the service's user:
    # whoever adds one can read any file there, the service's key file included.
    if out["connection"] == "local" and cur.get("connection") != "local" and not admin:
        raise Forbidden("only an admin can add a local server (connection local runs on the worker host itself)")
    out["address"] = _host(_get(data, "address", cur.get("address", "127.0.0.1")), "address")
    out["port"] = _int(_get(data, "port", cur.get("port", 22)), "port", 1, 65535)
    out["ssh_user"] = _match(USER_RE, _get(data, "ssh_user", cur.get("ssh_user", "root")), "ssh_user")
    bsid = _get(data, "backup_server_id", cur.get("backup_server_id"))
    lpp = _get(data, "local_pool_path", cur.get("local_pool_path"))
    if out["role"] == "client":
        if bsid is None and lpp is None:
            raise Invalid("a client needs backup_server_id, or local_pool_path for local repositories")
        if bsid is not None:
            bs = query(db, "SELECT role FROM servers WHERE id=%s", (bsid,), one=True)
            if not bs or bs["role"] != "backup_server":
                raise Invalid(f"backup_server_id {bsid} is not a backup server")
            lpp = None
        else:
            lpp = _abs_path(lpp, "local_pool_path")
    else:
        bsid, lpp = None, None
    out["backup_server_id"], out["local_pool_path"] = bsid, lpp
    old_vars = cur.get("vars") or {}
    vars_ = _get(data, "vars", old_vars)
    # Extra vars reach ssh and Ansible on the worker host: only admins set or change them.
    if vars_ != old_vars and not admin:
        raise Forbidden("only an admin can set or change a server's extra vars")
    out["vars_json"] = json.dumps(check_vars(vars_, out["role"], out["connection"]))
    return out


def _check_move(db, cur, f):
    """A server's repositories live at <pool>/<client name>/<backup> on its backup server (or under
    its local pool path): renaming or moving a client that has some would strand its archives."""
    if cur["role"] == "client":
        n = query(db, "SELECT COUNT(*) AS n FROM backup_jobs WHERE client_id=%s", (cur["id"],), one=True)["n"]
        if n:
            for col, what in (("name", "renamed"), ("role", "turned into a backup server"),
                              ("backup_server_id", "moved to another backup server"),
                              ("local_pool_path", "moved to another place")):
                if f[col] != cur[col]:
                    raise Invalid(f"client {cur['name']} has {n} backup job(s) whose repositories are named after"
                                  f" it and live on its current backup server: it cannot be {what}"
                                  " (its archives would become unreachable); delete its backup jobs first,"
                                  " or add a new client")
    elif f["role"] != cur["role"] and query(db, "SELECT id FROM servers WHERE backup_server_id=%s LIMIT 1",
                                            (cur["id"],), one=True):
        raise Invalid(f"backup server {cur['name']} has clients: it cannot become a client;"
                      " move or delete them first")
    elif query(db, "SELECT id FROM repositories WHERE server_id=%s LIMIT 1", (cur["id"],), one=True):
        # The repositories belong to the account running borg serve; another account cannot open them.
        # (Its name, address and port may change: repositories are found by pool, client and backup.)
        old_user = cur["vars"].get("borgfleet_server_user", "borg")
        if json.loads(f["vars_json"]).get("borgfleet_server_user", "borg") != old_user:
            raise Invalid(f"backup server {cur['name']} holds repositories owned by {old_user}:"
                          " borgfleet_server_user cannot change while clients have backup jobs there")


def create_server(db, data, admin=False):
    f = _server_fields(db, data, admin=admin)
    if query(db, "SELECT id FROM servers WHERE name=%s", (f["name"],), one=True):
        raise Invalid(f"a server named {f['name']} exists")
    pools = _get(data, "pools", []) or []
    if pools:
        if f["role"] != "backup_server":
            raise Invalid("storage pools belong to backup servers")
        # All of them checked before the server row exists: a refused pool leaves nothing behind.
        server = {"id": None, "address": f["address"], "port": f["port"], "vars_json": f["vars_json"]}
        hv = dict(_backup_server_vars(db, server), borgfleet_storage_pools=pools)
        _contract(contract.server_settings, f["name"], hv)
    sid = execute(db, "INSERT INTO servers (name, role, address, port, ssh_user, connection,"
                      " backup_server_id, local_pool_path, vars_json) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                  (f["name"], f["role"], f["address"], f["port"], f["ssh_user"], f["connection"],
                   f["backup_server_id"], f["local_pool_path"], f["vars_json"]))
    for pool in pools:
        create_pool(db, {"server_id": sid, **pool})
    return get_server(db, sid)


def update_server(db, server_id, data, admin=False):
    cur = get_server(db, server_id)
    f = _server_fields(db, data, cur, admin=admin)
    if f["name"] != cur["name"] and query(db, "SELECT id FROM servers WHERE name=%s", (f["name"],), one=True):
        raise Invalid(f"a server named {f['name']} exists")
    _check_move(db, cur, f)
    execute(db, "UPDATE servers SET name=%s, role=%s, address=%s, port=%s, ssh_user=%s, connection=%s,"
                " backup_server_id=%s, local_pool_path=%s, vars_json=%s WHERE id=%s",
            (f["name"], f["role"], f["address"], f["port"], f["ssh_user"], f["connection"],
             f["backup_server_id"], f["local_pool_path"], f["vars_json"], server_id))
    if cur["role"] == "backup_server":
        # Same repositories reached by a new address/port/user: keep the shown locations what clients use.
        settings = _contract(contract.server_settings, f["name"], _backup_server_vars(db, {**cur, **f}))
        for repo in query(db, "SELECT r.id, c.name AS client, b.name, p.path AS pool_path"
                              " FROM repositories r JOIN backup_jobs b ON b.id=r.backup_job_id"
                              " JOIN servers c ON c.id=b.client_id LEFT JOIN storage_pools p ON p.id=b.pool_id"
                              " WHERE r.server_id=%s", (server_id,)):
            pool_path = repo["pool_path"] or settings["pools"][0]["path"]
            location = contract.ssh_url(settings["user"], settings["ssh_host"], settings["ssh_port"],
                                        f"{pool_path}/{repo['client']}/{repo['name']}")
            execute(db, "UPDATE repositories SET location=%s WHERE id=%s", (location, repo["id"]))
    return get_server(db, server_id)


def delete_server(db, server_id):
    get_server(db, server_id)
    if query(db, "SELECT id FROM servers WHERE backup_server_id=%s LIMIT 1", (server_id,), one=True):
        raise Invalid("clients still use this backup server; move or delete them first")
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


def collect_stats(db, r, server_id, user):
    s = get_server(db, server_id)
    return q.create_job(db, r, "collect_stats", {"limit": [s["name"]]}, server_id=server_id, user=user)


# --- storage pools ---

def list_pools(db, server_id=None):
    if server_id:
        return query(db, "SELECT * FROM storage_pools WHERE server_id=%s ORDER BY id", (server_id,))
    return query(db, "SELECT * FROM storage_pools ORDER BY id LIMIT 1000")


def _backup_server_vars(db, server, new_pool=None):
    """A backup server's variables as the inventory plugin hands them to Ansible (saved vars win)."""
    pools = [{"name": p["name"], "path": p["path"]} for p in
             query(db, "SELECT name, path FROM storage_pools WHERE server_id=%s ORDER BY id", (server["id"],))]
    hv = {"ansible_host": server["address"], "ansible_port": server["port"],
          "borgfleet_storage_pools": pools + ([new_pool] if new_pool else [])}
    hv.update(json.loads(server["vars_json"] or "{}"))
    return hv


def _contract(rule, *args, **kwargs):
    try:
        return rule(*args, **kwargs)
    except ContractError as err:
        raise Invalid(str(err)) from None


def create_pool(db, data):
    sid = _get(data, "server_id", required=True)
    s = query(db, "SELECT * FROM servers WHERE id=%s", (sid,), one=True)
    if not s or s["role"] != "backup_server":
        raise Invalid("storage pools belong to backup servers")
    pool = {"name": _get(data, "name", "main"), "path": _get(data, "path", required=True)}
    # The server's pools with this one, as the playbooks will see them: names, paths, no nesting.
    settings = _contract(contract.server_settings, s["name"], _backup_server_vars(db, s, pool))
    path = next(p["path"] for p in settings["pools"] if p["name"] == pool["name"])
    pid = execute(db, "INSERT INTO storage_pools (server_id, name, path) VALUES (%s,%s,%s)",
                  (sid, pool["name"], path))
    return query(db, "SELECT * FROM storage_pools WHERE id=%s", (pid,), one=True)


def delete_pool(db, pool_id):
    if not query(db, "SELECT id FROM storage_pools WHERE id=%s", (pool_id,), one=True):
        raise NotFound(f"pool {pool_id} not found")
    if query(db, "SELECT id FROM backup_jobs WHERE pool_id=%s LIMIT 1", (pool_id,), one=True):
        raise Invalid("backup jobs use this pool")
    execute(db, "DELETE FROM storage_pools WHERE id=%s", (pool_id,))


# --- backup jobs ---

BJ_SELECT = ("SELECT b.id, b.client_id, c.name AS client_name, b.name, b.paths_json, b.exclude_json,"
             " b.databases_json, b.compression, b.retention_json, b.pool_id, b.schedule, b.timezone, b.enabled,"
             " b.next_run_at, b.last_run_at, b.verify_schedule, b.verify_next_run_at, b.verify_last_run_at,"
             " b.created_at, r.id AS repository_id, r.location"
             " FROM backup_jobs b JOIN servers c ON c.id=b.client_id"
             " LEFT JOIN repositories r ON r.backup_job_id=b.id")


def bj_out(row):
    row = dict(row)
    row["paths"] = json.loads(row.pop("paths_json"))
    row["exclude"] = json.loads(row.pop("exclude_json"))
    row["databases"] = json.loads(row.pop("databases_json") or "[]")
    row["verifiable"] = _verifiable(row["databases"])
    row["retention"] = json.loads(row.pop("retention_json") or "null")
    row["enabled"] = bool(row["enabled"])
    return row   # the passphrase is write-only: never selected


def list_backup_jobs(db, client_id=None, limit=50, before=None):
    sql, args = BJ_SELECT + " WHERE 1=1", []
    if client_id:
        sql += " AND b.client_id=%s"
        args.append(client_id)
    if before:
        sql += " AND b.id < %s"
        args.append(before)
    sql += " ORDER BY b.id DESC LIMIT %s"
    args.append(limit)
    return [bj_out(r) for r in query(db, sql, args)]


def get_backup_job(db, bj_id):
    row = query(db, BJ_SELECT + " WHERE b.id=%s", (bj_id,), one=True)
    if not row:
        raise NotFound(f"backup job {bj_id} not found")
    return bj_out(row)


def next_run(schedule, tz, after=None):
    """Next due time (naive UTC) of a cron expression evaluated in its time zone (DST-aware)."""
    zone = ZoneInfo(tz)
    base = (after or datetime.now(timezone.utc)).astimezone(zone)
    nxt = croniter(schedule, base).get_next(datetime)
    return nxt.astimezone(timezone.utc).replace(tzinfo=None)


def _bj_fields(db, data, cur=None):
    """Validated columns of a backup job, its client row and the backup as the collection resolves it."""
    cur = cur or {}
    out = {}
    out["client_id"] = _get(data, "client_id", cur.get("client_id"), required=True)
    client = query(db, "SELECT * FROM servers WHERE id=%s", (out["client_id"],), one=True)
    if not client or client["role"] != "client":
        raise Invalid("client_id must name a client")
    name = _get(data, "name", cur.get("name"), required=True)
    passphrase = data.get("passphrase")
    if passphrase is None and cur.get("passphrase"):
        out["passphrase"] = cur["passphrase"]   # unchanged: the stored (encrypted) value stays
    else:
        if not isinstance(passphrase, str) or not 8 <= len(passphrase) <= 1024:
            raise Invalid("passphrase is required (8 to 1024 characters)")
        out["passphrase"] = secret_store.encrypt(current_app.config, passphrase)
    pool_id = _get(data, "pool_id", cur.get("pool_id"))
    pool_name = None
    if pool_id is not None:
        pool = query(db, "SELECT server_id, name FROM storage_pools WHERE id=%s", (pool_id,), one=True)
        if not pool or pool["server_id"] != client["backup_server_id"]:
            raise Invalid("pool_id must be a pool of the client's backup server")
        pool_name = pool["name"]
    out["pool_id"] = pool_id
    databases = _get(data, "databases", cur.get("databases", []))
    retention = _get(data, "retention", cur.get("retention"))
    # The backup exactly as the inventory plugin will hand it to the playbooks: the collection's
    # own rules decide (same message as a playbook run would print).
    backup = {"name": name, "paths": _get(data, "paths", cur.get("paths", [])),
              "exclude": _get(data, "exclude", cur.get("exclude", [])),
              "compression": _get(data, "compression", cur.get("compression", "lz4")),
              "passphrase": passphrase or "(stored)", "retention": retention,
              "databases": databases or None, "pool": pool_name}
    resolved = _resolve_backup(db, client, backup)
    _databases(databases)
    out["name"] = resolved["name"]
    out["databases_json"] = json.dumps(databases) if databases else None
    out["paths_json"] = json.dumps(resolved["paths"])
    out["exclude_json"] = json.dumps(resolved["exclude"])
    out["compression"] = resolved["compression"]
    out["retention_json"] = json.dumps(retention) if retention is not None else None
    schedule = _get(data, "schedule", cur.get("schedule"))
    tz = _get(data, "timezone", cur.get("timezone", "UTC"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise Invalid(f"unknown time zone {tz!r}") from None
    # "" clears a schedule (null keeps the current one, as for every field).
    if schedule not in (None, "") and (not isinstance(schedule, str) or not croniter.is_valid(schedule)):
        raise Invalid(f"schedule {schedule!r} is not a cron expression")
    out["schedule"], out["timezone"] = schedule or None, tz
    out["enabled"] = bool(_get(data, "enabled", cur.get("enabled", True)))
    out["next_run_at"] = next_run(schedule, tz) if schedule and out["enabled"] else None
    verify = _get(data, "verify_schedule", cur.get("verify_schedule"))
    if verify not in (None, "") and (not isinstance(verify, str) or not croniter.is_valid(verify)):
        raise Invalid(f"verify_schedule {verify!r} is not a cron expression")
    if verify and not _verifiable(databases):
        raise Invalid("verify_schedule needs a database backup taken from a snapshot (method snapshot or "
                      "auto): a dump holds SQL, there is no data directory to start")
    out["verify_schedule"] = verify or None
    out["verify_next_run_at"] = next_run(verify, tz) if verify and out["enabled"] else None
    return out, client, resolved


def _databases(value):
    """What only the service refuses in `databases` (the contract checked the rest)."""
    for d in value or []:
        if "login_password" in d:
            raise Invalid("the service keeps no database password: use socket/peer authentication or a "
                          "defaults_file on the client")
    return value


def _verifiable(databases):
    """What verify.yml verifies: database backups whose archives hold a data directory."""
    return bool(databases) and databases[0].get("method", "auto") != "dump"


def _resolve_backup(db, client, backup):
    """One backup of a client resolved by the collection's contract, from the variables the
    inventory plugin would give Ansible (client, its backup server and that server's pools)."""
    if client["backup_server_id"] is None:
        hostvars = {client["name"]: {"borgfleet_backup_server": "local"}}
        return _contract(contract.resolve_backups, [backup], client["name"], hostvars, [],
                         local_pool_path=client["local_pool_path"], server="local")[0]
    server = query(db, "SELECT * FROM servers WHERE id=%s", (client["backup_server_id"],), one=True)
    hostvars = {client["name"]: {"borgfleet_backup_server": server["name"]},
                server["name"]: _backup_server_vars(db, server)}
    return _contract(contract.resolve_backups, [backup], client["name"], hostvars, [server["name"]])[0]


def create_backup_job(db, r, data):
    f, client, resolved = _bj_fields(db, data)
    if query(db, "SELECT id FROM backup_jobs WHERE client_id=%s AND name=%s", (f["client_id"], f["name"]), one=True):
        raise Invalid(f"{client['name']} already has a backup named {f['name']}")
    cols = list(f)
    bj_id = execute(db, f"INSERT INTO backup_jobs ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                    [f[c] for c in cols])
    execute(db, "INSERT INTO repositories (backup_job_id, client_id, server_id, location) VALUES (%s,%s,%s,%s)",
            (bj_id, f["client_id"], client["backup_server_id"], resolved["repository"]))
    # The repository is initialised by setup.yml: until it runs again the backup cannot run.
    execute(db, "UPDATE servers SET setup_status='needs setup' WHERE id=%s", (f["client_id"],))
    q.wake_scheduler(r)
    return get_backup_job(db, bj_id)


def update_backup_job(db, r, bj_id, data):
    cur = get_backup_job(db, bj_id)
    cur["passphrase"] = query(db, "SELECT passphrase FROM backup_jobs WHERE id=%s", (bj_id,), one=True)["passphrase"]
    for fixed in ("client_id", "name", "pool_id"):
        if fixed in data and data[fixed] != cur[fixed]:
            raise Invalid(f"{fixed} cannot change (it names the repository); create a new backup job")
    f, _, _ = _bj_fields(db, data, cur)
    cols = [c for c in f if c not in ("client_id", "name", "pool_id")]
    execute(db, f"UPDATE backup_jobs SET {', '.join(c + '=%s' for c in cols)} WHERE id=%s",
            [f[c] for c in cols] + [bj_id])
    q.wake_scheduler(r)
    return get_backup_job(db, bj_id)


def delete_backup_job(db, r, bj_id):
    get_backup_job(db, bj_id)
    execute(db, "DELETE FROM backup_jobs WHERE id=%s", (bj_id,))
    q.wake_scheduler(r)


def _queue_for_backup(db, r, kind, bj, user):
    """Queue one playbook run for one backup of one client, holding that repository's lock."""
    return q.create_job(db, r, kind,
                        {"limit": [bj["client_name"]], "extravars": {"borgfleet_backup": bj["name"]},
                         "repository_id": bj["repository_id"]},
                        server_id=bj["client_id"], backup_job_id=bj["id"], user=user,
                        lock=f"{bj['client_name']}/{bj['name']}")


def run_backup(db, r, bj_id, user):
    return _queue_for_backup(db, r, "backup", get_backup_job(db, bj_id), user)


def run_verify(db, r, bj_id, user):
    """Queue verify.yml for one database backup: its newest archive started, queried, torn down."""
    bj = get_backup_job(db, bj_id)
    if not bj["verifiable"]:
        raise Invalid(f"backup job {bj['name']} is not a database backup taken from a snapshot: nothing to verify")
    return _queue_for_backup(db, r, "verify", bj, user)


def refresh_archives(db, r, bj_id, user):
    return _queue_for_backup(db, r, "list_archives", get_backup_job(db, bj_id), user)


# --- archives ---

ARCHIVE_COLS = ("a.id, a.name, a.start_at, a.end_at, a.duration, a.nfiles, a.original_size,"
                " a.compressed_size, a.deduplicated_size, a.repository_id, r.location AS repository,"
                " b.id AS backup_job_id, b.name AS backup_name, c.name AS client_name,"
                " COALESCE(s.name, 'local') AS server_name")
ARCHIVE_JOINS = (" JOIN repositories r ON r.id=a.repository_id"
                 " JOIN backup_jobs b ON b.id=r.backup_job_id JOIN servers c ON c.id=r.client_id"
                 " LEFT JOIN servers s ON s.id=r.server_id")
ARCHIVE_SELECT = f"SELECT {ARCHIVE_COLS} FROM archives a{ARCHIVE_JOINS}"


def list_archives(db, backup_job_id=None, limit=50, before=None):
    # Page the archives table alone on its index first, then join the names onto those rows:
    # joining first lets the optimizer sort the whole table.
    inner, args = "SELECT * FROM archives WHERE 1=1", []
    if backup_job_id:
        repo = query(db, "SELECT id FROM repositories WHERE backup_job_id=%s", (backup_job_id,), one=True)
        if not repo:
            return []
        inner += " AND repository_id=%s"   # a constant, so ix_archives_repo_id serves filter and order
        args.append(repo["id"])
    if before:
        inner += " AND id < %s"
        args.append(before)
    inner += " ORDER BY id DESC LIMIT %s"
    args.append(limit)
    return query(db, f"SELECT {ARCHIVE_COLS} FROM ({inner}) a{ARCHIVE_JOINS} ORDER BY a.id DESC", args)


def get_archive(db, archive_id):
    row = query(db, ARCHIVE_SELECT + " WHERE a.id=%s", (archive_id,), one=True)
    if not row:
        raise NotFound(f"archive {archive_id} not found")
    return row


def delete_archive(db, r, archive_id, user):
    a = get_archive(db, archive_id)
    return q.create_job(db, r, "delete_archive",
                        {"limit": [a["client_name"]],
                         "extravars": {"borgfleet_backup": a["backup_name"], "borgfleet_archive": a["name"]}},
                        server_id=None, backup_job_id=a["backup_job_id"], archive_id=archive_id, user=user,
                        lock=f"{a['client_name']}/{a['backup_name']}")


# --- jobs ---

JOB_COLS = ("j.id, j.seq, j.kind, j.status, j.server_id, s.name AS server_name, j.backup_job_id,"
            " b.name AS backup_name, j.archive_id, j.created_by, j.created_at, j.started_at, j.playbook_started_at,"
            " j.finished_at,"
            " j.worker, j.rc, j.error, j.result_json")


def job_out(row):
    row = dict(row)
    row["result"] = json.loads(row.pop("result_json") or "null")
    return row


def list_jobs(db, status=None, backup_job_id=None, limit=50, before=None):
    sql = (f"SELECT {JOB_COLS} FROM jobs j LEFT JOIN servers s ON s.id=j.server_id"
           " LEFT JOIN backup_jobs b ON b.id=j.backup_job_id WHERE 1=1")
    args = []
    if status:
        sql += " AND j.status=%s"
        args.append(status)
    if backup_job_id:
        sql += " AND j.backup_job_id=%s"
        args.append(backup_job_id)
    if before:
        sql += " AND j.seq < %s"
        args.append(before)
    sql += " ORDER BY j.seq DESC LIMIT %s"
    args.append(limit)
    return [job_out(r) for r in query(db, sql, args)]


def get_job(db, job_id):
    row = query(db, f"SELECT {JOB_COLS} FROM jobs j LEFT JOIN servers s ON s.id=j.server_id"
                    " LEFT JOIN backup_jobs b ON b.id=j.backup_job_id WHERE j.id=%s", (job_id,), one=True)
    if not row:
        raise NotFound(f"job {job_id} not found")
    return job_out(row)


def job_log(db, job_id, after=0, limit=1000):
    rows = query(db, "SELECT n, line FROM job_log WHERE job_id=%s AND n > %s ORDER BY n LIMIT %s",
                 (job_id, after, limit))
    return rows


def cancel_job(db, r, job_id):
    job = get_job(db, job_id)
    if job["status"] in q.FINAL:
        raise Invalid(f"job is already {job['status']}")
    r.set(q.cancel_key(job_id), "1", ex=86400)
    if job["status"] == "queued":
        # Not started: the worker skips rows already final.
        q.finish(db, job_id, "canceled", error="canceled by a user before it started")


# --- settings ---

def get_settings(db):
    return {r["name"]: r["value"] for r in query(db, "SELECT name, value FROM settings")}


def update_settings(db, data):
    allowed = {"app_name": re.compile(r"[^\n<>]{1,64}"), "stats_interval_minutes": re.compile(r"\d{1,4}")}
    for k, v in data.items():
        if k not in allowed:
            raise Invalid(f"unknown setting {k}")
        _match(allowed[k], str(v), k)
        execute(db, "INSERT INTO settings (name, value) VALUES (%s, %s) ON DUPLICATE KEY UPDATE value=VALUES(value)",
                (k, str(v)))
    return get_settings(db)
