"""The queued sender (worker side): one RQ job per delivery row, retried by RQ (events.RETRY).

A message is built when it is sent, from the rows it names (job, backup job, client, incident, or
the digest's period): only names, statuses, error classes, figures and links, never a stored
secret. Mail through mail.py; the webhook is a JSON POST signed with HMAC-SHA256 of its body; chat
tools through Apprise URLs (chat.py) get the mail's subject and text."""
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

from rq import get_current_job

from ..config import load_config
from ..db import connect, execute, query
from . import chat, digest, mail, stale, store


# The webhook's JSON keeps these English words (machine-read); mails name kinds and error classes in
# their recipient's language (mail.py's filters kind_name, error_label).
KIND_LABELS = {"backup": "Backup", "prune": "Prune", "check": "Repository check", "verify": "Restore verification"}
WEBHOOK_TIMEOUT = 15


class PostError(Exception):
    pass


def deliver(delivery_id):
    cfg = load_config()
    db = connect(cfg)
    try:
        d = query(db, "SELECT * FROM notification_deliveries WHERE id=%s", (delivery_id,), one=True)
        if d is None or d["status"] == "sent":
            return "skipped"
        execute(db, "UPDATE notification_deliveries SET attempts=attempts+1 WHERE id=%s", (delivery_id,))
        try:
            if d["channel"] == "email":
                send_mail(cfg, db, d)
            elif d["channel"] == "ping":
                post_ping(db, d)
            elif d["channel"] == "apprise":
                post_apprise(cfg, db, d)
            else:
                post_webhook(cfg, db, d)
        except Exception as e:
            rq_job = get_current_job()
            left = (rq_job.retries_left or 0) if rq_job else 0
            execute(db, "UPDATE notification_deliveries SET status=%s, error=%s WHERE id=%s",
                    ("retrying" if left else "failed", str(e) or type(e).__name__, delivery_id))
            raise
        execute(db, "UPDATE notification_deliveries SET status='sent', error=NULL, sent_at=UTC_TIMESTAMP(3)"
                    " WHERE id=%s", (delivery_id,))
        return "sent"
    finally:
        db.close()


def app_name(db):
    row = query(db, "SELECT value FROM settings WHERE name='app_name'", one=True)
    return row["value"] if row else "BorgFleet"


def link(settings, path):
    """An absolute link to a page of the service; None while no base URL is set."""
    return settings["base_url"] + path if settings["base_url"] else None


