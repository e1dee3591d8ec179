"""Notification settings (SMTP, base URL, webhook, Apprise URLs, digest) and per-user subscriptions:
read, checked, written. The SMTP password, the webhook secret and the Apprise URLs (they carry tokens)
are stored encrypted (secret_store) and never returned: readers get `smtp_password_set`,
`webhook_secret_set` and `apprise_urls_set` instead."""
import json
import re
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask_babel import gettext as _

from .. import secret_store
from ..db import execute, query
from ..fleet.common import Invalid, NotFound, int_between
from . import chat

EVENTS = ("failure", "recovery", "stale", "digest", "missed", "pool", "server", "session")
# The subscription's event of each message's event that is not one itself: a pool's or a server's
# recovery goes to those who chose its alerts.
SUBSCRIPTION_OF = {"pool_recovery": "pool", "server_recovery": "server", "session_started": "session",
                   "session_stopped": "session", "session_removed": "session"}
# 0 turns a threshold off; percentages up to 100, days up to a year.
THRESHOLDS = {"pool_full_days": 366, "server_disk_percent": 100, "server_memory_percent": 100,
              "server_cpu_percent": 100}
SECURITY = ("none", "starttls", "tls")
FREQUENCIES = ("off", "daily", "weekly")
SECRETS = ("smtp_password", "webhook_secret", "apprise_urls")

_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,253})|\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Fa-f:.]{2,45}")
# A mailbox as a person types it: local@domain, no spaces, no header characters.
EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
_TIME_RE = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_NO_NEWLINE_RE = re.compile(r"[^\r\n\0]{0,255}")


def _raw(db):
    return query(db, "SELECT * FROM notification_settings WHERE id=1", one=True)


def get_settings(db):
    """The settings as shown to an admin: no secret, only whether each is set."""
    row = dict(_raw(db))
    for name in SECRETS:
        row[f"{name}_set"] = bool(row.pop(name))
    row.pop("id")
    return row


def secret(cfg, db, name):
    """A decrypted secret (smtp_password, webhook_secret, apprise_urls), '' when not set. Worker and web
    side only."""
    stored = _raw(db)[name]
    return secret_store.decrypt(cfg, stored) if stored else ""


def _url(value, what):
    if value == "":
        return value
    parts = urlsplit(value) if isinstance(value, str) else None
    if not parts or parts.scheme not in ("http", "https") or not parts.hostname or any(c in value for c in "\r\n\0 "):
        raise Invalid(_("%(what)s must be an http:// or https:// URL", what=what))
    return value


def email_address(value, what, empty=False):
    if empty and value == "":
        return value
    if not isinstance(value, str) or not EMAIL_RE.fullmatch(value):
        raise Invalid(_("%(what)s %(value)r is not an email address", what=what, value=value))
    return value


def _checked(key, v):
    if key == "smtp_host":
        if v != "" and (not isinstance(v, str) or not _HOST_RE.fullmatch(v)):
            raise Invalid(_("smtp_host %(v)r is not a host name or address", v=v))
        return v
    if key == "smtp_port":
        return int_between(v, "smtp_port", 1, 65535)
    if key == "smtp_security":
        if v not in SECURITY:
            raise Invalid(_("smtp_security must be one of %(choices)s", choices=', '.join(SECURITY)))
        return v
    if key == "smtp_user":
        if not isinstance(v, str) or not _NO_NEWLINE_RE.fullmatch(v):
            raise Invalid(_("smtp_user must be one line of at most 255 characters"))
        return v
    if key == "smtp_sender":
        return email_address(v, "smtp_sender", empty=True)
    if key in ("base_url", "webhook_url"):
        return _url(v, key).rstrip("/") if key == "base_url" else _url(v, key)
    if key == "digest_frequency":
        if v not in FREQUENCIES:
            raise Invalid(_("digest_frequency must be one of %(choices)s", choices=', '.join(FREQUENCIES)))
        return v
    if key == "digest_time":
        if not isinstance(v, str) or not _TIME_RE.fullmatch(v):
            raise Invalid(_("digest_time must be HH:MM (24 h)"))
        return v
    if key in THRESHOLDS:
        return int_between(v, key, 0, THRESHOLDS[key])
    if key == "stale_margin_minutes":
        return int_between(v, "stale_margin_minutes", 0, 60 * 24 * 30)
    if key == "digest_weekday":
        return int_between(v, "digest_weekday (0 = Monday)", 0, 6)
    if key == "digest_timezone":
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise Invalid(_("digest_timezone %(v)r is not a known time zone", v=v)) from None
        return v
    raise Invalid(_("unknown notification setting %(key)s", key=key))


def update_settings(cfg, db, data):
    """Change the settings given. A secret: a string sets it (encrypted), '' or null clears it,
    absent keeps it."""
    for key, v in data.items():
        if key == "apprise_urls":
            urls = chat.check_urls(v) if v not in (None, "") else []
            stored = secret_store.encrypt(cfg, "\n".join(urls)) if urls else None
        elif key in SECRETS:
            if v not in (None, "") and (not isinstance(v, str) or len(v) > 512 or "\n" in v or "\0" in v):
                raise Invalid(_("%(key)s must be one line of at most 512 characters", key=key))
            stored = secret_store.encrypt(cfg, v) if v else None
        else:
            stored = _checked(key, v)
        # Column names come from the checks above (unknown keys were refused), never from the request.
        execute(db, f"UPDATE notification_settings SET {key}=%s WHERE id=1", (stored,))
    if "digest_frequency" in data or "digest_time" in data or "digest_weekday" in data or "digest_timezone" in data:
        # A new digest time counts from now on: none is sent for a due time before the change.
        execute(db, "UPDATE notification_settings SET digest_last_due=NULL WHERE id=1")
    return get_settings(db)


