"""From a job's final status to messages (web, worker and scheduler side; never sends itself).

queue.finish and the sweeps (abandoned, lost) call job_finished once a job row is final, for every
kind. A backup, prune, check or verification of a backup job that failed or was abandoned opens an
incident (one per backup job and kind) and queues one message per recipient; later failures only
count on the open incident; the next success closes it and queues the recovery message. Each
message is a row of notification_deliveries sent by a queued job (deliver.py) with retries.
"""
import json
import logging

from rq import Queue, Retry

from ..db import execute, query
from ..queue import NOTIFY_QUEUE, SERIALIZER
from . import store

log = logging.getLogger("borgfleet.notifications")

EVENT_KINDS = ("backup", "prune", "check", "verify")
# Mail servers, webhook receivers and chat services come back: try again after 10 s, 1 min, 5 min.
RETRY = (10, 60, 300)
# The events the webhook and the Apprise URLs hear (the digest is mail only).
WEBHOOK_EVENTS = ("failure", "recovery", "stale", "missed", "pool", "pool_recovery", "server", "server_recovery",
                  "session_started", "session_stopped", "session_removed")


def job_finished(db, r, job_id):
    """Open, count or close the incident of a final job; queue its messages. Never raises: a
    notification problem must not change how a job ends (it is logged)."""
    try:
        return _job_finished(db, r, job_id)
    except Exception:
        log.exception("notifications for job %s failed", job_id)
        return None


def job_started(db, r, job_id):
    """A backup starts running: its ping URL hears /start (never raises, as job_finished)."""
    try:
        job = query(db, "SELECT id, kind, backup_job_id FROM jobs WHERE id=%s", (job_id,), one=True)
        if job:
            ping(db, r, job, "start")
    except Exception:
        log.exception("start ping for job %s failed", job_id)


# Healthchecks' convention: <url>/start, <url> (success), <url>/fail.
PING_SUFFIX = {"start": "/start", "success": "", "fail": "/fail"}


def ping(db, r, job, what):
    """Queue the ping of a backup job's run (every run, not once per incident)."""
    if job["kind"] != "backup" or not job["backup_job_id"]:
        return None
    url = store.ping_url(db, job["backup_job_id"])
    if not url:
        return None
    did = execute(db, "INSERT INTO notification_deliveries (event, channel, recipient, job_id, backup_job_id)"
                      " VALUES (%s, 'ping', %s, %s, %s)", (what, url + PING_SUFFIX[what], job["id"], job["backup_job_id"]))
    enqueue(db, r, did)
    return did


def _job_finished(db, r, job_id):
    job = query(db, "SELECT id, kind, status, backup_job_id FROM jobs WHERE id=%s", (job_id,), one=True)
    if not job or job["kind"] not in EVENT_KINDS or not job["backup_job_id"]:
        return None
    bj, kind = job["backup_job_id"], job["kind"]
    ping(db, r, job, "success" if job["status"] == "succeeded" else "fail")
    if job["status"] in ("failed", "abandoned"):
        incident = execute(db, "INSERT IGNORE INTO notification_incidents (backup_job_id, kind, first_job_id,"
                               " last_job_id) VALUES (%s, %s, %s, %s)", (bj, kind, job_id, job_id))
        if not incident:   # already failing: counted, nothing sent
            execute(db, "UPDATE notification_incidents SET last_job_id=%s, failures=failures+1 WHERE"
                        " backup_job_id=%s AND kind=%s AND is_open=1 AND last_job_id<>%s", (job_id, bj, kind, job_id))
            return None
        return queue_event(db, r, "failure", job_id=job_id, incident_id=incident, backup_job_id=bj)
    if job["status"] == "succeeded":
        # A successful backup also ends the backup job's staleness (stale.py).
        closed = []
        for incident_kind in (kind, "stale") if kind == "backup" else (kind,):
            row = query(db, "SELECT id FROM notification_incidents WHERE backup_job_id=%s AND kind=%s AND is_open=1",
                        (bj, incident_kind), one=True)
            if row and execute(db, "UPDATE notification_incidents SET is_open=NULL, closed_job_id=%s,"
                                   " closed_at=UTC_TIMESTAMP(3) WHERE id=%s AND is_open=1", (job_id, row["id"])):
                closed += queue_event(db, r, "recovery", job_id=job_id, incident_id=row["id"], backup_job_id=bj)
        return closed
    return None