def error_kind(job):
    """The class of a job's failure: the error_kind of its first failed entry (docs/contract.md),
    'abandoned' for a job whose worker died, else 'unknown'."""
    try:
        result = json.loads(job.get("result_json") or "null")
    except ValueError:
        result = None
    entries = result.get("failed") if isinstance(result, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("error_kind"):
            return entry["error_kind"]
    return "abandoned" if job["status"] == "abandoned" else "unknown"


def incident_context(db, d):
    """What a failure or recovery message says (mail templates and webhook payload)."""
    settings = store.get_settings(db)
    job = query(db, "SELECT * FROM jobs WHERE id=%s", (d["job_id"],), one=True)
    bj = query(db, "SELECT b.id, b.name, c.id AS client_id, c.name AS client FROM backup_jobs b"
                   " JOIN servers c ON c.id=b.client_id WHERE b.id=%s", (d["backup_job_id"],), one=True)
    incident = query(db, "SELECT * FROM notification_incidents WHERE id=%s", (d["incident_id"],), one=True)
    if job is None or bj is None or incident is None:
        raise LookupError(f"delivery {d['id']}: its job, backup job or incident is gone")
    first = job if incident["first_job_id"] in (None, job["id"]) else \
        query(db, "SELECT * FROM jobs WHERE id=%s", (incident["first_job_id"],), one=True) or job
    kind = "stale" if incident["kind"] == "stale" else error_kind(first)
    return {
        "event": d["event"], "app_name": app_name(db),
        "job": {"id": job["id"], "kind": job["kind"], "kind_label": KIND_LABELS.get(job["kind"], job["kind"]),
                "status": job["status"], "error": (first["error"] or "")[:1000] if d["event"] == "failure" else None,
                "finished_at": job["finished_at"], "started_at": job["started_at"],
                "url": link(settings, f"/jobs/{job['id']}")},
        "error_kind": kind, "error_label": kind.replace("_", " "),
        "backup_job": {"id": bj["id"], "name": bj["name"], "url": link(settings, f"/backup-jobs/{bj['id']}")},
        "client": {"id": bj["client_id"], "name": bj["client"]},
        "incident": {"id": incident["id"], "opened_at": incident["opened_at"], "closed_at": incident["closed_at"],
                     "failures": incident["failures"], "first_job_id": incident["first_job_id"],
                     "first_job_url": link(settings, f"/jobs/{incident['first_job_id']}")
                     if incident["first_job_id"] else None},
    }


def recipient_language(db, address):
    """The language of the user subscribed with this address (users.language; None: English). Two
    users sharing an address: the first one's, as store.recipients dedups them."""
    row = query(db, "SELECT u.language FROM notification_subscriptions s JOIN users u ON u.id=s.user_id"
                    " WHERE s.email=%s ORDER BY s.enabled DESC, u.disabled, s.user_id LIMIT 1", (address,), one=True)
    return row["language"] if row else None


# The mail template of each event of alerts.py (a recovery shares its alert's, which tells them apart).
ALERT_TEMPLATES = {"missed": "missed", "pool": "pool", "pool_recovery": "pool", "server": "server",
                   "server_recovery": "server", "session_started": "session", "session_stopped": "session",
                   "session_removed": "session"}


def alert_context(db, d):
    """What a message of alerts.py says: its detail as queued (figures, names), the incident's times,
    the job and backup job it names, and links to the pool, server, session, job and backup job pages."""
    settings = store.get_settings(db)
    detail = json.loads(d.get("detail_json") or "{}")
    incident = query(db, "SELECT * FROM notification_incidents WHERE id=%s", (d["incident_id"],), one=True) \
        if d.get("incident_id") else None
    job = query(db, "SELECT id, kind, status, error, created_at, finished_at FROM jobs WHERE id=%s", (d["job_id"],),
                one=True) if d.get("job_id") else None
    bj = query(db, "SELECT b.id, b.name, c.id AS client_id, c.name AS client FROM backup_jobs b"
                   " JOIN servers c ON c.id=b.client_id WHERE b.id=%s", (d["backup_job_id"],), one=True) \
        if d.get("backup_job_id") else None
    if d["event"] == "missed" and (job is None or bj is None):
        raise LookupError(f"delivery {d['id']}: its job or backup job is gone")
    session_id = detail.get("session_id")
    return {
        "event": d["event"], "app_name": app_name(db), "detail": detail, "at": d["created_at"],
        "recovered": d["event"].endswith("_recovery"),
        "incident": {"id": incident["id"], "opened_at": incident["opened_at"], "closed_at": incident["closed_at"],
                     "failures": incident["failures"]} if incident else None,
        "job": {"id": job["id"], "kind": job["kind"], "status": job["status"],
                # The scheduler's own words on a missed run (when, how many); no secret is in them.
                "error": (job["error"] or "")[:1000], "at": job["finished_at"] or job["created_at"],
                "url": link(settings, f"/jobs/{job['id']}")} if job else None,
        "backup_job": {"id": bj["id"], "name": bj["name"], "url": link(settings, f"/backup-jobs/{bj['id']}")}
        if bj else None,
        "client": {"id": bj["client_id"], "name": bj["client"]} if bj else None,
        "server": {"id": d.get("server_id"), "name": detail.get("server"),
                   "url": link(settings, f"/servers/{d['server_id']}") if d.get("server_id") else None},
        "pools_url": link(settings, "/pools"),
        # A removed session has no page left: the list of sessions instead.
        "session_url": link(settings, f"/recovery/{session_id}" if session_id and d["event"] != "session_removed"
                            else "/recovery"),
    }


def build_mail(db, d):
    """(subject, text, html) of a delivery's mail, in its recipient's language."""
    return build_message(db, d, recipient_language(db, d["recipient"]))


def build_message(db, d, language):
    """(subject, text, html) of a delivery's message in `language` (None: English)."""
    if d["event"] in ALERT_TEMPLATES:
        return mail.render(ALERT_TEMPLATES[d["event"]], language, **alert_context(db, d))
    if d["event"] == "digest":
        return mail.render("digest", language, **digest.context(db, d["period_start"], d["period_end"],
                                                                store.get_settings(db), app_name(db)))
    if d["event"] == "stale":
        return mail.render("stale", language, **stale_context(db, d))
    return mail.render(d["event"], language, **incident_context(db, d))


def stale_context(db, d):
    incident = query(db, "SELECT * FROM notification_incidents WHERE id=%s", (d["incident_id"],), one=True)
    if incident is None:
        raise LookupError(f"delivery {d['id']}: its incident is gone")
    return {"event": "stale", "app_name": app_name(db), **stale.context(db, incident, store.get_settings(db))}


def send_mail(cfg, db, d):
    settings = store.get_settings(db)
    subject, text, html = build_mail(db, d)
    msg = mail.message(settings["smtp_sender"], d["recipient"], subject, text, html, app_name(db))
    mail.send(settings, store.secret(cfg, db, "smtp_password"), msg)


def _jsonable(v):
    if isinstance(v, datetime):
        return v.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def payload(db, d, now=None):
    head = {"event": d["event"], "timestamp": int(now or time.time()), "delivery_id": d["id"]}
    if d["event"] in ALERT_TEMPLATES:
        ctx = alert_context(db, d)
        return {**head, "app_name": ctx["app_name"],
                **{k: _jsonable(ctx[k]) for k in ("detail", "incident", "job", "backup_job", "client", "server")},
                "links": {k: ctx[k] for k in ("pools_url", "session_url")}}
    if d["event"] == "stale":
        ctx = stale_context(db, d)
        return {**head, "app_name": ctx["app_name"], "error_kind": "stale",
                **{k: _jsonable(ctx[k]) for k in ("backup_job", "client", "incident", "last_success", "stale_since")}}
    ctx = incident_context(db, d)
    return {**head, "app_name": ctx["app_name"], "error_kind": ctx["error_kind"],
            **{k: _jsonable(ctx[k]) for k in ("job", "backup_job", "client", "incident")}}


def sign(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(cfg, db, d):
    now = int(time.time())
    body = json.dumps(payload(db, d, now), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "BorgFleet-Webhook/1",
               "X-BorgFleet-Event": d["event"], "X-BorgFleet-Timestamp": str(now),
               "X-BorgFleet-Delivery": str(d["id"])}
    secret = store.secret(cfg, db, "webhook_secret")
    if secret:
        headers["X-BorgFleet-Signature"] = sign(secret, body)
    _post(urllib.request.Request(d["recipient"], data=body, headers=headers, method="POST"), "the webhook")


def post_apprise(cfg, db, d):
    """The mail's subject and plain text to every Apprise URL, in English (a chat room has no one
    language; the webhook's words are English too)."""
    subject, text, _html = build_message(db, d, None)
    chat.send(chat.urls(store.secret(cfg, db, "apprise_urls")), subject, text, d["event"])


def post_ping(db, d):
    """A healthchecks-style ping: POST with a short plain-text log line (job, status, error class)."""
    job = query(db, "SELECT * FROM jobs WHERE id=%s", (d["job_id"],), one=True)
    line = f"{app_name(db)} backup job {d['backup_job_id']}, job {d['job_id']}: {d['event']}"
    if job and d["event"] == "fail":
        line += f" ({error_kind(job)})"
    _post(urllib.request.Request(d["recipient"], data=line.encode(), method="POST",
                                 headers={"Content-Type": "text/plain", "User-Agent": "BorgFleet-Ping/1"}), "the ping URL")


def _post(req, what):
    try:
        with urllib.request.urlopen(req, timeout=WEBHOOK_TIMEOUT) as resp:
            resp.read(1024)
    except urllib.error.HTTPError as e:
        raise PostError(f"{what} answered HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise PostError(f"{what} could not be reached: {getattr(e, 'reason', e)}") from None
