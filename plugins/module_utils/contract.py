# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: the inventory contract, stated once (docs/contract.md).

What a valid backup, pool, retention, name, host and database entry is, and how a client's
backups resolve into repositories. Pure Python with no Ansible import: the filter plugin, the
modules and the service (ui/borgfleet_ui/contract.py loads this very file) all call it, so a
definition is refused everywhere with the same plain message (one ContractError).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

try:
    from collections.abc import Mapping
except ImportError:  # pragma: no cover - Python 2 controllers are not supported, sanity compiles
    Mapping = dict


class Text(object):
    """A message with named parameters: `template` is English ("pool %(name)r ..."), `params` its
    values (data, or a Text for a phrase inside the message). str() is the English text the
    collection prints; the service renders it through its French catalog (render(gettext)): the
    templates are extracted from this file by pybabel (ui/babel.cfg, keywords _fail and Text)."""

    def __init__(self, template, **params):
        self.template = template
        self.params = params

    def render(self, translate=None):
        text = translate(self.template) if translate else self.template
        if not self.params:
            return text
        return text % dict((k, v.render(translate) if isinstance(v, Text) else v) for k, v in self.params.items())

    def __str__(self):
        return self.render()


class ContractError(ValueError):
    """A definition breaks the contract; str() is the plain (English) message for the operator;
    `template` and `params` (a Text's) let the service say it in the reader's language."""

    def __init__(self, message, **params):
        self.text = message if isinstance(message, Text) else Text(message, **params)
        self.template, self.params = self.text.template, self.text.params
        ValueError.__init__(self, str(self.text))

    def render(self, translate=None):
        return self.text.render(translate)


def _fail(template, **params):
    raise ContractError(template, **params)


# Backup names end up in paths, archive names and URLs: keep them boring.
BACKUP_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
# Client names become a path component on the server (<pool>/<client>).
CLIENT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,252}\Z")
# Pool paths go inside the forced command="..." of authorized_keys, so no quotes,
# spaces or shell syntax can be allowed in them.
POOL_PATH_RE = re.compile(r"/[A-Za-z0-9/._-]*\Z")
POOL_NAME_RE = BACKUP_NAME_RE
SERVER_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")
# One DNS label; '_' is accepted because /etc/hosts and inventories use it.
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")
# Anything typed that reaches a tool: no NUL, newline or other control character.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
MAX_PATH = 4096

RETENTION_KEYS = ("within", "secondly", "minutely", "hourly", "daily", "weekly", "monthly", "yearly")
# borg's --keep-within units (hours, days, weeks, months, years).
RETENTION_WITHIN_RE = re.compile(r"[0-9]+[Hdwmy]\Z")
# borg compression specs: none, lz4, zstd[,1-22], zlib[,0-9], lzma[,0-9], optionally after auto,
_COMPRESSION_RE = re.compile(r"(auto,)?(none|lz4|zstd(,([1-9]|1[0-9]|2[0-2]))?|zlib(,[0-9])?|lzma(,[0-9])?)\Z")

# Keys a backup may carry; others draw an error so that a typo such as `exlude`
# cannot silently back up what it was meant to skip.
BACKUP_KEYS = frozenset((
    "name", "paths", "exclude", "exclude_caches", "one_file_system", "compression",
    "files_cache", "passphrase", "passcommand", "encryption", "append_only", "pool",
    "retention", "schedule", "timezone", "enabled", "description", "databases",
    "snapshot",
))
PASSED_ON_KEYS = ("timezone", "enabled", "description", "databases", "snapshot")

# `databases:` of a backup (issue 4): one database per backup, refused keys as for backups.
DATABASE_ENGINES = ("mariadb", "mysql", "postgresql", "mongodb")
DATABASE_METHODS = ("auto", "snapshot", "dump")
DATABASE_KEYS = frozenset((
    "engine", "method", "datadir", "extra_paths", "database", "login_user", "login_password",
    "login_host", "login_port", "login_unix_socket", "defaults_file", "os_user", "freeze_timeout",
    "postgresql_mode", "lvm_snapshot_size",
))
POSTGRESQL_MODES = ("auto", "checkpoint", "backup")
# Database and user names reach dump tools' argv: never an option (no leading '-'), no '/'
# (the dump's file name inside the archive), ASCII only.
DATABASE_NAME_RE = re.compile(r"[A-Za-z0-9_$][A-Za-z0-9_$.-]{0,63}\Z")
DATABASE_USER_RE = re.compile(r"[A-Za-z0-9_$][A-Za-z0-9_$.@-]{0,79}\Z")
OS_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
LVM_SIZE_RE = re.compile(r"[0-9]+(\.[0-9]+)?(%(ORIGIN|VG|FREE|PVS)|[bBsSkKmMgGtTpPeE]?)\Z")

