"""The service's settings (name, default time zone, stats interval, pool warning), as name/value rows."""
import re

from flask_babel import gettext as _

from ..db import execute, query
from .common import Invalid, about, matching


def get_settings(db):
    return {r["name"]: r["value"] for r in query(db, "SELECT name, value FROM settings")}


def update_settings(db, data):
    allowed = {"app_name": re.compile(r"[^\n<>]{1,64}"), "stats_interval_minutes": re.compile(r"\d{1,4}"),
               # A pool used beyond this percentage is flagged (pools page, analyze_pools.yml).
               "pool_warn_percent": re.compile(r"[1-9]\d?|100"),
               # "0": a setup is not followed by a capabilities detection (Reload capabilities still is).
               "detect_after_setup": re.compile(r"[01]"),
               # The time zone of a new backup job that names none (its schedule is read in it).
               "default_timezone": re.compile(r"[A-Za-z0-9_+/-]{1,64}"),
               # Log lines of finished jobs older than this many days are deleted ("0": kept forever).
               "job_log_retention_days": re.compile(r"\d{1,5}")}
    for k in data:
        if k not in allowed:
            raise Invalid(_("unknown setting %(k)s", k=k), k)
    for k, v in data.items():   # all judged before any is written
        with about(k):
            matching(allowed[k], str(v), k)
        if k == "default_timezone":
            from .backup_jobs import check_timezone   # here: backup_jobs imports this module
            try:
                check_timezone(v)
            except Invalid as err:
                raise Invalid(str(err), k) from None
    for k, v in data.items():
        execute(db, "INSERT INTO settings (name, value) VALUES (%s, %s) ON DUPLICATE KEY UPDATE value=VALUES(value)",
                (k, str(v)))
    return get_settings(db)


def default_timezone(db):
    row = query(db, "SELECT value FROM settings WHERE name='default_timezone'", one=True)
    return row["value"] if row else "UTC"
