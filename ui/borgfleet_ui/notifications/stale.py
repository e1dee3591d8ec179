"""Stale backups (the scheduler's tick, at most once a minute): a scheduled, enabled backup job past
fleet/backup_jobs.stale_since of its last successful backup (or, never successful, its creation),
with the margin of the settings (stale_margin_minutes) as the least grace, opens a 'stale' incident
and notifies once; the next successful backup closes it with a recovery message (events.py)."""
from datetime import timedelta

from ..db import execute, query
from ..fleet import backup_jobs
from . import events, store


def overdue(schedule, tz, since, margin):
    """The moment a backup job with this schedule and no success since `since` becomes stale (the
    one rule: backup_jobs.stale_since)."""
    return backup_jobs.stale_since(schedule, tz, since, min_grace=margin)


def tick(db, r, now):
    """Open (and notify) the stale incidents due by `now`; returns the backup job ids newly stale."""
    minutes = store.get_settings(db)["stale_margin_minutes"]
    if minutes <= 0:
        return []
    margin = timedelta(minutes=minutes)
    rows = query(db, "SELECT b.id, b.schedule, b.timezone, b.created_at,"
                     " (SELECT MAX(j.finished_at) FROM jobs j WHERE j.backup_job_id=b.id AND j.kind='backup'"
                     "  AND j.status='succeeded') AS last_success FROM backup_jobs b"
                     " WHERE b.enabled=1 AND b.schedule IS NOT NULL AND NOT EXISTS (SELECT 1 FROM"
                     " notification_incidents i WHERE i.backup_job_id=b.id AND i.kind='stale' AND i.is_open=1)")
    stale = []
    for b in rows:
        try:
            due = overdue(b["schedule"], b["timezone"], b["last_success"] or b["created_at"], margin)
        except Exception:  # a schedule the scheduler cannot evaluate either (it logs it)
            continue
        if due > now:
            continue
        incident = execute(db, "INSERT IGNORE INTO notification_incidents (backup_job_id, kind, failures)"
                               " VALUES (%s, 'stale', 0)", (b["id"],))
        if incident:
            events.queue_event(db, r, "stale", incident_id=incident, backup_job_id=b["id"])
            stale.append(b["id"])
    return stale


def context(db, incident, settings):
    """What a stale message says: the backup job, its schedule, its last success and since when it
    counts as stale."""
    b = query(db, "SELECT b.id, b.name, b.schedule, b.timezone, b.created_at, c.id AS client_id, c.name AS client,"
                  " (SELECT MAX(j.finished_at) FROM jobs j WHERE j.backup_job_id=b.id AND j.kind='backup'"
                  "  AND j.status='succeeded') AS last_success FROM backup_jobs b JOIN servers c ON c.id=b.client_id"
                  " WHERE b.id=%s", (incident["backup_job_id"],), one=True)
    if b is None:
        raise LookupError(f"incident {incident['id']}: its backup job is gone")
    margin = timedelta(minutes=settings["stale_margin_minutes"])
    return {
        "backup_job": {"id": b["id"], "name": b["name"], "schedule": b["schedule"], "timezone": b["timezone"],
                       "url": settings["base_url"] + f"/backup-jobs/{b['id']}" if settings["base_url"] else None},
        "client": {"id": b["client_id"], "name": b["client"]},
        "last_success": b["last_success"],
        "stale_since": overdue(b["schedule"], b["timezone"], b["last_success"] or b["created_at"], margin),
        "margin_minutes": settings["stale_margin_minutes"],
        "incident": {"id": incident["id"], "opened_at": incident["opened_at"]},
    }