DEFAULT_LOCAL_POOL_PATH = "/var/lib/borgfleet/repos"
DEFAULT_SERVER_USER = "borg"
LOCAL = "local"

# Seconds a stopped borg (timeout, cancel, playbook gone) gets between SIGINT and SIGKILL
# (module_utils/_process.py); the service keeps the repository's lock until it has passed.
BORG_STOP_GRACE = 20


def as_list(value, what):
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        _fail("%(what)s must be a list, got %(value)r", what=what, value=value)
    return list(value)


def _bool(value, what):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    _fail("%(what)s must be a boolean, got %(value)r", what=what, value=value)


def _clean_text(value, max_len=MAX_PATH):
    return isinstance(value, str) and 0 < len(value) <= max_len and not _CONTROL_RE.search(value)


def is_absolute_path(value):
    """An absolute path without control characters (so never an option, never two lines)."""
    return _clean_text(value) and value.startswith("/")


# --- names and hosts ---

def _where(client, name):
    """The place in the inventory most messages start with."""
    return Text("client %(client)r, backup %(name)r", client=client, name=name)


def check_backup_name(name, client):
    if not isinstance(name, str) or not BACKUP_NAME_RE.match(name):
        _fail("client %(client)r: invalid backup name %(name)r: use 1-64 letters, digits, '.', '_' or '-', "
              "starting with a letter or digit", client=client, name=name)
    return name


def check_client_name(client):
    client = str(client)
    if not CLIENT_NAME_RE.match(client):
        _fail("client inventory name %(client)r cannot be used as a directory name", client=client)
    return client


def host_problem(value):
    """'' when `value` is a host name, IPv4 or IPv6 address ssh can take, else why not.

    Host names reach argv (ssh, ssh-keyscan) and URLs: never a leading '-', no spaces or
    control characters, no IPv6 zone (it breaks ssh:// URLs)."""
    if not isinstance(value, str) or not value:
        return Text("is empty or not a string")
    host = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if ":" in host or host != value:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return Text("is not a valid IPv6 address")
        return "" if "%" not in host else Text("has an IPv6 zone, which ssh:// URLs cannot carry")
    labels = host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL_RE.match(label) for label in labels):
        return Text("is not a host name, IPv4 or IPv6 address")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return Text("is not a valid IPv4 address")
    return ""


def normalize_host(value):
    """The host as ssh and known_hosts want it: an IPv6 literal without brackets."""
    return value[1:-1] if value.startswith("[") and value.endswith("]") else value


def check_host(value, what):
    problem = host_problem(value)
    if problem:
        _fail("%(what)s %(value)r %(problem)s", what=what, value=value, problem=problem)
    return normalize_host(value)


def ssh_url(user, host, port, path):
    """ssh://user@host:port/path, an IPv6 literal in brackets."""
    host = normalize_host(host)
    if ":" in host:
        host = "[%s]" % host
    return "ssh://%s@%s:%d%s" % (user, host, int(port), path)


def known_hosts_name(host, port):
    """The name under which ssh looks a server up in known_hosts."""
    port = int(port)
    host = normalize_host(str(host))
    return host if port == 22 else "[%s]:%d" % (host, port)


# --- backup servers and pools ---

def pool_path_problem(path):
    if (not isinstance(path, str) or not POOL_PATH_RE.match(path) or path == "/" or len(path) > MAX_PATH
            or any(part in ("", ".", "..") for part in path.split("/")[1:])):
        return Text("must be absolute and made of letters, digits, '/', '.', '_' or '-' only (no '.' or '..' part)")
    return ""


def _inside(inner, outer):
    return inner == outer or inner.startswith(outer + "/")


