"""The backup wizard's choices (/backup-jobs/new): presets of paths, excludes, schedules and
retentions, and what the wizard's steps add up to, as the data create_backup_job takes.

Presets are values only: the contract (paths, exclude, retention) and backup_jobs (cron, time zone)
judge them as they judge anything typed; tests/ui/test_backup_wizard.py runs every preset through them."""
import secrets
from datetime import timezone
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l

from ..contract import contract
from .backup_jobs import next_runs

# key -> (label, paths); the labels are shown in the page's language (lazy_gettext).
PATH_PRESETS = {
    "config": (_l("System configuration"), ["/etc"]),
    "home": (_l("Home directories"), ["/home", "/root"]),
    "web": (_l("Web roots"), ["/var/www", "/srv"]),
    "logs": (_l("Logs"), ["/var/log"]),
}
# key -> (label, borg patterns): `sh:` patterns, so ** spans directories.
EXCLUDE_PRESETS = {
    "caches": (_l("Caches"), ["sh:**/.cache", "sh:/var/cache/*", "sh:**/node_modules"]),
    "tmp": (_l("Temporary files"), ["sh:/tmp/*", "sh:/var/tmp/*", "sh:**/*.tmp", "sh:**/*.swp"]),
    "trash": (_l("Trash"), ["sh:**/.local/share/Trash"]),
}
# key -> (label, cron expression or None: run by hand only)
SCHEDULE_PRESETS = {
    "hourly": (_l("Every hour, on the hour"), "0 * * * *"),
    "6h": (_l("Every 6 hours"), "0 */6 * * *"),
    "daily": (_l("Daily at 02:00"), "0 2 * * *"),
    "weekly": (_l("Weekly, Sunday at 03:00"), "0 3 * * 0"),
    "monthly": (_l("Monthly, the 1st at 04:00"), "0 4 1 * *"),
    "manual": (_l("Manual only (Run now)"), None),
}
DEFAULT_SCHEDULE = "daily"
# key -> (label, retention or None: never prune)
RETENTION_PRESETS = {
    "standard": (_l("7 daily, 4 weekly, 6 monthly"), {"daily": 7, "weekly": 4, "monthly": 6}),
    "frequent": (_l("24 hourly, 7 daily, 4 weekly"), {"hourly": 24, "daily": 7, "weekly": 4}),
    "short": (_l("14 daily"), {"daily": 14}),
    "long": (_l("30 daily, 12 monthly, 5 yearly"), {"daily": 30, "monthly": 12, "yearly": 5}),
    "forever": (_l("Keep every archive (never prune)"), None),
}
DEFAULT_RETENTION = "standard"

# What `databases: [{method: ...}]` does (docs/contract.md, plugins/module_utils/db_backup.py), one sentence each.
METHODS = {
    "auto": _l("Decided at each backup: a snapshot when the data directory, WAL and tablespaces are all on "
               "btrfs or LVM, else a dump."),
    "snapshot": _l("The database is quiesced for a moment, its btrfs or LVM volume snapshotted and the data "
                   "directory archived from the read-only snapshot (restorable as files, verifiable by starting "
                   "it); fails on plain storage."),
    "dump": _l("A logical dump (mariadb-dump, pg_dump/pg_dumpall, mongodump) into one file per archive: any "
               "storage, restored by loading it, not verifiable by starting it."),
}

GENERATED_PASSPHRASE_BYTES = 24   # 32 characters of token_urlsafe: 192 random bits


def generate_passphrase():
    return secrets.token_urlsafe(GENERATED_PASSPHRASE_BYTES)


def chosen(presets, keys):
    """The values of the preset keys chosen, in preset order, each once (unknown keys ignored)."""
    out = []
    for key in presets:
        if key in keys:
            out += [v for v in presets[key][1] if v not in out]
    return out


def with_lines(values, text):
    """values followed by the non-empty lines of text not among them."""
    out = list(values)
    for line in (text or "").splitlines():
        line = line.strip()
        if line and line not in out:
            out.append(line)
    return out


def suggest_name(database, taken):
    """A backup name for the choice (the database's key, else "files"), not among taken."""
    base = database["key"] if database else "files"
    base = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in base)[:60] or "files"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def database_entry(database, method):
    """The `databases` entry of a backup of a detected database (facts.databases row) by method."""
    if method not in contract.DATABASE_METHODS:
        method = "auto"
    return dict(database["entry"], method=method)


def draft(state):
    """The wizard's state so far as create_backup_job's data (the passphrase apart)."""
    data = {"client_id": state.get("client_id"), "name": state.get("name"),
            "paths": state.get("paths") or [], "exclude": state.get("exclude") or [],
            "databases": state.get("databases") or [], "timezone": state.get("timezone") or "UTC",
            "schedule": state.get("schedule") or "", "retention": state.get("retention")}
    if state.get("pool_id"):
        data["pool_id"] = state["pool_id"]
    return data


def run_times(schedule, tz, count=5, after=None):
    """The next runs of a schedule (backup_jobs.next_runs, the scheduler's own computation) as shown:
    [{utc, local (ISO 8601), text (in the zone, with its abbreviation: CET/CEST), utc_text}]."""
    runs = next_runs(schedule, tz, count, after)   # checks the schedule and the zone first
    zone = ZoneInfo(tz)
    out = []
    for t in runs:
        aware = t.replace(tzinfo=timezone.utc)
        local = aware.astimezone(zone)
        out.append({"utc": aware.isoformat().replace("+00:00", "Z"), "local": local.isoformat(),
                    "text": local.strftime("%a %Y-%m-%d %H:%M %Z"), "utc_text": aware.strftime("%Y-%m-%d %H:%M UTC")})
    return out
