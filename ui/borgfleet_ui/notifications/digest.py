"""The daily or weekly digest: its due time (settings: frequency, HH:MM, weekday, time zone), claimed
once by the scheduler's tick, and what it reports over its period (jobs by kind and status,
failures, what each backup job stored, open incidents)."""
from datetime import timedelta, timezone
from zoneinfo import ZoneInfo

from ..db import execute, query
from . import events, store

# A digest whose due time passed longer ago than this (the scheduler was down, or the time was just
# set to an earlier hour of the day) is not sent late: the next one is.
GRACE = timedelta(hours=1)


def last_due(settings, now):
    """The latest due time <= now (UTC, naive) of the digest settings; None when digests are off."""
    if settings["digest_frequency"] == "off":
        return None
    tz = ZoneInfo(settings["digest_timezone"])
    local = now.replace(tzinfo=timezone.utc).astimezone(tz)
    hh, mm = (int(x) for x in settings["digest_time"].split(":"))
    due = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if settings["digest_frequency"] == "weekly":
        due -= timedelta(days=(due.weekday() - settings["digest_weekday"]) % 7)
    step = timedelta(days=7 if settings["digest_frequency"] == "weekly" else 1)
    while due > local:
        due -= step
    # Wall-clock arithmetic in the zone, then to UTC (a DST change moves the UTC hour, not the local one).
    due = due.replace(tzinfo=None).replace(tzinfo=tz)
    return due.astimezone(timezone.utc).replace(tzinfo=None)


def period_of(settings, due, now):
    """From one period before the due time to now (a digest queued late still covers up to its sending)."""
    return due - timedelta(days=7 if settings["digest_frequency"] == "weekly" else 1), now


def tick(db, r, now):
    """Queue the digest when it is due and not queued yet (compare-and-set on digest_last_due, so a
    second scheduler queues nothing); returns the delivery ids queued."""
    settings = store.get_settings(db)
    due = last_due(settings, now)
    if due is None or now - due > GRACE:
        return []
    won = execute(db, "UPDATE notification_settings SET digest_last_due=%s WHERE id=1 AND"
                      " (digest_last_due IS NULL OR digest_last_due < %s)", (due, due))
    if won != 1:
        return []
    return events.queue_event(db, r, "digest", period=period_of(settings, due, now))


def context(db, start, end, settings, app_name):
    by_kind = {}
    for row in query(db, "SELECT kind, status, COUNT(*) AS n FROM jobs WHERE finished_at >= %s AND finished_at < %s"
                         " GROUP BY kind, status ORDER BY kind, status", (start, end)):
        by_kind.setdefault(row["kind"], {})[row["status"]] = int(row["n"])
    failures = query(db, "SELECT j.id, j.kind, j.status, j.finished_at, j.error, b.name AS backup_job, c.name AS client"
                         " FROM jobs j LEFT JOIN backup_jobs b ON b.id=j.backup_job_id LEFT JOIN servers c ON"
                         " c.id=b.client_id WHERE j.status IN ('failed','abandoned','missed') AND j.finished_at >= %s"
                         " AND j.finished_at < %s ORDER BY j.seq DESC LIMIT 20", (start, end))
    for f in failures:
        f["url"] = settings["base_url"] + f"/jobs/{f['id']}" if settings["base_url"] else None
        f["error"] = (f["error"] or "")[:200]
    backups = query(db, "SELECT b.id, b.name, c.name AS client,"
                        " (SELECT COUNT(*) FROM archives a WHERE a.repository_id=r.id AND a.created_at >= %s"
                        "  AND a.created_at < %s) AS archives,"
                        " (SELECT SUM(a.original_size) FROM archives a WHERE a.repository_id=r.id AND a.created_at >= %s"
                        "  AND a.created_at < %s) AS original,"
                        " (SELECT SUM(a.deduplicated_size) FROM archives a WHERE a.repository_id=r.id"
                        "  AND a.created_at >= %s AND a.created_at < %s) AS added,"
                        " (SELECT MAX(j.finished_at) FROM jobs j WHERE j.backup_job_id=b.id AND j.kind='backup'"
                        "  AND j.status='succeeded' AND j.finished_at < %s) AS last_success"
                        " FROM backup_jobs b JOIN servers c ON c.id=b.client_id"
                        " LEFT JOIN repositories r ON r.backup_job_id=b.id ORDER BY c.name, b.name",
                    (start, end, start, end, start, end, end))
    for b in backups:
        b["url"] = settings["base_url"] + f"/backup-jobs/{b['id']}" if settings["base_url"] else None
    totals = {"jobs": sum(sum(v.values()) for v in by_kind.values()),
              "failed": sum(v.get("failed", 0) + v.get("abandoned", 0) for v in by_kind.values()),
              "added": sum(int(b["added"] or 0) for b in backups)}
    return {"app_name": app_name, "start": start, "end": end, "frequency": settings["digest_frequency"],
            "by_kind": by_kind, "failures": failures, "backups": backups, "totals": totals,
            # A backup job's incidents (the digest's lines name a client and a backup job).
            "incidents": [i for i in events.list_incidents(db, open_only=True) if i["backup_job_id"]],
            "home_url": settings["base_url"] or None}