def check_pools(server, pools, home=None):
    """Validated [{name, path}] of a backup server; no pool inside another (nor holding the
    borg user's home): `--restrict-to-path <pool>/<client>` must never cover another client's
    repositories or the account's authorized_keys."""
    pools = as_list(pools, Text("borgfleet_storage_pools of backup server %(server)r", server=server))
    if not pools:
        _fail("backup server %(server)r has no borgfleet_storage_pools (a list of {name, path})", server=server)
    checked = []
    for pool in pools:
        if not isinstance(pool, Mapping) or "name" not in pool or "path" not in pool:
            _fail("backup server %(server)r: each storage pool needs a name and a path, got %(pool)r",
                  server=server, pool=pool)
        name, path = pool["name"], pool["path"]
        if isinstance(path, str) and len(path) > 1:
            path = path.rstrip("/") or "/"
        if not isinstance(name, str) or not POOL_NAME_RE.match(name):
            _fail("backup server %(server)r: invalid pool name %(name)r", server=server, name=name)
        problem = pool_path_problem(path)
        if problem:
            _fail("backup server %(server)r, pool %(name)r: path %(path)r %(problem)s",
                  server=server, name=name, path=path, problem=problem)
        for other in checked:
            if other["name"] == name:
                _fail("backup server %(server)r: duplicate pool name %(name)r", server=server, name=name)
            if _inside(path, other["path"]) or _inside(other["path"], path):
                outer, inner = (other, {"name": name, "path": path}) if _inside(path, other["path"]) \
                    else ({"name": name, "path": path}, other)
                _fail("backup server %(server)r: pool %(inner)r (%(inner_path)s) is inside pool %(outer)r "
                      "(%(outer_path)s): a client's --restrict-to-path <pool>/<client> would reach other "
                      "clients' repositories; give each pool a directory of its own",
                      server=server, inner=inner["name"], inner_path=inner["path"], outer=outer["name"],
                      outer_path=outer["path"])
        if home and isinstance(home, str) and home.startswith(path + "/"):
            _fail("backup server %(server)r, pool %(name)r: path %(path)r holds the home of the borg user "
                  "(%(home)s): a client's --restrict-to-path could reach its authorized_keys; put the pool elsewhere",
                  server=server, name=name, path=path, home=home)
        checked.append({"name": name, "path": path})
    return checked


def server_settings(server, server_vars):
    """How clients reach a backup server and where its pools are (contract defaults applied)."""
    if server_vars is None:
        _fail("backup server %(server)r is not in the inventory", server=server)
    user = str(server_vars.get("borgfleet_server_user") or DEFAULT_SERVER_USER)
    if not SERVER_USER_RE.match(user):
        _fail("backup server %(server)r: invalid borgfleet_server_user %(user)r", server=server, user=user)
    home = str(server_vars.get("borgfleet_server_user_home") or "/var/lib/%s" % user).rstrip("/")
    if not is_absolute_path(home) or home == "":
        _fail("backup server %(server)r: borgfleet_server_user_home %(home)r must be an absolute path",
              server=server, home=home)
    pools = check_pools(server, server_vars.get("borgfleet_storage_pools"), home)
    host = server_vars.get("borgfleet_server_ssh_host") or server_vars.get("ansible_host") or server
    host = check_host(str(host), Text("backup server %(server)r: ssh host (borgfleet_server_ssh_host, else "
                                      "ansible_host, else its inventory name)", server=server))
    port = server_vars.get("borgfleet_server_ssh_port") or server_vars.get("ansible_port") or 22
    try:
        port = int(port)
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        _fail("backup server %(server)r: invalid ssh port %(port)r", server=server,
              port=server_vars.get("borgfleet_server_ssh_port") or server_vars.get("ansible_port"))
    return {"name": server, "pools": pools, "user": user, "home": home, "ssh_host": host, "ssh_port": port}


# --- one backup ---

