"""Backup jobs: one backup of one client (its repository row too), validated by the collection's
contract exactly as the inventory plugin will hand it to the playbooks, and the runs queued for it."""
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from flask import current_app
from flask_babel import gettext as _

from .. import queue as q
from .. import secret_store
from ..contract import contract
from ..db import execute, query
from . import runs, servers
from .common import Invalid, ListArgs, Listing, NotFound, about, by_contract, field, list_query
from .pools import backup_server_vars
from .settings import default_timezone

BJ_COLS = ("b.id, b.client_id, c.name AS client_name, b.name, b.paths_json, b.exclude_json,"
           " b.databases_json, b.compression, b.retention_json, b.pool_id, b.schedule, b.timezone, b.enabled,"
           " b.next_run_at, b.last_run_at, b.verify_schedule, b.verify_next_run_at, b.verify_last_run_at,"
           " b.prune_schedule, b.prune_next_run_at, b.prune_last_run_at, b.check_schedule, b.check_scope,"
           " b.check_verify_data, b.check_next_run_at, b.check_last_run_at,"
           " b.created_at, r.id AS repository_id, r.location")
BJ_FROM = " FROM backup_jobs b JOIN servers c ON c.id=b.client_id LEFT JOIN repositories r ON r.backup_job_id=b.id"
BJ_SELECT = "SELECT " + BJ_COLS + BJ_FROM
# A time never set: after every real next run, before every real last run.
NEVER = "'9999-12-31'"
LISTING = Listing(
    source=BJ_FROM.strip(), key="b.id",
    sorts={"client": ("c.name", "asc"), "name": ("b.name", "asc"), "schedule": ("COALESCE(b.schedule, '')", "asc"),
           "next_run": (f"COALESCE(b.next_run_at, {NEVER})", "asc"),
           "last_run": ("COALESCE(b.last_run_at, '1000-01-01')", "desc")},
    search=("b.name", "c.name", "b.paths_json"),
    choices={"enabled": {"yes": "b.enabled=1", "no": "b.enabled=0"}}, ids={"client_id": "b.client_id"})


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


def list_backup_jobs(db, client_id=None, limit=50, before=None, largs=None):
    """A page of backup jobs, newest first, or as `largs` (ListArgs of LISTING) sorts and filters."""
    largs = largs or ListArgs("", "desc", "", {})
    if client_id:
        largs = largs._replace(filters={**largs.filters, "client_id": client_id})
    # STRAIGHT_JOIN: backup jobs first, in the order of their source. Left to itself the optimizer starts
    # from the servers' name index and sorts every joined row for a page of the newest 50 (5,000 jobs: 10x).
    sql, args = list_query(LISTING, "STRAIGHT_JOIN " + BJ_COLS, largs, before, limit)
    return [bj_out(r) for r in query(db, sql, args)]


def get_backup_job(db, bj_id):
    row = query(db, BJ_SELECT + " WHERE b.id=%s", (bj_id,), one=True)
    if not row:
        raise NotFound(_("backup job %(bj_id)s not found", bj_id=bj_id))
    return bj_out(row)


def get_backup_jobs(db, ids):
    """The backup jobs of these ids (those that exist), in one query."""
    if not ids:
        return []
    return [bj_out(row) for row in query(db, BJ_SELECT + f" WHERE b.id IN ({', '.join(['%s'] * len(ids))})", ids)]


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


def next_runs(schedule, tz, count=5, after=None):
    """The next `count` due times (naive UTC) of a schedule, each found by next_run from the one
    before it, as the scheduler finds them; the schedule and time zone checked as a backup job's."""
    check_cron(schedule, "schedule", required=True)
    check_timezone(tz)
    out, t = [], after or datetime.now(timezone.utc)
    for _n in range(count):
        nxt = next_run(schedule, tz, t)
        out.append(nxt)
        t = nxt.replace(tzinfo=timezone.utc)
    return out


def check_timezone(tz):
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise Invalid(_("unknown time zone %(tz)r", tz=tz), "timezone") from None
    return tz


def check_cron(value, key, required=False):
    """A cron expression, or None for "" and null (no schedule) unless required."""
    if value in (None, "") and not required:
        return None
    if not isinstance(value, str) or not croniter.is_valid(value):
        raise Invalid(_("%(key)s %(value)r is not a cron expression", key=key, value=value), key)
    return value