# --- subscriptions ---
def _sub_out(row):
    return {"user_id": row["user_id"], "username": row.get("username"), "email": row["email"],
            "events": json.loads(row["events_json"]),
            "backup_job_ids": json.loads(row["backup_job_ids_json"]) if row["backup_job_ids_json"] else None,
            "enabled": bool(row["enabled"])}


def get_subscription(db, user_id):
    row = query(db, "SELECT s.*, u.username FROM notification_subscriptions s JOIN users u ON u.id=s.user_id"
                    " WHERE s.user_id=%s", (user_id,), one=True)
    return _sub_out(row) if row else None


def list_subscriptions(db):
    return [_sub_out(r) for r in query(db, "SELECT s.*, u.username FROM notification_subscriptions s"
                                           " JOIN users u ON u.id=s.user_id ORDER BY u.username")]


def put_subscription(db, user_id, data):
    """Create or replace a user's subscription: email (required), events (default all: EVENTS), backup_job_ids
    (null or absent: all backup jobs), enabled (default true)."""
    if not query(db, "SELECT id FROM users WHERE id=%s", (user_id,), one=True):
        raise NotFound(_("no user %(user_id)s", user_id=user_id))
    unknown = set(data) - {"email", "events", "backup_job_ids", "enabled"}
    if unknown:
        raise Invalid(_("unknown fields: %(fields)s", fields=sorted(unknown)))
    email = email_address(data.get("email"), "email")
    events = data.get("events", list(EVENTS))
    if not isinstance(events, list) or any(e not in EVENTS for e in events):
        raise Invalid(_("events must be a list of %(choices)s", choices=', '.join(EVENTS)))
    ids = data.get("backup_job_ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise Invalid(_("backup_job_ids must be a list of backup job ids, or null for all"))
        known = {r["id"] for r in query(db, "SELECT id FROM backup_jobs")}
        missing = sorted(set(ids) - known)
        if missing:
            raise Invalid(_("no backup job %(id)s", id=missing[0]))
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid(_("enabled must be true or false"))
    execute(db, "INSERT INTO notification_subscriptions (user_id, email, events_json, backup_job_ids_json, enabled)"
                " VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE email=VALUES(email),"
                " events_json=VALUES(events_json), backup_job_ids_json=VALUES(backup_job_ids_json),"
                " enabled=VALUES(enabled)",
            (user_id, email, json.dumps(sorted(set(events), key=EVENTS.index)),
             json.dumps(sorted(set(ids))) if ids is not None else None, int(enabled)))
    return get_subscription(db, user_id)


def delete_subscription(db, user_id):
    return execute(db, "DELETE FROM notification_subscriptions WHERE user_id=%s", (user_id,))


def subscriptions(db):
    """The subscriptions of enabled users that are enabled (what recipients filters)."""
    return [_sub_out(row) for row in query(db, "SELECT s.* FROM notification_subscriptions s JOIN users u ON"
                                               " u.id=s.user_id WHERE s.enabled=1 AND u.disabled=0 ORDER BY s.user_id")]


def recipients(db, event, backup_job_id=None, subs=None):
    """The addresses subscribed to an event (of this backup job), enabled users only; subs: the
    subscriptions already read (many messages at once)."""
    event = SUBSCRIPTION_OF.get(event, event)
    out = []
    for sub in subscriptions(db) if subs is None else subs:
        if event not in sub["events"]:
            continue
        if backup_job_id is not None and sub["backup_job_ids"] is not None and backup_job_id not in sub["backup_job_ids"]:
            continue
        if sub["email"] not in out:
            out.append(sub["email"])
    return out


# --- ping URLs (healthchecks style) ---
def list_pings(db):
    return query(db, "SELECT p.backup_job_id, p.url, b.name AS backup_job, c.name AS client FROM notification_pings p"
                     " JOIN backup_jobs b ON b.id=p.backup_job_id JOIN servers c ON c.id=b.client_id"
                     " ORDER BY c.name, b.name")


def set_ping(db, backup_job_id, url):
    if not query(db, "SELECT id FROM backup_jobs WHERE id=%s", (backup_job_id,), one=True):
        raise NotFound(_("no backup job %(backup_job_id)s", backup_job_id=backup_job_id))
    if not url:
        raise Invalid(_("url is required (an http:// or https:// URL)"))
    url = _url(url, "url").rstrip("/")
    execute(db, "INSERT INTO notification_pings (backup_job_id, url) VALUES (%s, %s)"
                " ON DUPLICATE KEY UPDATE url=VALUES(url)", (backup_job_id, url))
    return {"backup_job_id": backup_job_id, "url": url}


def delete_ping(db, backup_job_id):
    return execute(db, "DELETE FROM notification_pings WHERE backup_job_id=%s", (backup_job_id,))


def ping_url(db, backup_job_id):
    row = query(db, "SELECT url FROM notification_pings WHERE backup_job_id=%s", (backup_job_id,), one=True)
    return row["url"] if row else None