def check_retention(value, client, name):
    """The effective retention ({key: count}, 'within'), or None to never prune."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        _fail("client %(client)r, backup %(name)r: retention must be a mapping of %(keys)s",
              client=client, name=name, keys=", ".join(RETENTION_KEYS))
    unknown = sorted(str(k) for k in set(value) - set(RETENTION_KEYS))
    if unknown:
        _fail("client %(client)r, backup %(name)r: unknown retention key(s) %(unknown)s (known: %(known)s)",
              client=client, name=name, unknown=", ".join(unknown), known=", ".join(RETENTION_KEYS))
    out = {}
    for key in RETENTION_KEYS[1:]:
        if value.get(key) is not None:
            try:
                count = int(value[key])
            except (TypeError, ValueError):
                count = -1
            if count < 0:
                _fail("client %(client)r, backup %(name)r: retention.%(key)s must be a non-negative integer, "
                      "got %(value)r", client=client, name=name, key=key, value=value[key])
            if count:
                out[key] = count
    within = value.get("within")
    if within:
        if not RETENTION_WITHIN_RE.match(str(within)):
            _fail("client %(client)r, backup %(name)r: retention.within must look like 2d, 12H, 1w, 6m or 1y, "
                  "got %(within)r", client=client, name=name, within=within)
        out["within"] = str(within)
    if not out:
        # daily: 0 or {} would make every prune refuse to run: say so now.
        _fail("client %(client)r, backup %(name)r: retention keeps nothing; omit retention to never prune",
              client=client, name=name)
    return out


def run_retention(value, limit, client):
    """`borgfleet_retention`: a retention given for one run of roles/prune instead of the backup's own
    (the service previews an unsaved retention with it), or None to use each backup's own. It names no
    backup, so it needs `borgfleet_backup`: one retention is never applied to every backup of a host."""
    if value is None or value == "":
        return None
    if not limit:
        _fail("client %(client)r: borgfleet_retention applies to one backup: set borgfleet_backup too",
              client=client)
    return check_retention(value, client, limit)


def check_compression(value, client, name):
    if value is None or value == "":
        return "lz4"
    if not isinstance(value, str) or not _COMPRESSION_RE.match(value):
        _fail("client %(client)r, backup %(name)r: compression %(value)r is not a borg compression spec: none, "
              "lz4, zstd[,1-22], zlib[,0-9] or lzma[,0-9], optionally after 'auto,'",
              client=client, name=name, value=value)
    return value


def check_paths(value, client, name, required):
    where = _where(client, name)
    paths = as_list(value, Text("%(where)s: paths", where=where))
    if required and not paths:
        _fail("%(where)s: paths must be a non-empty list of absolute paths (or give databases)", where=where)
    for path in paths:
        if not is_absolute_path(path):
            _fail("%(where)s: paths must be absolute paths without control characters, got %(path)r",
                  where=where, path=path)
    return paths


def check_exclude(value, client, name):
    where = _where(client, name)
    patterns = as_list(value, Text("%(where)s: exclude", where=where))
    for pattern in patterns:
        if not _clean_text(pattern):
            _fail("%(where)s: exclude must list borg patterns (non-empty text, one line each), got %(pattern)r",
                  where=where, pattern=pattern)
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as err:
                _fail("%(where)s: exclude pattern %(pattern)r is not a valid regular expression (%(error)s)",
                      where=where, pattern=pattern, error=str(err))
    return patterns


def _count(value):
    """A whole number given as a number or as digits (YAML, JSON and module options differ), else -1."""
    if isinstance(value, bool):
        return -1
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value)
    return -1


def _field_problem(key, value):
    """Why one `databases` setting is not valid ('' when it is)."""
    if key == "database":
        ok = isinstance(value, str) and DATABASE_NAME_RE.match(value)
        return "" if ok else Text("use 1-64 letters, digits, '_', '$', '.' or '-', not starting with '.' or '-'")
    if key == "login_user":
        ok = isinstance(value, str) and DATABASE_USER_RE.match(value)
        return "" if ok else Text("use 1-80 letters, digits, '_', '$', '.', '@' or '-', not starting with '.', "
                                  "'@' or '-'")
    if key == "os_user":
        ok = isinstance(value, str) and OS_USER_RE.match(value)
        return "" if ok else Text("use a system user name (letters, digits, '_', '.', '-'; not starting with '-')")
    if key == "login_host":
        return host_problem(value) and Text("use a host name, IPv4 or IPv6 address")
    if key in ("login_unix_socket", "defaults_file", "datadir"):
        return "" if is_absolute_path(value) else Text("use an absolute path without control characters")
    if key == "login_port":
        return "" if 0 < _count(value) < 65536 else Text("use a port number (1-65535)")
    if key == "freeze_timeout":
        return "" if 0 < _count(value) <= 3600 else Text("use a number of seconds (1-3600)")
    if key == "postgresql_mode":
        return "" if value in POSTGRESQL_MODES else Text("use one of %(choices)s", choices=", ".join(POSTGRESQL_MODES))
    if key == "lvm_snapshot_size":
        ok = isinstance(value, str) and LVM_SIZE_RE.match(value)
        return "" if ok else Text("use a size such as 2G or 20%ORIGIN")
    return ""


def check_database_settings(settings, where=None):
    """Validate the connection settings of one database (a `databases` entry, or a module's
    parameters): values that reach a dump tool's argv can never be taken for an option."""
    prefix = Text("%(where)s: databases ", where=where) if where else ""
    for key in ("database", "login_user", "login_host", "login_port", "login_unix_socket", "defaults_file",
                "os_user", "datadir", "freeze_timeout", "postgresql_mode", "lvm_snapshot_size"):
        value = settings.get(key)
        if value is None:
            continue
        problem = _field_problem(key, value)
        if problem:
            _fail("%(prefix)s%(key)s %(value)r is not valid: %(problem)s", prefix=prefix, key=key, value=value,
                  problem=problem)
    extra = settings.get("extra_paths")
    if extra is not None:
        for path in as_list(extra, Text("%(prefix)sextra_paths", prefix=prefix)):
            if not is_absolute_path(path):
                _fail("%(prefix)sextra_paths %(path)r is not valid: use absolute paths without control characters",
                      prefix=prefix, path=path)
    password = settings.get("login_password")
    if password is not None and (not isinstance(password, str) or _CONTROL_RE.search(password)):
        # Never echo a password: it would land in logs.
        _fail("%(prefix)slogin_password must be text on one line, without control characters", prefix=prefix)