def get_client(db, client_id):
    """The server row of a backup job's client."""
    client = query(db, "SELECT * FROM servers WHERE id=%s", (client_id,), one=True)
    if not client or client["role"] != "client":
        raise Invalid(_("client_id must name a client"), "client_id")
    return client


def _bj_fields(db, data, cur=None, draft=False):
    """Validated columns of a backup job, its client row and the backup as the collection resolves it.
    A refusal names the field it is about (Invalid.field) where there is one. draft: everything but
    the passphrase, which the backup wizard asks last (no column for it then)."""
    cur = cur or {}
    out = {}
    with about("client_id"):
        out["client_id"] = field(data, "client_id", cur.get("client_id"), required=True)
        client = get_client(db, out["client_id"])
    with about("name"):
        name = field(data, "name", cur.get("name"), required=True)
        by_contract(contract.check_backup_name, name, client["name"])
    passphrase = data.get("passphrase")
    with about("passphrase"):
        if draft:
            passphrase = "(asked last)"
        elif passphrase is None and cur.get("passphrase"):
            out["passphrase"] = cur["passphrase"]   # unchanged: the stored (encrypted) value stays
        else:
            if not isinstance(passphrase, str) or not 8 <= len(passphrase) <= 1024:
                raise Invalid(_("passphrase is required (8 to 1024 characters)"))
            out["passphrase"] = secret_store.encrypt(current_app.config, passphrase)
    pool_id = field(data, "pool_id", cur.get("pool_id"))
    pool_name = None
    if pool_id is not None:
        pool = query(db, "SELECT server_id, name FROM storage_pools WHERE id=%s", (pool_id,), one=True)
        if not pool or pool["server_id"] != client["backup_server_id"]:
            raise Invalid(_("pool_id must be a pool of the client's backup server"), "pool_id")
        pool_name = pool["name"]
    out["pool_id"] = pool_id
    databases = field(data, "databases", cur.get("databases", []))
    retention = field(data, "retention", cur.get("retention"))
    backup = {"name": name, "paths": field(data, "paths", cur.get("paths", [])),
              "exclude": field(data, "exclude", cur.get("exclude", [])),
              "compression": field(data, "compression", cur.get("compression", "lz4")),
              "passphrase": passphrase or "(stored)", "retention": retention,
              "databases": databases or None, "pool": pool_name}
    # Each field by the contract's own check first, in the order it resolves a backup, so that a
    # refusal names its field (a form shows it there); then the whole backup, resolved.
    with about("databases"):
        checked_databases = by_contract(contract.check_databases, backup["databases"], client["name"], name)
        _databases(databases)
    with about("paths"):
        by_contract(contract.check_paths, backup["paths"], client["name"], name, required=not checked_databases)
    with about("exclude"):
        by_contract(contract.check_exclude, backup["exclude"], client["name"], name)
    with about("compression"):
        by_contract(contract.check_compression, backup["compression"], client["name"], name)
    with about("retention"):
        by_contract(contract.check_retention, retention, client["name"], name)
    # The backup exactly as the inventory plugin will hand it to the playbooks: the collection's
    # own rules decide (same message as a playbook run would print).
    resolved = _resolve_backup(db, client, backup)
    out["name"] = resolved["name"]
    out["databases_json"] = json.dumps(databases) if databases else None
    out["paths_json"] = json.dumps(resolved["paths"])
    out["exclude_json"] = json.dumps(resolved["exclude"])
    out["compression"] = resolved["compression"]
    out["retention_json"] = json.dumps(retention) if retention is not None else None
    schedule = field(data, "schedule", cur.get("schedule"))
    # A new backup job without a time zone takes the service's default one (Settings).
    tz = check_timezone(field(data, "timezone", cur.get("timezone") or default_timezone(db)))
    # "" clears a schedule (null keeps the current one, as for every field).
    out["schedule"], out["timezone"] = check_cron(schedule, "schedule"), tz
    schedule = out["schedule"]
    out["enabled"] = bool(field(data, "enabled", cur.get("enabled", True)))
    out["next_run_at"] = next_run(schedule, tz) if schedule and out["enabled"] else None
    verify = _cron(data, cur, "verify_schedule")
    if verify and not contract.verifiable(databases):
        raise Invalid(_("verify_schedule needs a database backup taken from a snapshot (method snapshot or "
                        "auto): a dump holds SQL, there is no data directory to start"), "verify_schedule")
    out["verify_schedule"] = verify or None
    out["verify_next_run_at"] = next_run(verify, tz) if verify and out["enabled"] else None
    prune = _cron(data, cur, "prune_schedule")
    if prune and resolved["retention"] is None:
        raise Invalid(_("prune_schedule needs a retention (without one nothing is ever pruned)"), "prune_schedule")
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
    return check_cron(field(data, key, cur.get(key)), key)