def queue_event(db, r, event, job_id=None, incident_id=None, backup_job_id=None, period=(None, None),
                server_id=None, detail=None):
    """One delivery per subscribed address (and the webhook for incident events), each queued;
    returns their ids. detail: what the message says that may be gone when it is sent (alerts.py)."""
    return queue_events(db, r, event, [dict(job_id=job_id, incident_id=incident_id, backup_job_id=backup_job_id,
                                            period=period, server_id=server_id, detail=detail)])


def queue_events(db, r, event, items):
    """queue_event for many messages of one event (dicts of its keyword arguments), the settings and
    subscriptions read once (the scheduler opens many stale incidents in one tick)."""
    if not items:
        return []
    settings = store.get_settings(db)
    subs = store.subscriptions(db)
    ids = []
    for item in items:
        job_id, incident_id, backup_job_id = item.get("job_id"), item.get("incident_id"), item.get("backup_job_id")
        period, detail = item.get("period") or (None, None), item.get("detail")
        targets = [("email", a) for a in store.recipients(db, event, backup_job_id, subs=subs)]
        if settings["webhook_url"] and event in WEBHOOK_EVENTS:
            targets.append(("webhook", settings["webhook_url"]))
        if settings["apprise_urls_set"] and event in WEBHOOK_EVENTS:
            # The URLs carry tokens: the delivery row names the channel only; they are read when it is sent.
            targets.append(("apprise", "apprise"))
        for channel, recipient in targets:
            did = execute(db, "INSERT INTO notification_deliveries (event, channel, recipient, job_id, incident_id,"
                              " backup_job_id, period_start, period_end, server_id, detail_json)"
                              " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                          (event, channel, recipient, job_id, incident_id, backup_job_id, period[0], period[1],
                           item.get("server_id"), json.dumps(detail, default=str) if detail is not None else None))
            ids.append(did)
            if channel == "email" and not settings["smtp_host"]:
                _failed(db, did, "mail is not set up: an admin sets the SMTP host and the sender address first")
                continue
            enqueue(db, r, did)
    return ids


def enqueue(db, r, delivery_id):
    try:
        Queue(NOTIFY_QUEUE, connection=r, serializer=SERIALIZER).enqueue(
            "borgfleet_ui.notifications.deliver.deliver", delivery_id, job_timeout=120,
            retry=Retry(max=len(RETRY), interval=list(RETRY)), result_ttl=86400, failure_ttl=7 * 86400)
    except Exception as e:  # Redis away: the delivery says so instead of vanishing
        _failed(db, delivery_id, f"could not queue: {e}")


def _failed(db, delivery_id, error):
    execute(db, "UPDATE notification_deliveries SET status='failed', error=%s WHERE id=%s", (error, delivery_id))


def list_deliveries(db, limit=50):
    return query(db, "SELECT d.*, b.name AS backup_job FROM notification_deliveries d"
                     " LEFT JOIN backup_jobs b ON b.id=d.backup_job_id ORDER BY d.id DESC LIMIT %s", (limit,))


def list_incidents(db, open_only=False, limit=50):
    """Incidents newest first: a backup job's (backup_job, client named) and, from alerts.py, a pool's
    or a server's resource (server named, subject: the pool's name or disk/memory/cpu)."""
    return query(db, "SELECT i.*, b.name AS backup_job, c.name AS client, s.name AS server"
                     " FROM notification_incidents i LEFT JOIN backup_jobs b ON b.id=i.backup_job_id"
                     " LEFT JOIN servers c ON c.id=b.client_id LEFT JOIN servers s ON s.id=i.server_id"
                     + (" WHERE i.is_open=1" if open_only else "") + " ORDER BY i.id DESC LIMIT %s", (limit,))