def check_databases(value, client, name):
    """Validated `databases` of a backup: at most one entry, method defaulting to auto."""
    where = _where(client, name)
    entries = as_list(value, Text("%(where)s: databases", where=where))
    if len(entries) > 1:
        # One archive series per repository keeps retention (prune by name) and verification
        # per database.
        _fail("%(where)s: databases must list at most one database, got %(count)d; give each database its own "
              "backup", where=where, count=len(entries))
    out = []
    for db in entries:
        if not isinstance(db, Mapping):
            # Its type only: a mistyped entry may hold a password.
            _fail("%(where)s: each entry of databases must be a mapping with an engine, got a %(type)s",
                  where=where, type=type(db).__name__)
        unknown = sorted(str(k) for k in set(db) - DATABASE_KEYS)
        if unknown:
            _fail("%(where)s: unknown key(s) in databases: %(unknown)s (known: %(known)s)",
                  where=where, unknown=", ".join(unknown), known=", ".join(sorted(DATABASE_KEYS)))
        if db.get("engine") not in DATABASE_ENGINES:
            _fail("%(where)s: databases engine must be one of %(choices)s, got %(value)r",
                  where=where, choices=", ".join(DATABASE_ENGINES), value=db.get("engine"))
        method = db.get("method") or "auto"
        if method not in DATABASE_METHODS:
            _fail("%(where)s: databases method must be one of %(choices)s, got %(value)r",
                  where=where, choices=", ".join(DATABASE_METHODS), value=method)
        check_database_settings(db, where)
        entry = dict((k, v) for k, v in db.items() if v is not None)
        entry["method"] = method
        out.append(entry)
    return out


def verifiable(databases):
    """Whether a backup's archives can be verified by starting them (instant recovery): they hold
    a database's data directory, i.e. it is a database backup not taken by dump (SQL files)."""
    return bool(databases) and (databases[0].get("method") or "auto") != "dump"


def check_backup_keys(backup, client):
    if not isinstance(backup, Mapping):
        _fail("client %(client)r: each entry of borgfleet_backups must be a mapping, got %(value)r",
              client=client, value=backup)
    name = check_backup_name(backup.get("name"), client)
    unknown = sorted(str(k) for k in set(backup) - BACKUP_KEYS)
    if unknown:
        _fail("client %(client)r, backup %(name)r: unknown key(s) %(unknown)s (known: %(known)s)",
              client=client, name=name, unknown=", ".join(unknown), known=", ".join(sorted(BACKUP_KEYS)))
    return name


# --- a client's backups ---

def server_name(client_vars, backup_servers):
    """The backup server of a client: its own setting, else the first backup server."""
    server = client_vars.get("borgfleet_backup_server")
    if server:
        return str(server)
    if backup_servers:
        return str(list(backup_servers)[0])
    _fail("no backup server: set borgfleet_backup_server (a host of group backup_servers, "
          "or 'local') or add a host to group backup_servers")


