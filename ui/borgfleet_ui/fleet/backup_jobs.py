"""Backup jobs: one backup of one client (its repository row too), validated by the collection's
contract exactly as the inventory plugin will hand it to the playbooks, and the runs queued for it."""
import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from flask import current_app

from .. import queue as q
from .. import secret_store
from ..contract import contract
from ..db import execute, query
from . import runs
from .common import Invalid, NotFound, by_contract, field, page_query
from .pools import backup_server_vars

BJ_SELECT = ("SELECT b.id, b.client_id, c.name AS client_name, b.name, b.paths_json, b.exclude_json,"
             " b.databases_json, b.compression, b.retention_json, b.pool_id, b.schedule, b.timezone, b.enabled,"
             " b.next_run_at, b.last_run_at, b.verify_schedule, b.verify_next_run_at, b.verify_last_run_at,"
             " b.prune_schedule, b.prune_next_run_at, b.prune_last_run_at, b.check_schedule, b.check_scope,"
             " b.check_verify_data, b.check_next_run_at, b.check_last_run_at,"
             " b.created_at, r.id AS repository_id, r.location"
             " FROM backup_jobs b JOIN servers c ON c.id=b.client_id"
             " LEFT JOIN repositories r ON r.backup_job_id=b.id")


def bj_out(row):
    row = dict(row)
    row["paths"] = json.loads(row.pop("paths_json"))
    row["exclude"] = json.loads(row.pop("exclude_json"))
    row["databases"] = json.loads(row.pop("databases_json") or "[]")
    row["verifiable"] = contract.verifiable(row["databases"])
    row["retention"] = json.loads(row.pop("retention_json") or "null")
    row["enabled"] = bool(row["enabled"])
    row["check_verify_data"] = bool(row["check_verify_data"])
    return row   # the passphrase is write-only: never selected


def list_backup_jobs(db, client_id=None, limit=50, before=None):
    sql, args = page_query(BJ_SELECT + " WHERE 1=1", [("b.client_id", client_id)], before, limit, key="b.id")
    return [bj_out(r) for r in query(db, sql, args)]


def get_backup_job(db, bj_id):
    row = query(db, BJ_SELECT + " WHERE b.id=%s", (bj_id,), one=True)
    if not row:
        raise NotFound(f"backup job {bj_id} not found")
    return bj_out(row)