CHECK_SCOPES = ("all", "repository", "archives")   # roles/check borgfleet_check_scope


def check_options(scope, verify_data):
    """(scope, verify_data) of a check: what borg check verifies (--repository-only, --archives-only
    or both) and whether it also reads and verifies every chunk (--verify-data)."""
    if scope not in CHECK_SCOPES:
        raise Invalid(_("check_scope must be one of %(choices)s", choices=', '.join(CHECK_SCOPES)), "check_scope")
    if not isinstance(verify_data, bool):
        raise Invalid(_("check_verify_data must be true or false"), "check_verify_data")
    if verify_data and scope == "repository":
        # borg: --repository-only contradicts --verify-data (the data is read through the archives).
        raise Invalid(_("verify data reads every archive's chunks: check the archives too (scope all or archives)"),
                      "check_verify_data")
    return scope, verify_data


def _databases(value):
    """What only the service refuses in `databases` (the contract checked the rest)."""
    for d in value or []:
        if "login_password" in d:
            raise Invalid(_("the service keeps no database password: use socket/peer authentication or a "
                            "defaults_file on the client"))
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


def _name_free(db, client, name):
    if query(db, "SELECT id FROM backup_jobs WHERE client_id=%s AND name=%s", (client["id"], name), one=True):
        raise Invalid(_("%(client)s already has a backup named %(name)s", client=client['name'], name=name), "name")


def check_draft(db, data):
    """What create_backup_job checks, but the passphrase (the backup wizard checks each step with it):
    the backup as the collection resolves it (its repository, pool, paths...)."""
    f, client, resolved = _bj_fields(db, data, draft=True)
    _name_free(db, client, f["name"])
    return resolved