def resolve_backups(backups, client, hostvars=None, backup_servers=None, limit=None,
                    local_pool_path=DEFAULT_LOCAL_POOL_PATH, server=None, limit_missing="fail"):
    """Resolve a client's `borgfleet_backups` into complete, validated backups.

    `hostvars` maps inventory names to their variables (Ansible's hostvars); the
    client's `borgfleet_backup_server` and the server's pools/user/ssh address are
    read from it unless `server` is given. `limit` is the `borgfleet_backup` extra var;
    a client without that backup fails, or with limit_missing="skip" has nothing to do.
    """
    hostvars = hostvars if hostvars is not None else {}
    client = check_client_name(client)
    client_vars = hostvars.get(client) or {}
    server = str(server) if server else server_name(client_vars, backup_servers)
    settings = None
    if server != LOCAL:
        if backup_servers is not None and server not in [str(s) for s in backup_servers]:
            _fail("client %(client)r: borgfleet_backup_server %(server)r is not a host of group backup_servers "
                  "(nor 'local')", client=client, server=server)
        settings = server_settings(server, hostvars.get(server))
    else:
        local_pool_path = str(local_pool_path or DEFAULT_LOCAL_POOL_PATH).rstrip("/")
        if not is_absolute_path(local_pool_path):
            _fail("client %(client)r: borgfleet_local_pool_path must be absolute, got %(path)r",
                  client=client, path=local_pool_path)

    resolved = []
    seen = set()
    for backup in as_list(backups, Text("borgfleet_backups of client %(client)r", client=client)):
        name = check_backup_keys(backup, client)
        if name in seen:
            _fail("client %(client)r: duplicate backup name %(name)r", client=client, name=name)
        seen.add(name)
        resolved.append(resolve_one(backup, name, client, server, settings, local_pool_path))

    if limit:
        chosen = [b for b in resolved if b["name"] == limit]
        if not chosen and limit_missing != "skip":
            _fail("client %(client)r has no backup named %(name)r (borgfleet_backup); its backups: %(names)s",
                  client=client, name=limit, names=", ".join(sorted(seen)) or "none")
        return chosen
    return resolved


def resolve_one(backup, name, client, server, settings, local_pool_path):
    databases = check_databases(backup.get("databases"), client, name)
    paths = check_paths(backup.get("paths"), client, name, required=not databases)
    if databases and paths:
        _fail("client %(client)r, backup %(name)r: a database backup takes no paths (its archives hold the "
              "database alone); put the paths in another backup", client=client, name=name)
    exclude = check_exclude(backup.get("exclude"), client, name)
    encryption = str(backup.get("encryption") or "repokey-blake2")
    has_secret = bool(backup.get("passphrase")) or bool(backup.get("passcommand"))
    if encryption != "none" and not has_secret:
        _fail("client %(client)r, backup %(name)r: set passphrase or passcommand (encryption %(encryption)s)",
              client=client, name=name, encryption=encryption)
    if backup.get("passphrase") and backup.get("passcommand"):
        _fail("client %(client)r, backup %(name)r: set passphrase or passcommand, not both",
              client=client, name=name)
    compression = check_compression(backup.get("compression"), client, name)
    retention = check_retention(backup.get("retention"), client, name)

    if settings is None:
        pool = None
        repository_path = "%s/%s/%s" % (local_pool_path, client, name)
        repository = repository_path
        client_dir = "%s/%s" % (local_pool_path, client)
    else:
        pools = dict((p["name"], p) for p in settings["pools"])
        pool_name = backup.get("pool") or settings["pools"][0]["name"]
        if pool_name not in pools:
            _fail("client %(client)r, backup %(name)r: unknown pool %(pool)r on backup server %(server)r "
                  "(pools: %(pools)s)", client=client, name=name, pool=pool_name, server=server,
                  pools=", ".join(pools))
        pool = pools[pool_name]
        client_dir = "%s/%s" % (pool["path"], client)
        repository_path = "%s/%s" % (client_dir, name)
        repository = ssh_url(settings["user"], settings["ssh_host"], settings["ssh_port"], repository_path)

    out = {
        "name": name,
        "client": client,
        "server": server,
        "local": settings is None,
        "pool": pool,
        "client_dir": client_dir,
        "repository_path": repository_path,
        "repository": repository,
        "archive_name": "%s-{now:%%Y-%%m-%%dT%%H:%%M:%%S}" % name,
        "match_archives": "%s-*" % name,
        "paths": paths,
        "exclude": exclude,
        "exclude_caches": _bool(backup.get("exclude_caches", True), "exclude_caches"),
        "one_file_system": _bool(backup.get("one_file_system", True), "one_file_system"),
        "compression": compression,
        "files_cache": backup.get("files_cache") or None,
        "encryption": encryption,
        "append_only": _bool(backup.get("append_only", False), "append_only"),
        "retention": retention,
        "schedule": backup.get("schedule"),
        "passphrase": backup.get("passphrase") or None,
        "passcommand": backup.get("passcommand") or None,
    }
    # Keys other parts read (service, database-aware backups): passed on as they are.
    for key in PASSED_ON_KEYS:
        out[key] = backup.get(key)
    out["databases"] = databases  # validated above, [] for a backup of files
    if settings is not None:
        # How this client reaches its server; the client role pins that host key.
        out["server_endpoint"] = {
            "host": settings["ssh_host"],
            "port": settings["ssh_port"],
            "known_hosts_name": known_hosts_name(settings["ssh_host"], settings["ssh_port"]),
        }
    return out