def overview(db, bj_id):
    """A backup job with what its page shows: how many archives the service knows, its last runs,
    and the last run of each kind acting on its repository."""
    bj = get_backup_job(db, bj_id)
    bj["archives_count"] = query(db, "SELECT COUNT(*) AS n FROM archives WHERE repository_id=%s",
                                 (bj["repository_id"],), one=True)["n"]
    bj["runs"] = runs.list_jobs(db, backup_job_id=bj_id, limit=15)
    bj["last"] = {kind: (runs.list_jobs(db, backup_job_id=bj_id, kind=kind, limit=1) or [None])[0]
                  for kind in ("backup", "prune", "check", "verify")}
    return bj


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
    out["client_id"] = field(data, "client_id", cur.get("client_id"), required=True)
    client = query(db, "SELECT * FROM servers WHERE id=%s", (out["client_id"],), one=True)
    if not client or client["role"] != "client":
        raise Invalid("client_id must name a client")
    name = field(data, "name", cur.get("name"), required=True)
    passphrase = data.get("passphrase")
    if passphrase is None and cur.get("passphrase"):
        out["passphrase"] = cur["passphrase"]   # unchanged: the stored (encrypted) value stays
    else:
        if not isinstance(passphrase, str) or not 8 <= len(passphrase) <= 1024:
            raise Invalid("passphrase is required (8 to 1024 characters)")
        out["passphrase"] = secret_store.encrypt(current_app.config, passphrase)
    pool_id = field(data, "pool_id", cur.get("pool_id"))
    pool_name = None
    if pool_id is not None:
        pool = query(db, "SELECT server_id, name FROM storage_pools WHERE id=%s", (pool_id,), one=True)
        if not pool or pool["server_id"] != client["backup_server_id"]:
            raise Invalid("pool_id must be a pool of the client's backup server")
        pool_name = pool["name"]
    out["pool_id"] = pool_id
    databases = field(data, "databases", cur.get("databases", []))
    retention = field(data, "retention", cur.get("retention"))
    # The backup exactly as the inventory plugin will hand it to the playbooks: the collection's
    # own rules decide (same message as a playbook run would print).
    backup = {"name": name, "paths": field(data, "paths", cur.get("paths", [])),
              "exclude": field(data, "exclude", cur.get("exclude", [])),
              "compression": field(data, "compression", cur.get("compression", "lz4")),
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
    schedule = field(data, "schedule", cur.get("schedule"))
    tz = field(data, "timezone", cur.get("timezone", "UTC"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise Invalid(f"unknown time zone {tz!r}") from None
    # "" clears a schedule (null keeps the current one, as for every field).
    if schedule not in (None, "") and (not isinstance(schedule, str) or not croniter.is_valid(schedule)):
        raise Invalid(f"schedule {schedule!r} is not a cron expression")
    out["schedule"], out["timezone"] = schedule or None, tz
    out["enabled"] = bool(field(data, "enabled", cur.get("enabled", True)))
    out["next_run_at"] = next_run(schedule, tz) if schedule and out["enabled"] else None
    verify = _cron(data, cur, "verify_schedule")
    if verify and not contract.verifiable(databases):
        raise Invalid("verify_schedule needs a database backup taken from a snapshot (method snapshot or "
                      "auto): a dump holds SQL, there is no data directory to start")
    out["verify_schedule"] = verify or None
    out["verify_next_run_at"] = next_run(verify, tz) if verify and out["enabled"] else None
    prune = _cron(data, cur, "prune_schedule")
    if prune and resolved["retention"] is None:
        raise Invalid("prune_schedule needs a retention (without one nothing is ever pruned)")
    out["prune_schedule"] = prune
    out["prune_next_run_at"] = next_run(prune, tz) if prune and out["enabled"] else None
    out["check_schedule"] = _cron(data, cur, "check_schedule")
    out["check_next_run_at"] = next_run(out["check_schedule"], tz) if out["check_schedule"] and out["enabled"] else None
    out["check_scope"], out["check_verify_data"] = check_options(
        field(data, "check_scope", cur.get("check_scope", "all")),
        field(data, "check_verify_data", cur.get("check_verify_data", False)))
    return out, client, resolved


def _cron(data, cur, key):
    """A cron column: "" clears it, null keeps the current value."""
    value = field(data, key, cur.get(key))
    if value not in (None, "") and (not isinstance(value, str) or not croniter.is_valid(value)):
        raise Invalid(f"{key} {value!r} is not a cron expression")
    return value or None


CHECK_SCOPES = ("all", "repository", "archives")   # roles/check borgfleet_check_scope


def check_options(scope, verify_data):
    """(scope, verify_data) of a check: what borg check verifies (--repository-only, --archives-only
    or both) and whether it also reads and verifies every chunk (--verify-data)."""
    if scope not in CHECK_SCOPES:
        raise Invalid(f"check_scope must be one of {', '.join(CHECK_SCOPES)}")
    if not isinstance(verify_data, bool):
        raise Invalid("check_verify_data must be true or false")
    if verify_data and scope == "repository":
        # borg: --repository-only contradicts --verify-data (the data is read through the archives).
        raise Invalid("verify data reads every archive's chunks: check the archives too (scope all or archives)")
    return scope, verify_data


def _databases(value):
    """What only the service refuses in `databases` (the contract checked the rest)."""
    for d in value or []:
        if "login_password" in d:
            raise Invalid("the service keeps no database password: use socket/peer authentication or a "
                          "defaults_file on the client")
    return value


def _resolve_backup(db, client, backup):
    """One backup of a client resolved by the collection's contract, from the variables the
    inventory plugin would give Ansible (client, its backup server and that server's pools)."""
    if client["backup_server_id"] is None:
        hostvars = {client["name"]: {"borgfleet_backup_server": "local"}}
        return by_contract(contract.resolve_backups, [backup], client["name"], hostvars, [],
                           local_pool_path=client["local_pool_path"], server="local")[0]
    server = query(db, "SELECT * FROM servers WHERE id=%s", (client["backup_server_id"],), one=True)
    hostvars = {client["name"]: {"borgfleet_backup_server": server["name"]},
                server["name"]: backup_server_vars(db, server)}
    return by_contract(contract.resolve_backups, [backup], client["name"], hostvars, [server["name"]])[0]


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


def run(db, r, kind, bj_id, user, options=None):
    """Queue one run of a backup job's kind (backup, verify, list_archives, prune, prune_preview,
    check: kinds.py) for that one backup of that one client, under that repository's lock.

    options: for check, {scope, verify_data} instead of the job's own; for prune_preview,
    {retention} to preview instead of the saved one."""
    bj = get_backup_job(db, bj_id)
    options = options or {}
    extravars = {"borgfleet_backup": bj["name"]}
    params = {"limit": [bj["client_name"]], "repository_id": bj["repository_id"]}
    if kind == "verify" and not bj["verifiable"]:
        raise Invalid(f"backup job {bj['name']} is not a database backup taken from a snapshot: nothing to verify")
    if kind == "prune" and not bj["retention"]:
        raise Invalid(f"backup job {bj['name']} has no retention: nothing is ever pruned")
    if kind == "prune_preview":
        retention = options.get("retention", bj["retention"])
        if not retention:
            raise Invalid("give a retention to preview (this backup job has none saved)")
        # The collection's rule, its message; the playbook checks it again (contract.run_retention).
        params["retention"] = extravars["borgfleet_retention"] = by_contract(
            contract.check_retention, retention, bj["client_name"], bj["name"])
    if kind == "check":
        extravars["borgfleet_check_scope"], extravars["borgfleet_check_verify_data"] = check_options(
            options.get("scope", bj["check_scope"]), options.get("verify_data", bj["check_verify_data"]))
    params["extravars"] = extravars
    return q.create_job(db, r, kind, params,
                        server_id=bj["client_id"], backup_job_id=bj["id"], user=user,
                        repository=f"{bj['client_name']}/{bj['name']}")


def follow_up(db, r, kind, bj_id, archive_id=None):
    """Queue `kind` after a successful run of this backup job when the job asks for it (kinds.py
    `then`): a prune after each backup when it has a retention and no prune_schedule of its own.
    One not started yet already covers this backup (frequent backups never pile up prunes).
    index_archive: the archive the run made goes into the archive index. Returns the job id, or None."""
    if kind == "index_archive":
        from . import archive_index   # it imports this module
        return archive_index.queue_index(db, r, archive_id) if archive_id else None
    bj = get_backup_job(db, bj_id)
    if kind != "prune" or not bj["retention"] or bj["prune_schedule"]:
        return None
    if runs.list_jobs(db, backup_job_id=bj_id, kind=kind, limit=1, status="queued") or \
            runs.list_jobs(db, backup_job_id=bj_id, kind=kind, limit=1, status="waiting"):
        return None
    return run(db, r, kind, bj_id, None)