def create_backup_job(db, r, data, dry_run=False):
    """Add a backup job (and its repository row); dry_run: only judge `data` (nothing written, None)."""
    f, client, resolved = _bj_fields(db, data)
    _name_free(db, client, f["name"])
    if dry_run:
        return None
    cols = list(f)
    bj_id = execute(db, f"INSERT INTO backup_jobs ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                    [f[c] for c in cols])
    execute(db, "INSERT INTO repositories (backup_job_id, client_id, server_id, location) VALUES (%s,%s,%s,%s)",
            (bj_id, f["client_id"], client["backup_server_id"], resolved["repository"]))
    # The repository is initialised by setup.yml: until it runs again the backup cannot run.
    execute(db, "UPDATE servers SET setup_status='needs setup' WHERE id=%s", (f["client_id"],))
    q.wake_scheduler(r)
    return get_backup_job(db, bj_id)


def create_and_set_up(db, r, data, user):
    """create_backup_job, then the setup of its client queued at once (setup.yml creates the
    repository, so the backup can run without a separate step): (backup job, setup job id)."""
    bj = create_backup_job(db, r, data)
    return bj, servers.setup_server(db, r, bj["client_id"], user)


def update_backup_job(db, r, bj_id, data, dry_run=False):
    """Change a backup job; dry_run: only judge `data` (nothing written, None)."""
    cur = get_backup_job(db, bj_id)
    cur["passphrase"] = query(db, "SELECT passphrase FROM backup_jobs WHERE id=%s", (bj_id,), one=True)["passphrase"]
    for fixed in ("client_id", "name", "pool_id"):
        if fixed in data and data[fixed] != cur[fixed]:
            raise Invalid(_("%(fixed)s cannot change (it names the repository); create a new backup job",
                            fixed=fixed), fixed)
    f = _bj_fields(db, data, cur)[0]
    if dry_run:
        return None
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
    return q.create_job(db, r, kind, **run_of(kind, get_backup_job(db, bj_id), user, options))


def run_of(kind, bj, user=None, options=None):
    """What queue.create_job(s) takes for one run of `kind` of the backup job `bj` (a row of
    get_backup_job): its params, client, backup job, user and repository lock. Raises Invalid when
    the job cannot run that kind (the scheduler queues many at once with it, as run() queues one)."""
    options = options or {}
    extravars = {"borgfleet_backup": bj["name"]}
    params = {"limit": [bj["client_name"]], "repository_id": bj["repository_id"]}
    if kind == "verify" and not bj["verifiable"]:
        raise Invalid(_("backup job %(name)s is not a database backup taken from a snapshot: nothing to verify",
                        name=bj['name']))
    if kind == "prune" and not bj["retention"]:
        raise Invalid(_("backup job %(name)s has no retention: nothing is ever pruned", name=bj['name']))
    if kind == "prune_preview":
        retention = options.get("retention", bj["retention"])
        if not retention:
            raise Invalid(_("give a retention to preview (this backup job has none saved)"))
        # The collection's rule, its message; the playbook checks it again (contract.run_retention).
        params["retention"] = extravars["borgfleet_retention"] = by_contract(
            contract.check_retention, retention, bj["client_name"], bj["name"])
    if kind == "check":
        extravars["borgfleet_check_scope"], extravars["borgfleet_check_verify_data"] = check_options(
            options.get("scope", bj["check_scope"]), options.get("verify_data", bj["check_verify_data"]))
    params["extravars"] = extravars
    return dict(params=params, server_id=bj["client_id"], backup_job_id=bj["id"], user=user,
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


# A scheduled backup is stale when its newest success is older than the run due after it plus this
# share of its interval (at least STALE_MIN_GRACE): one late run is not yet an alarm.
STALE_GRACE_SHARE = 0.5
STALE_MIN_GRACE = timedelta(minutes=30)


def stale_since(schedule, tz, last_success, min_grace=STALE_MIN_GRACE):
    """When a backup succeeding last at `last_success` (naive UTC; the notifications pass its creation
    when it never succeeded) becomes stale: the run due after it, plus half its interval or
    `min_grace` (the notifications' stale margin), whichever is longer. None for a backup without a
    schedule (nothing says when it should have run) or without a reference time."""
    if not schedule or last_success is None:
        return None
    due = next_run(schedule, tz, last_success.replace(tzinfo=timezone.utc))
    interval = next_run(schedule, tz, due.replace(tzinfo=timezone.utc)) - due
    return due + max(min_grace, interval * STALE_GRACE_SHARE)


def health(db, bjs, now=None):
    """{backup_job_id: {state, last_status, last_finished_at, last_success_at, stale_at}} of the given
    backup jobs (rows of list_backup_jobs). state: running (a backup queued or running); failed,
    abandoned or missed (the newest backup run's status); stale (stale_since passed); never (no
    backup ever succeeded); ok."""
    now = now or datetime.utcnow()
    ids = [b["id"] for b in bjs]
    if not ids:
        return {}
    marks = ",".join(["%s"] * len(ids))
    success = {r["backup_job_id"]: r["t"] for r in query(
        db, f"SELECT backup_job_id, MAX(finished_at) AS t FROM jobs WHERE kind='backup' AND status='succeeded'"
            f" AND backup_job_id IN ({marks}) GROUP BY backup_job_id", ids)}
    last = {r["backup_job_id"]: r for r in query(
        db, f"SELECT j.backup_job_id, j.status, j.finished_at FROM jobs j JOIN (SELECT MAX(seq) AS seq FROM jobs"
            f" WHERE kind='backup' AND backup_job_id IN ({marks}) GROUP BY backup_job_id) m ON m.seq=j.seq", ids)}
    out = {}
    for b in bjs:
        row = last.get(b["id"]) or {}
        ok_at = success.get(b["id"])
        stale_at = stale_since(b["schedule"], b["timezone"], ok_at) if b["enabled"] else None
        if row.get("status") in ("queued", "waiting", "running"):
            state = "running"
        elif row.get("status") in ("failed", "abandoned", "missed"):
            state = row["status"]
        elif ok_at is None:
            state = "never"
        elif stale_at is not None and now > stale_at:
            state = "stale"
        else:
            state = "ok"
        out[b["id"]] = {"state": state, "last_status": row.get("status"), "last_finished_at": row.get("finished_at"),
                        "last_success_at": ok_at, "stale_at": stale_at}
    return out