# Never shown in logs: secrets, and database settings (they may hold credentials).
PRIVATE_KEYS = ("passphrase", "passcommand", "databases")


def public_backups(resolved):
    """Resolved backups without their secrets, for loops and reports whose items get logged."""
    return [dict((k, v) for k, v in b.items() if k not in PRIVATE_KEYS) for b in resolved]


def check_limit(limit, backups_by_host):
    """`borgfleet_backup` (limit) must name a backup of some host of the run.

    `backups_by_host` maps each host of the run to its `borgfleet_backups` as written; the
    message lists every host's backup names, so a typo is seen at once.
    """
    if not limit:
        return
    names = {}
    for host, backups in backups_by_host.items():
        names[str(host)] = [b.get("name") for b in backups or [] if isinstance(b, Mapping)]
        if limit in names[str(host)]:
            return
    listing = "; ".join("%s: %s" % (host, ", ".join(str(n) for n in found) or "none") for host, found in names.items())
    _fail("no host of this run has a backup named %(name)r (borgfleet_backup); backups: %(listing)s",
          name=limit, listing=listing or "none")


# --- a server's extra host variables (set by an admin in the service) ---

# Paths given to ssh, borg or Ansible: absolute, plain characters (no spaces, quotes or '$'), no '..'.
SAFE_PATH_RE = re.compile(r"/[A-Za-z0-9._/-]{0,1023}\Z")
# Stored and shown in clear: no passwords (SSH keys instead; passphrases have their own field).
SECRET_VAR_RE = re.compile(r".*(pass|secret|token).*\Z")
# Variables that change how Ansible reaches or runs on a host: a free value here is a shell on the
# controller (ssh's ProxyCommand/LocalCommand) or root elsewhere (become). Only the checked subset
# of HOST_VARS is accepted.
CONNECTION_VAR_RE = re.compile(r"ansible_(ssh|sftp|scp|become|connection|shell|pipelining|private_key|host_key"
                               r"|.*_executable|.*_args|.*_interpreter).*\Z")
# Set from the server's own fields, or by its backups and pools.
SERVICE_VARS = {"ansible_host": "address", "ansible_port": "port", "ansible_user": "ssh_user",
                "ansible_connection": "connection", "borgfleet_backup_server": "backup_server_id",
                "borgfleet_local_pool_path": "local_pool_path", "borgfleet_backups": "backup jobs",
                "borgfleet_storage_pools": "storage pools"}
# ssh options that may be passed in ansible_ssh_common_args: host-key pinning and timeouts.
SSH_OPTIONS = {"userknownhostsfile": "path", "stricthostkeychecking": ("yes",), "identitiesonly": ("yes", "no"),
               "connecttimeout": "seconds", "serveraliveinterval": "seconds", "serveralivecountmax": "seconds"}


def _safe_path(value, what):
    if not isinstance(value, str) or not SAFE_PATH_RE.match(value) or "/../" in value + "/":
        _fail("%(what)s must be an absolute path of letters, digits and . _ / - (no '..'), got %(value)r",
              what=what, value=value)
    return value


