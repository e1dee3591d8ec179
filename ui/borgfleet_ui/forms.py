"""The pages' forms: how each one's typed fields become the data of the fleet operation it posts to,
and that operation's verdict on them field by field, without saving anything.

A page's POST and the inline check (POST /api/validate/<form>, static/validate.js) run the same
parse and the same fleet function (its dry run): a field is judged by the rules the API applies
(the collection's contract and the fleet validators), with the API's message. No rule lives here.
"""
import json
from typing import Callable, NamedTuple

from flask_babel import gettext as _

from . import fleet
from .contract import contract
from .fleet.common import Forbidden, Invalid

FORM_ERROR = "_form"   # the key of a refusal that names no field


class Form(NamedTuple):
    inputs: tuple        # the form's input names
    parse: Callable      # (values: a MultiDict of typed text, ctx) -> (data, {input: message})
    judge: Callable      # (db, data, ctx): the operation's dry run; raises Invalid/Forbidden naming a field
    aliases: dict = {}   # the operation's field -> the input that shows its message, where they differ
    neutral: dict = {}   # a passing value per field, to judge the other fields past a refused one
    context: str = ""    # the id the form acts on (ctx key), when it edits something


class Parsed:
    """Collects a form's data and the fields whose text could not even be read (JSON)."""

    def __init__(self, values):
        self.values, self.data, self.errors = values, {}, {}

    def text(self, name, default=None):
        value = (self.values.get(name) or "").strip()
        return value or default

    def lines(self, name):
        return [x.strip() for x in (self.values.get(name) or "").splitlines() if x.strip()]

    def number(self, name):
        value = self.text(name)
        return int(value) if value and value.isdigit() else None

    def json(self, name, default):
        raw = self.text(name)
        if not raw:
            return default
        try:
            return json.loads(raw)
        except ValueError:
            self.errors[name] = _("%(name)s must be JSON", name=name)
            return default

    def done(self):
        return self.data, self.errors


# --- servers (add) ---

def _server_parse(values, ctx):
    p = Parsed(values)
    data = {k: p.text(k) for k in ("name", "role", "address", "port", "ssh_user", "connection", "local_pool_path")}
    data["backup_server_id"] = p.number("backup_server_id")
    data["vars"] = p.json("vars", {})
    if p.text("pool_path"):
        data["pools"] = [{"name": p.text("pool_name", "main"), "path": p.text("pool_path")}]
    p.data = {k: v for k, v in data.items() if v is not None}
    return p.done()


def _server_judge(db, data, ctx):
    fleet.servers.create_server(db, data, admin=ctx.get("admin", False), dry_run=True)


# --- a server (its edit page) ---

def _server_edit_parse(values, ctx):
    p = Parsed(values)
    # Name and address are always sent ("" is refused as such); the others keep their value when empty.
    data = {"name": (values.get("name") or "").strip(), "address": (values.get("address") or "").strip()}
    data.update({k: p.text(k) for k in ("role", "connection", "port", "ssh_user", "local_pool_path")})
    data["backup_server_id"] = p.number("backup_server_id")
    p.data = {k: v for k, v in data.items() if v is not None}
    return p.done()


def _server_edit_judge(db, data, ctx):
    fleet.servers.update_server(db, ctx["server_id"], data, admin=ctx.get("admin", False), dry_run=True)


# --- backup jobs (add) ---

def _backup_job_parse(values, ctx):
    p = Parsed(values)
    p.data = {"client_id": p.number("client_id"), "name": p.text("name"), "paths": p.lines("paths"),
              "exclude": p.lines("exclude"), "databases": p.json("databases", []),
              "passphrase": values.get("passphrase") or None, "schedule": p.text("schedule"),
              "verify_schedule": p.text("verify_schedule"), "timezone": p.text("timezone"),
              "retention": p.json("retention", None)}
    return p.done()


def _backup_job_judge(db, data, ctx):
    fleet.backup_jobs.create_backup_job(db, None, data, dry_run=True)


# --- a backup job's retention and prune schedule (its page) ---

def retention_of(values):
    """The retention inputs as a retention ({} when all are empty); the contract judges it."""
    out = {}
    for key in contract.RETENTION_KEYS:
        value = (values.get(key) or "").strip()
        if value:
            out[key] = int(value) if key != "within" and value.isdigit() else value
    return out


def _retention_parse(values, ctx):
    p = Parsed(values)
    p.data = {"retention": retention_of(values), "prune_schedule": p.text("prune_schedule", "")}
    return p.done()


