"""Stale backups (the scheduler's tick, at most once a minute): a scheduled, enabled backup job past
fleet/backup_jobs.stale_since of its last successful backup (or, never successful, its creation),
with the margin of the settings (stale_margin_minutes) as the least grace, opens a 'stale' incident
and notifies once; the next successful backup closes it with a recovery message (events.py)."""
from datetime import timedelta

from ..db import execute, query
from ..fleet import backup_jobs
from . import events, store

BATCH = 500   # incidents per insert


def overdue(schedule, tz, since, margin):
    """The moment a backup job with this schedule and no success since `since` becomes stale (the
    one rule: backup_jobs.stale_since)."""
    return backup_jobs.stale_since(schedule, tz, since, min_grace=margin)


def tick(db, r, now):
    """Open (and notify) the stale incidents due by `now`; returns the backup job ids newly stale.

    Cheap at fleet scale: a few cron evaluations per schedule rather than two per backup job, one
    insert of the incidents and one read of the settings and subscriptions for all their messages."""
    minutes = store.get_settings(db)["stale_margin_minutes"]
    if minutes <= 0:
        return []
    margin = timedelta(minutes=minutes)
    rows = query(db, "SELECT b.id, b.schedule, b.timezone, COALESCE("
                     " (SELECT MAX(j.finished_at) FROM jobs j WHERE j.backup_job_id=b.id AND j.kind='backup'"
                     "  AND j.status='succeeded'), b.created_at) AS since FROM backup_jobs b"
                     " WHERE b.enabled=1 AND b.schedule IS NOT NULL AND NOT EXISTS (SELECT 1 FROM"
                     " notification_incidents i WHERE i.backup_job_id=b.id AND i.kind='stale' AND i.is_open=1)")
    groups = {}
    for b in rows:
        groups.setdefault((b["schedule"], b["timezone"]), []).append(b)
    stale = []
    for (schedule, tz), group in groups.items():
        group.sort(key=lambda b: b["since"])
        # overdue() never decreases as `since` grows (a later success's next run is the same cron slot
        # or a later one, at least an interval later, which no grace of the earlier slot exceeds):
        # the stale jobs of one schedule are a prefix of the group, found by bisection.
        lo, hi = 0, len(group)
        try:
            while lo < hi:
                mid = (lo + hi) // 2
                if overdue(schedule, tz, group[mid]["since"], margin) <= now:
                    lo = mid + 1
                else:
                    hi = mid
        except Exception:  # a schedule the scheduler cannot evaluate either (it logs it)
            continue
        stale += [b["id"] for b in group[:lo]]
    if not stale:
        return []
    stale.sort()
    opened = []
    for i in range(0, len(stale), BATCH):
        ids = stale[i:i + BATCH]
        marks = ", ".join(["%s"] * len(ids))
        execute(db, "INSERT IGNORE INTO notification_incidents (backup_job_id, kind, failures) VALUES "
                    + ", ".join(["(%s, 'stale', 0)"] * len(ids)), ids)
        # Only the active scheduler opens stale incidents: every open one of these jobs is new.
        opened += query(db, f"SELECT id, backup_job_id FROM notification_incidents WHERE kind='stale' AND is_open=1"
                            f" AND backup_job_id IN ({marks}) ORDER BY backup_job_id", ids)
    events.queue_events(db, r, "stale", [dict(incident_id=i["id"], backup_job_id=i["backup_job_id"]) for i in opened])
    return [i["backup_job_id"] for i in opened]


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