def _plain_int(value, what, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        _fail("%(what)s must be a number, got %(value)r", what=what, value=value)
    if not lo <= value <= hi:
        _fail("%(what)s must be between %(lo)d and %(hi)d", what=what, lo=lo, hi=hi)
    return value


def _host_var(value, what):
    problem = host_problem(value)
    if problem:
        _fail("%(what)s %(value)r %(problem)s", what=what, value=value, problem=problem)
    return value


def _server_user(value, what):
    if not isinstance(value, str) or not SERVER_USER_RE.match(value):
        _fail("%(what)s %(value)r is not valid", what=what, value=value)
    return value


def _ssh_common_args(value, what):
    """Only `-o Name=value` pairs of SSH_OPTIONS: ProxyCommand, LocalCommand, Include ... never reach ssh."""
    words = value.split(" ") if isinstance(value, str) else [""]
    for flag, opt in zip(words[::2], words[1::2] + [""]):
        if flag != "-o" or not opt:
            _fail("%(what)s must be '-o Name=value' pairs separated by single spaces, got %(value)r",
                  what=what, value=value)
        name, _, val = opt.partition("=")
        kind = SSH_OPTIONS.get(name.lower())
        if kind is None:
            _fail("%(what)s: only -o %(options)s are accepted, got %(value)r",
                  what=what, options=", ".join(sorted(SSH_OPTIONS)), value=opt)
        if kind == "path":
            _safe_path(val, Text("%(what)s %(name)s", what=what, name=name))
        elif kind == "seconds":
            if not val.isdigit() or not 1 <= int(val) <= 3600:
                _fail("%(what)s %(name)s must be 1-3600, got %(value)r", what=what, name=name, value=val)
        elif val not in kind:
            _fail("%(what)s %(name)s must be %(choices)s, got %(value)r",
                  what=what, name=name, choices=" or ".join(kind), value=val)
    return value


# The extra variables a server may carry (docs/contract.md, the roles' defaults):
# name -> (roles, check). Anything else is refused; values are plain scalars of the checked shape.
HOST_VARS = {
    "borgfleet_server_user": (("backup_server",), _server_user),
    "borgfleet_server_user_home": (("backup_server",), _safe_path),
    "borgfleet_server_ssh_host": (("backup_server",), _host_var),
    "borgfleet_server_ssh_port": (("backup_server",), lambda v, w: _plain_int(v, w, 1, 65535)),
    "borgfleet_ssh_key": (("client",), _safe_path),
    "borgfleet_known_hosts": (("client",), _safe_path),
    "borgfleet_borg_base_dir": (("client",), _safe_path),
    "borgfleet_lock_wait": (("client",), lambda v, w: _plain_int(v, w, 1, 86400)),
    "ansible_python_interpreter": (("client", "backup_server"), _safe_path),
    "ansible_ssh_private_key_file": (("client", "backup_server"), _safe_path),
    "ansible_ssh_common_args": (("client", "backup_server"), _ssh_common_args),
}


def _host_var_refused(name):
    """Why a name outside HOST_VARS is refused."""
    if name in SERVICE_VARS:
        return Text("vars cannot set %(name)s: the service sets it from the server's %(field)s",
                    name=name, field=SERVICE_VARS[name])
    if SECRET_VAR_RE.match(name):
        return Text("vars cannot hold secrets (%(name)s): they are stored in clear; use an SSH key "
                    "(ansible_ssh_private_key_file) instead of a password", name=name)
    if CONNECTION_VAR_RE.match(name):
        return Text("vars cannot set %(name)s: it changes how Ansible connects to or runs on the host", name=name)
    return Text("vars cannot set %(name)s: accepted names are %(names)s", name=name, names=", ".join(sorted(HOST_VARS)))


def check_host_vars(host_vars, role, connection):
    """A server's extra variables, each name in HOST_VARS and each value of its checked shape;
    `role` is client or backup_server, `connection` ssh or local."""
    if not isinstance(host_vars, Mapping):
        _fail("vars must be an object of host variables")
    for name in sorted(host_vars, key=str):
        if not isinstance(name, str):
            _fail("vars: invalid name %(name)r", name=name)
        if name not in HOST_VARS:
            _fail(_host_var_refused(name))
        roles, check = HOST_VARS[name]
        if role not in roles:
            _fail("vars: %(name)s applies to %(roles)s only",
                  name=name, roles=" and ".join(r.replace("_", " ") + "s" for r in roles))
        if name == "ansible_python_interpreter" and connection == "local":
            _fail("vars: ansible_python_interpreter cannot be set for a local connection"
                  " (the service runs it with its own Python)")
        check(host_vars[name], Text("vars: %(name)s", name=name))
    return host_vars
