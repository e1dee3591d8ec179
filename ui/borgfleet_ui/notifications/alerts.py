"""Events beyond a backup job's runs (worker and scheduler side; never sends itself):

- a scheduled run the scheduler missed (one message per 'missed' job row, itself one per outage);
- a pool above its warning threshold or forecast full within pool_full_days (from analyze_pools'
  recorder): an incident per pool, its recovery once it is below and not forecast full;
- a server's disk (any filesystem), memory or CPU at or above its threshold in two consecutive
  samples (from collect_stats' recorder): an incident per server and resource, its recovery once
  the newest sample is below;
- an instant-recovery session started, stopped or removed (from the recovery recorders):
  informational, one message each.

Each message's figures are kept on its delivery (detail_json), so it says what was true when the
event happened. Every entry point never raises: a notification problem must not fail a job.
"""
import json
import logging

from ..db import execute, query
from . import events, store

log = logging.getLogger("borgfleet.notifications")

RESOURCES = ("disk", "memory", "cpu")
SETTING_OF = {"disk": "server_disk_percent", "memory": "server_memory_percent", "cpu": "server_cpu_percent"}


def _redis(r):
    if r is not None:
        return r
    from ..config import load_config
    from ..db import connect_redis
    return connect_redis(load_config())


def _safely(what, fn, *args):
    try:
        return fn(*args)
    except Exception:
        log.exception("notifications for %s failed", what)
        return None


# --- missed runs -------------------------------------------------------------------------------

def run_missed(db, r, job_id):
    """The scheduler recorded a 'missed' job: one message to the backup job's subscribers."""
    return _safely(f"missed job {job_id}", _run_missed, db, r, job_id)


def _run_missed(db, r, job_id):
    job = query(db, "SELECT id, kind, backup_job_id, status FROM jobs WHERE id=%s", (job_id,), one=True)
    if not job or job["status"] != "missed":
        return None
    return events.queue_event(db, _redis(r), "missed", job_id=job_id, backup_job_id=job["backup_job_id"])


# --- pools --------------------------------------------------------------------------------------

def pools_analysed(db, r, report):
    """After analyze_pools' report is recorded: open or close the incident of each pool it names."""
    return _safely("the pool analysis", _pools_analysed, db, r, report)


def _pools_analysed(db, r, report):
    from ..fleet import pools   # the fleet package pulls in the web side's modules
    servers = {s["name"]: s["id"] for s in query(db, "SELECT id, name FROM servers")}
    seen = {(servers[h], p["name"]) for h, result in (report or {}).items() if h in servers and isinstance(result, dict)
            for p in result.get("pools") or [] if isinstance(p, dict) and isinstance(p.get("name"), str)}
    days = store.get_settings(db)["pool_full_days"]
    queued = []
    for p in pools.usage(db, top=0):
        if (p["server_id"], p["name"]) not in seen:
            continue
        forecast = days > 0 and p["full_in_days"] is not None and p["full_in_days"] <= days
        detail = {"server": p["server_name"], "pool": p["name"], "path": p["path"], "used_percent": p["used_percent"],
                  "warn_percent": p["warn_percent"], "above": bool(p["warn"]), "forecast_full": forecast,
                  "full_in_days": p["full_in_days"], "full_days": days, "total_bytes": p["total_bytes"],
                  "used_bytes": p["used_bytes"], "free_bytes": p["free_bytes"],
                  "growth_bytes_per_day": p["growth_bytes_per_day"]}
        queued += _incident(db, r, "pool", p["server_id"], p["name"], bool(p["warn"]) or forecast, detail)
    return queued


def _incident(db, r, kind, server_id, subject, bad, detail):
    """Open (and announce) or close (with a recovery) the incident of (kind, server, subject)."""
    if bad:
        incident = execute(db, "INSERT IGNORE INTO notification_incidents (kind, server_id, subject, failures)"
                               " VALUES (%s, %s, %s, 1)", (kind, server_id, subject))
        if not incident:   # still above: counted, nothing sent
            execute(db, "UPDATE notification_incidents SET failures=failures+1 WHERE kind=%s AND server_id=%s"
                        " AND subject=%s AND is_open=1", (kind, server_id, subject))
            return []
        return queue(db, r, kind, server_id=server_id, incident_id=incident, detail=detail)
    row = query(db, "SELECT id FROM notification_incidents WHERE kind=%s AND server_id=%s AND subject=%s AND is_open=1",
                (kind, server_id, subject), one=True)
    if row and execute(db, "UPDATE notification_incidents SET is_open=NULL, closed_at=UTC_TIMESTAMP(3)"
                           " WHERE id=%s AND is_open=1", (row["id"],)):
        return queue(db, r, f"{kind}_recovery", server_id=server_id, incident_id=row["id"], detail=detail)
    return []