def _update_judge(db, data, ctx):
    fleet.backup_jobs.update_backup_job(db, None, ctx["backup_job_id"], data, dry_run=True)


# --- a backup job's schedule, time zone, excludes, compression (its page) ---

def _bj_settings_parse(values, ctx):
    p = Parsed(values)
    p.data = {"schedule": p.text("schedule", ""), "timezone": p.text("timezone"), "exclude": p.lines("exclude"),
              "compression": p.text("compression")}
    if "verify_schedule" in values:   # only database backups taken from a snapshot have one
        p.data["verify_schedule"] = p.text("verify_schedule", "")
    p.data = {k: v for k, v in p.data.items() if v is not None}
    return p.done()


# --- a backup job's check settings (its page) ---

def _check_parse(values, ctx):
    p = Parsed(values)
    p.data = {"check_schedule": p.text("check_schedule", ""), "check_scope": p.text("check_scope"),
              "check_verify_data": bool(values.get("verify_data"))}
    return p.done()


# --- the restore wizard's target ---

def _restore_parse(values, ctx):
    p = Parsed(values)
    original = (values.get("where") or "original") == "original"
    p.data = {"paths": [x for x in values.getlist("sel") if x.strip("/")], "client_id": p.number("client_id"),
              "target": "/" if original else p.text("target_dir", ""), "overwrite": bool(values.get("overwrite")),
              "backup_dir": p.text("backup_dir"), "dry_run": bool(values.get("dry_run"))}
    if not original and not p.data["target"]:
        p.errors["target_dir"] = _("name the directory to restore into")
    return p.done()


def _restore_judge(db, data, ctx):
    fleet.restores.restore(db, None, ctx["archive_id"], data, None, judge_only=True)


FORMS = {
    "server": Form(("name", "role", "connection", "address", "port", "ssh_user", "backup_server_id",
                    "local_pool_path", "pool_name", "pool_path", "vars"),
                   _server_parse, _server_judge, aliases={"pools": "pool_path"},
                   neutral={"name": "validation-probe", "address": "127.0.0.1", "port": 22, "ssh_user": "root"}),
    "server_edit": Form(("name", "role", "connection", "address", "port", "ssh_user", "backup_server_id",
                         "local_pool_path"),
                        _server_edit_parse, _server_edit_judge, context="server_id"),
    "backup_settings": Form(("schedule", "timezone", "exclude", "compression", "verify_schedule"),
                            _bj_settings_parse, _update_judge, context="backup_job_id"),
    "backup_job": Form(("client_id", "name", "passphrase", "paths", "exclude", "databases", "retention",
                        "schedule", "verify_schedule", "timezone"),
                       _backup_job_parse, _backup_job_judge,
                       neutral={"name": "validation-probe", "passphrase": "validation-probe", "paths": ["/"],
                                "exclude": [], "databases": [], "timezone": "UTC"}),
    "retention": Form(("within", "secondly", "minutely", "hourly", "daily", "weekly", "monthly", "yearly",
                       "prune_schedule", "retention"),
                      _retention_parse, _update_judge, context="backup_job_id"),
    "check": Form(("check_schedule", "check_scope", "verify_data"), _check_parse, _update_judge,
                  aliases={"check_verify_data": "verify_data"}, context="backup_job_id"),
    "restore": Form(("client_id", "where", "target_dir", "overwrite", "backup_dir", "dry_run", "sel"),
                    _restore_parse, _restore_judge, aliases={"target": "target_dir", "paths": "sel"},
                    context="archive_id"),
}


def verdict(db, name, values, ctx):
    """{input: message} of form `name` with these typed values ({} when the operation would accept
    them). The operation stops at its first refusal: that field is then given a passing value (or
    left out: the operation's default, an edited row's current value) and the rest judged again,
    so each field gets the message the operation gives it."""
    form = FORMS[name]
    data, errors = form.parse(values, ctx)
    for key in errors:   # unreadable text: judge the rest without it
        data.pop({v: k for k, v in form.aliases.items()}.get(key, key), None)
    for _attempt in range(len(form.inputs) + 1):
        try:
            form.judge(db, data, ctx)
            break
        except (Invalid, Forbidden) as err:
            field = err.field
            shown = form.aliases.get(field, field) if field else FORM_ERROR
            if shown not in errors:
                errors[shown] = str(err)
            if field in form.neutral:
                if data.get(field) == form.neutral[field]:
                    break
                data[field] = form.neutral[field]
            elif field and field in data:
                data.pop(field)
            else:
                break
    return errors