def queue(db, r, event, server_id=None, incident_id=None, backup_job_id=None, job_id=None, detail=None):
    return events.queue_event(db, _redis(r), event, job_id=job_id, incident_id=incident_id,
                              backup_job_id=backup_job_id, server_id=server_id, detail=detail)


# --- servers ------------------------------------------------------------------------------------

def stats_collected(db, r, server_ids):
    """After collect_stats' samples are recorded: each server's resources over their thresholds in
    its two newest samples open an incident; below in the newest closes it."""
    return _safely("the collected stats", _stats_collected, db, r, server_ids)


def resource_percents(system):
    """{resource: (percent, what)} of a system sample: the fullest filesystem (its mountpoint named),
    memory and CPU use; a resource the sample lacks is absent."""
    out = {}
    if not isinstance(system, dict):
        return out
    fss = [f for f in system.get("filesystems") or [] if isinstance(f, dict)
           and isinstance(f.get("used_percent"), (int, float))]
    if fss:
        fullest = max(fss, key=lambda f: f["used_percent"])
        out["disk"] = (float(fullest["used_percent"]), fullest.get("mountpoint"))
    for resource, key in (("memory", "memory"), ("cpu", "cpu")):
        value = (system.get(key) or {}).get("used_percent" if key == "memory" else "usage_percent")
        if isinstance(value, (int, float)):
            out[resource] = (float(value), None)
    return out


def _stats_collected(db, r, server_ids):
    settings = store.get_settings(db)
    queued = []
    for sid in server_ids:
        server = query(db, "SELECT id, name FROM servers WHERE id=%s", (sid,), one=True)
        samples = [resource_percents(json.loads(s["data_json"])) for s in
                   query(db, "SELECT data_json FROM server_stats WHERE server_id=%s ORDER BY id DESC LIMIT 2", (sid,))]
        if not server or not samples:
            continue
        for resource in RESOURCES:
            threshold = settings[SETTING_OF[resource]]
            newest = samples[0].get(resource)
            if newest is None:
                continue
            above = [s.get(resource) is not None and s[resource][0] >= threshold for s in samples]
            detail = {"server": server["name"], "resource": resource, "percent": newest[0], "where": newest[1],
                      "threshold": threshold}
            if threshold > 0 and len(above) == 2 and all(above):
                queued += _incident(db, r, "server", sid, resource, True, detail)
            elif threshold <= 0 or not above[0]:
                queued += _incident(db, r, "server", sid, resource, False, detail)
    return queued


# --- what is failing now -------------------------------------------------------------------------

def failing_now(db, limit=50):
    """The open incidents, newest first (what the dashboard and the notifications page list): a pool's
    with its figures of the last analysis (used_percent, full_in_days), a server's with its resource's
    in the newest sample (percent, where: a filesystem's mountpoint), under `figures`."""
    incidents = events.list_incidents(db, open_only=True, limit=limit)
    usage = None
    for i in incidents:
        if i["kind"] == "pool":
            if usage is None:
                from ..fleet import pools   # the fleet package pulls in the web side's modules
                usage = {(p["server_id"], p["name"]): p for p in pools.usage(db)}
            p = usage.get((i["server_id"], i["subject"]))
            i["figures"] = {"used_percent": p["used_percent"], "full_in_days": p["full_in_days"]} if p else {}
        elif i["kind"] == "server":
            row = query(db, "SELECT data_json FROM server_stats WHERE server_id=%s ORDER BY id DESC LIMIT 1",
                        (i["server_id"],), one=True)
            now = resource_percents(json.loads(row["data_json"])).get(i["subject"]) if row else None
            i["figures"] = {"percent": now[0], "where": now[1]} if now else {}
    return incidents


# --- instant-recovery sessions ------------------------------------------------------------------

SESSION_FIELDS = ("name", "engine", "archive", "address", "port", "state", "started_at")


def session_event(db, r, event, job, session, session_id=None):
    """An instant-recovery session started, stopped or removed (event session_started, ...): one
    message to the session's backup job's subscribers. Only its name, engine, archive and address."""
    return _safely(f"{event} of job {job['id']}", _session_event, db, r, event, job, session, session_id)


def _session_event(db, r, event, job, session, session_id):
    server = query(db, "SELECT id, name FROM servers WHERE id=%s", (job["server_id"],), one=True)
    bj = query(db, "SELECT b.id, b.name, c.name AS client FROM backup_jobs b JOIN servers c ON c.id=b.client_id"
                   " WHERE b.id=%s", (job["backup_job_id"],), one=True) if job.get("backup_job_id") else None
    detail = {k: (session or {}).get(k) for k in SESSION_FIELDS}
    detail.update(session_id=session_id, server=server["name"] if server else None,
                  backup_job=bj["name"] if bj else None, client=bj["client"] if bj else None)
    return queue(db, r, event, server_id=job["server_id"], backup_job_id=job.get("backup_job_id"), job_id=job["id"],
                 detail=detail)
