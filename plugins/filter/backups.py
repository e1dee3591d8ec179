# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure inventory logic of the roles: which backups a client has, where their
repositories live, and what a backup server's authorized_keys must say.

Everything here is deterministic and side-effect free, so the roles stay thin and
the rules are unit-tested in tests/unit/test_filter_backups.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - the unit tests always have ansible-core
    AnsibleFilterError = ValueError

# Backup names end up in paths, archive names and URLs: keep them boring.
BACKUP_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
# Client names become a path component on the server (<pool>/<client>).
CLIENT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,252}\Z")
# Pool paths go inside the forced command="..." of authorized_keys, so no quotes,
# spaces or shell syntax can be allowed in them.
POOL_PATH_RE = re.compile(r"/[A-Za-z0-9/._-]*\Z")
POOL_NAME_RE = BACKUP_NAME_RE
SERVER_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")

RETENTION_KEYS = ("within", "secondly", "minutely", "hourly", "daily", "weekly", "monthly", "yearly")
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
# base64 body of an OpenSSH public key, and an optional plain comment.
_KEY_BODY_RE = re.compile(r"[A-Za-z0-9+/]+={0,3}\Z")
_KEY_COMMENT_RE = re.compile(r"[A-Za-z0-9@._:+-]*\Z")
# The marker the server role writes above each client's authorized_keys line.
AUTHORIZED_KEYS_MARKER = "# borgfleet client: "

# Keys a backup may carry; others draw an error so that a typo such as `exlude`
# cannot silently back up what it was meant to skip.
BACKUP_KEYS = frozenset((
    "name", "paths", "exclude", "exclude_caches", "one_file_system", "compression",
    "files_cache", "passphrase", "passcommand", "encryption", "append_only", "pool",
    "retention", "schedule", "timezone", "enabled", "description", "databases",
    "snapshot",
))

PASSED_ON_KEYS = ("timezone", "enabled", "description", "databases", "snapshot")
# Never shown in logs: secrets, and database settings (they may hold credentials).
PRIVATE_KEYS = ("passphrase", "passcommand", "databases")

# `databases:` of a backup (issue 4): one database per backup, refused keys as for backups.
DATABASE_ENGINES = ("mariadb", "mysql", "postgresql", "mongodb")
DATABASE_METHODS = ("auto", "snapshot", "dump")
DATABASE_KEYS = frozenset((
    "engine", "method", "datadir", "extra_paths", "database", "login_user", "login_password",
    "login_host", "login_port", "login_unix_socket", "defaults_file", "os_user", "freeze_timeout",
    "postgresql_mode", "lvm_snapshot_size",
))

DEFAULT_LOCAL_POOL_PATH = "/var/lib/borgfleet/repos"
DEFAULT_SERVER_USER = "borg"
LOCAL = "local"


def _fail(msg):
    raise AnsibleFilterError(msg)


def _as_list(value, what):
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        _fail("%s must be a list, got %r" % (what, value))
    return list(value)


def _bool(value, what):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    _fail("%s must be a boolean, got %r" % (what, value))


def _server_name(client_vars, backup_servers):
    """The backup server of a client: its own setting, else the first backup server."""
    server = client_vars.get("borgfleet_backup_server")
    if server:
        return str(server)
    if backup_servers:
        return str(list(backup_servers)[0])
    _fail("no backup server: set borgfleet_backup_server (a host of group backup_servers, "
          "or 'local') or add a host to group backup_servers")


def server_settings(server, server_vars):
    """How clients reach a backup server and where its pools are (contract defaults applied)."""
    if server_vars is None:
        _fail("backup server %r is not in the inventory" % (server,))
    pools = _as_list(server_vars.get("borgfleet_storage_pools"),
                     "borgfleet_storage_pools of backup server %r" % server)
    if not pools:
        _fail("backup server %r has no borgfleet_storage_pools (a list of {name, path})" % server)
    seen = set()
    checked = []
    for pool in pools:
        if not isinstance(pool, Mapping) or "name" not in pool or "path" not in pool:
            _fail("backup server %r: each storage pool needs a name and a path, got %r" % (server, pool))
        name, path = str(pool["name"]), str(pool["path"]).rstrip("/") or "/"
        if not POOL_NAME_RE.match(name):
            _fail("backup server %r: invalid pool name %r" % (server, name))
        if not POOL_PATH_RE.match(path) or path == "/" or "/../" in path + "/":
            _fail("backup server %r, pool %r: path %r must be absolute and made of letters, "
                  "digits, '/', '.', '_' or '-' only" % (server, name, path))
        if name in seen:
            _fail("backup server %r: duplicate pool name %r" % (server, name))
        seen.add(name)
        checked.append({"name": name, "path": path})
    user = str(server_vars.get("borgfleet_server_user") or DEFAULT_SERVER_USER)
    if not SERVER_USER_RE.match(user):
        _fail("backup server %r: invalid borgfleet_server_user %r" % (server, user))
    host = server_vars.get("borgfleet_server_ssh_host") or server_vars.get("ansible_host") or server
    port = server_vars.get("borgfleet_server_ssh_port") or server_vars.get("ansible_port") or 22
    try:
        port = int(port)
    except (TypeError, ValueError):
        _fail("backup server %r: invalid ssh port %r" % (server, port))
    return {
        "name": server,
        "pools": checked,
        "user": user,
        "home": str(server_vars.get("borgfleet_server_user_home") or "/var/lib/%s" % user),
        "ssh_host": str(host),
        "ssh_port": port,
    }


def _ssh_url(settings, path):
    host = settings["ssh_host"]
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host  # IPv6 literal
    return "ssh://%s@%s:%d%s" % (settings["user"], host, settings["ssh_port"], path)


def known_hosts_name(host, port):
    """The name under which ssh looks a server up in known_hosts."""
    port = int(port)
    return str(host) if port == 22 else "[%s]:%d" % (host, port)


def _check_backup(backup, client):
    if not isinstance(backup, Mapping):
        _fail("client %r: each entry of borgfleet_backups must be a mapping, got %r" % (client, backup))
    name = backup.get("name")
    if not isinstance(name, str) or not BACKUP_NAME_RE.match(name):
        _fail("client %r: invalid backup name %r: use 1-64 letters, digits, '.', '_' or '-', "
              "starting with a letter or digit" % (client, name))
    unknown = sorted(set(backup) - BACKUP_KEYS)
    if unknown:
        _fail("client %r, backup %r: unknown key(s) %s (known: %s)"
              % (client, name, ", ".join(unknown), ", ".join(sorted(BACKUP_KEYS))))
    return name


def _retention(value, client, name):
    if value is None:
        return None
    if not isinstance(value, Mapping):
        _fail("client %r, backup %r: retention must be a mapping of %s"
              % (client, name, ", ".join(RETENTION_KEYS)))
    unknown = sorted(set(value) - set(RETENTION_KEYS))
    if unknown:
        _fail("client %r, backup %r: unknown retention key(s) %s (known: %s)"
              % (client, name, ", ".join(unknown), ", ".join(RETENTION_KEYS)))
    out = {}
    for key in RETENTION_KEYS[1:]:
        if value.get(key) is not None:
            try:
                count = int(value[key])
            except (TypeError, ValueError):
                count = -1
            if count < 0:
                _fail("client %r, backup %r: retention.%s must be a non-negative integer, got %r"
                      % (client, name, key, value[key]))
            if count:
                out[key] = count
    within = value.get("within")
    if within:
        if not re.match(r"[0-9]+[Hdwmy]\Z", str(within)):
            _fail("client %r, backup %r: retention.within must look like 2d, 12H, 1w, 6m or 1y, got %r"
                  % (client, name, within))
        out["within"] = str(within)
    if not out:
        _fail("client %r, backup %r: retention keeps nothing; omit retention to never prune"
              % (client, name))
    return out


def resolve_backups(backups, client, hostvars=None, backup_servers=None, limit=None,
                    local_pool_path=DEFAULT_LOCAL_POOL_PATH, server=None, limit_missing="fail"):
    """Resolve a client's `borgfleet_backups` into complete, validated backups.

    `hostvars` maps inventory names to their variables (Ansible's hostvars); the
    client's `borgfleet_backup_server` and the server's pools/user/ssh address are
    read from it unless `server` is given. `limit` is the `borgfleet_backup` extra var;
    a client without that backup fails, or with limit_missing="skip" has nothing to do
    (the roles then check with limit_problem() that some host of the run has it).
    """
    hostvars = hostvars if hostvars is not None else {}
    client = str(client)
    if not CLIENT_NAME_RE.match(client):
        _fail("client inventory name %r cannot be used as a directory name" % (client,))
    client_vars = hostvars.get(client) or {}
    server = str(server) if server else _server_name(client_vars, backup_servers)
    local = server == LOCAL
    settings = None
    if not local:
        if backup_servers is not None and server not in list(backup_servers):
            _fail("client %r: borgfleet_backup_server %r is not a host of group backup_servers "
                  "(nor 'local')" % (client, server))
        settings = server_settings(server, hostvars.get(server))
    else:
        local_pool_path = str(local_pool_path or DEFAULT_LOCAL_POOL_PATH).rstrip("/")
        if not local_pool_path.startswith("/"):
            _fail("client %r: borgfleet_local_pool_path must be absolute, got %r" % (client, local_pool_path))

    resolved = []
    seen = set()
    for backup in _as_list(backups, "borgfleet_backups of client %r" % client):
        name = _check_backup(backup, client)
        if name in seen:
            _fail("client %r: duplicate backup name %r" % (client, name))
        seen.add(name)
        resolved.append(_resolve_one(backup, name, client, server, settings, local_pool_path))

    if limit:
        chosen = [b for b in resolved if b["name"] == limit]
        if not chosen and limit_missing != "skip":
            _fail("client %r has no backup named %r (borgfleet_backup); its backups: %s"
                  % (client, limit, ", ".join(sorted(seen)) or "none"))
        return chosen
    return resolved


def limit_problem(limit, hostvars, hosts):
    """'' when some host of the run has a backup named `limit`, else why not (listing names)."""
    if not limit:
        return ""
    names = {}
    for host in hosts or []:
        backups = (hostvars.get(host) or {}).get("borgfleet_backups") or []
        names[str(host)] = [b.get("name") for b in backups if isinstance(b, Mapping)]
        if limit in names[str(host)]:
            return ""
    listing = "; ".join("%s: %s" % (h, ", ".join(str(n) for n in n_) or "none") for h, n_ in names.items())
    return "no host of this run has a backup named %r (borgfleet_backup); backups: %s" % (limit, listing or "none")


def backups_problem(*args, **kwargs):
    """resolve_backups' error message, or '' when the backups are valid.

    Lets a role stop with the plain message instead of Ansible's templating traceback.
    """
    try:
        resolve_backups(*args, **kwargs)
    except AnsibleFilterError as err:
        return getattr(err, "message", None) or str(err)
    return ""


def _databases(value, client, name):
    """Validated `databases` of a backup: at most one entry, method defaulting to auto."""
    where = "client %r, backup %r" % (client, name)
    entries = _as_list(value, "%s: databases" % where)
    if len(entries) > 1:
        # One archive series per repository keeps retention (prune by name) and verification
        # per database.
        _fail("%s: databases lists %d entries; give each database its own backup"
              % (where, len(entries)))
    out = []
    for db in entries:
        if not isinstance(db, Mapping):
            _fail("%s: each entry of databases must be a mapping with an engine, got %r" % (where, db))
        unknown = sorted(set(db) - DATABASE_KEYS)
        if unknown:
            _fail("%s: unknown key(s) in databases: %s (known: %s)"
                  % (where, ", ".join(unknown), ", ".join(sorted(DATABASE_KEYS))))
        if db.get("engine") not in DATABASE_ENGINES:
            _fail("%s: databases engine must be one of %s, got %r"
                  % (where, ", ".join(DATABASE_ENGINES), db.get("engine")))
        method = db.get("method") or "auto"
        if method not in DATABASE_METHODS:
            _fail("%s: databases method must be one of %s, got %r"
                  % (where, ", ".join(DATABASE_METHODS), method))
        entry = {k: v for k, v in db.items() if v is not None}
        entry["method"] = method
        out.append(entry)
    return out


def _resolve_one(backup, name, client, server, settings, local_pool_path):
    paths = [str(p) for p in _as_list(backup.get("paths"), "client %r, backup %r: paths" % (client, name))]
    databases = _databases(backup.get("databases"), client, name)
    if databases and paths:
        _fail("client %r, backup %r: a database backup takes no paths (its archives hold the database "
              "alone); put the paths in another backup" % (client, name))
    if not databases and (not paths or not all(paths)):
        _fail("client %r, backup %r: paths must list at least one path" % (client, name))
    exclude = [str(p) for p in _as_list(backup.get("exclude"), "client %r, backup %r: exclude" % (client, name))]
    encryption = str(backup.get("encryption") or "repokey-blake2")
    has_secret = bool(backup.get("passphrase")) or bool(backup.get("passcommand"))
    if encryption != "none" and not has_secret:
        _fail("client %r, backup %r: set passphrase or passcommand (encryption %s)"
              % (client, name, encryption))
    if backup.get("passphrase") and backup.get("passcommand"):
        _fail("client %r, backup %r: set passphrase or passcommand, not both" % (client, name))

    if settings is None:
        pool = None
        repository_path = "%s/%s/%s" % (local_pool_path, client, name)
        repository = repository_path
        client_dir = "%s/%s" % (local_pool_path, client)
    else:
        pools = {p["name"]: p for p in settings["pools"]}
        pool_name = backup.get("pool") or settings["pools"][0]["name"]
        if pool_name not in pools:
            _fail("client %r, backup %r: unknown pool %r on backup server %r (pools: %s)"
                  % (client, name, pool_name, server, ", ".join(pools)))
        pool = pools[pool_name]
        client_dir = "%s/%s" % (pool["path"], client)
        repository_path = "%s/%s" % (client_dir, name)
        repository = _ssh_url(settings, repository_path)

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
        "compression": str(backup.get("compression") or "lz4"),
        "files_cache": backup.get("files_cache") or None,
        "encryption": encryption,
        "append_only": _bool(backup.get("append_only", False), "append_only"),
        "retention": _retention(backup.get("retention"), client, name),
        "schedule": backup.get("schedule"),
        "passphrase": backup.get("passphrase") or None,
        "passcommand": backup.get("passcommand") or None,
    }
    # Keys other parts read (service, database-aware backups): passed on as they are,
    # validated by their readers (databases: by _databases() above).
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


def public_backups(resolved):
    """The resolved backups without their secrets, for loops whose items get logged."""
    return [{k: v for k, v in b.items() if k not in PRIVATE_KEYS} for b in resolved]


def validate_public_key(key, owner="client"):
    """Return the key as one clean line, or fail: one line, known type, no options."""
    if not isinstance(key, str):
        _fail("%s: public key must be a string, got %r" % (owner, type(key).__name__))
    text = key.strip()
    if not text:
        _fail("%s: public key is empty" % owner)
    if "\n" in text or "\r" in text or "\0" in text:
        _fail("%s: public key must be a single line" % owner)
    fields = text.split()
    if fields[0] not in SSH_KEY_TYPES:
        _fail("%s: public key must start with a key type (%s), not options or %r"
              % (owner, ", ".join(SSH_KEY_TYPES), fields[0][:40]))
    if len(fields) < 2 or not _KEY_BODY_RE.match(fields[1]):
        _fail("%s: public key has no valid base64 body" % owner)
    # The body names its own type first (SSH wire format): a mangled copy fails here, for
    # this client alone, instead of failing ssh-keygen on the server's whole file.
    if not _key_blob(fields[1]).startswith(len(fields[0]).to_bytes(4, "big") + fields[0].encode()):
        _fail("%s: public key body is not a %s key" % (owner, fields[0]))
    comment = fields[2:]
    if len(comment) > 1 or (comment and not _KEY_COMMENT_RE.match(comment[0])):
        # A comment with quotes or spaces could smuggle nothing into sshd, but the
        # line is ours: keep it predictable.
        _fail("%s: public key comment must be a single plain word" % owner)
    return " ".join(fields)


# A line exactly as authorized_keys_line() writes it: restricted borg serve, then the key.
_AUTHORIZED_LINE_RE = re.compile(r'command="borg serve(?P<restrict>(?: --restrict-to-path [^ "]+)+)",restrict (?P<key>\S+ \S+(?: \S+)?)\Z')


def parse_authorized_entries(text):
    """Client name -> {public_key, client_dirs}, in file order, from a file this role wrote.

    Only lines of the exact shape authorized_keys_line() writes count, each with a valid
    key; a hand-edited line is never carried over.
    """
    entries = {}
    client = None
    for line in (text or "").splitlines():
        if line.startswith(AUTHORIZED_KEYS_MARKER):
            client = line[len(AUTHORIZED_KEYS_MARKER):].strip()
            continue
        match = _AUTHORIZED_LINE_RE.match(line.strip()) if client else None
        if match and client not in entries:
            try:
                key = validate_public_key(match.group("key"), "client %r" % client)
            except AnsibleFilterError:
                key = None
            if key:
                dirs = match.group("restrict").split(" --restrict-to-path ")[1:]
                entries[client] = {"public_key": key, "client_dirs": dirs}
        client = None
    return entries


def parse_authorized_keys(text):
    """Client name -> key, from an authorized_keys file this role wrote before."""
    return {client: entry["public_key"] for client, entry in parse_authorized_entries(text).items()}


def _key_blob(body):
    """The bytes of a public key's base64 body (b'' if it does not decode)."""
    import base64  # only the key functions need it
    import binascii
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return b""


def key_fingerprint(key):
    """The SHA256 fingerprint `ssh-keygen -l` shows for a validated public key."""
    import base64
    import hashlib
    digest = hashlib.sha256(_key_blob(key.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _key_id(key):
    """What sshd matches a login against: key type and blob, not the comment."""
    return " ".join(key.split()[:2])


def _message(err):
    return getattr(err, "message", None) or str(err)


def _client_entry(client, client_vars, settings, hostvars, backup_servers, previous, local_pool_path):
    """One client's entry of server_clients() (None: nothing of it on this server)."""
    server = settings["name"]
    entry = {"client": client, "public_key": None, "client_dirs": [], "repositories": [], "problem": ""}
    try:
        backups = resolve_backups(client_vars.get("borgfleet_backups"), client, hostvars,
                                  backup_servers, local_pool_path=local_pool_path)
    except AnsibleFilterError as err:
        backups, entry["problem"] = None, _message(err)
    if backups == []:
        return None  # no backup here (any more): its line goes
    if backups:
        for backup in backups:
            if backup["client_dir"] not in entry["client_dirs"]:
                entry["client_dirs"].append(backup["client_dir"])
        entry["repositories"] = [{"name": b["name"], "path": b["repository_path"],
                                  "append_only": b["append_only"]} for b in backups]
        key = client_vars.get("borgfleet_client_public_key")
        if key:
            try:
                entry["public_key"] = validate_public_key(key, "client %r" % client)
            except AnsibleFilterError as err:
                entry["problem"] = _message(err)
        elif client in previous:
            entry["public_key"] = previous[client]["public_key"]
        else:
            entry["problem"] = (
                "backup server %r: no public key for client %r; run playbooks/setup.yml on that client "
                "too (it publishes borgfleet_client_public_key; an unreachable client, or one that failed "
                "before, publishes none), or set that variable in the inventory" % (server, client))
    if entry["problem"]:
        # A client that cannot be set up now keeps the access it had and nothing more: its
        # current line (same key, only its own directories in this server's pools), and no
        # repository to initialise.
        own = ["%s/%s" % (pool["path"], client) for pool in settings["pools"]]
        prev = previous.get(client) or {}
        dirs = [d for d in prev.get("client_dirs", []) if d in own]
        entry.update(public_key=prev.get("public_key") if dirs else None, client_dirs=dirs, repositories=[])
    return entry


def _refuse_shared_keys(entries, previous):
    """Leave each public key on one line at most.

    sshd applies the first line whose key matches, so a second client with the same key
    (a VM cloned from another client's image keeps /root/.ssh/borgfleet_ed25519) would get
    the first one's forced command, and with it that client's repositories. The key stays
    with the client whose line holds it in the current file; the others are refused, naming
    it. When no line holds it yet, nothing tells the original from the copy, so every client
    presenting it is refused.

    Setup does not hand the copy a new key by itself: the copy also holds the other client's
    *private* key, which only the operator can deal with (rotate that key too, fix the
    image), and replacing key files on a guess of which host is the copy could lock out the
    genuine one. Refusing, with the fix in the message, keeps that decision with a human.
    """
    holders = {}
    for client, prev in previous.items():  # file order: the line sshd applied so far
        holders.setdefault(_key_id(prev["public_key"]), client)
    sharing = {}
    for entry in entries:
        if entry["public_key"]:
            sharing.setdefault(_key_id(entry["public_key"]), []).append(entry)
    for key_id, group in sharing.items():
        names = [e["client"] for e in group]
        if len(names) < 2:
            continue
        holder = holders.get(key_id) if holders.get(key_id) in names else None
        for entry in group:
            if entry["client"] == holder:
                continue
            others = " and ".join(repr(n) for n in names if n != entry["client"])
            entry["problem"] = (
                "client %r presents the same SSH public key (%s) as client %s; sshd would give one "
                "client's forced command to both, so %s. A cloned machine? On client %r delete "
                "borgfleet_ssh_key (and its .pub) and run playbooks/setup.yml again: it makes a key "
                "of its own. The copy holds the other client's private key: rotate that key too "
                "unless the copy is trusted."
                % (entry["client"], key_fingerprint(entry["public_key"]), others,
                   "%r keeps its access and %r is not authorised" % (holder, entry["client"]) if holder
                   else "none of them is authorised until each has a key of its own",
                   entry["client"]))
            entry.update(public_key=None, client_dirs=[], repositories=[])


def server_clients(hostvars, clients, server, backup_servers=None, existing_authorized_keys="",
                   local_pool_path=DEFAULT_LOCAL_POOL_PATH, strict=True):
    """What a backup server must hold for its clients.

    For every client whose backups live on `server`: its public key (the fact
    `borgfleet_client_public_key` published by the client role, else the key this
    server already had for it), the `<pool>/<client>` directories its forced command
    is restricted to, and its repositories with their append-only setting.

    A client that cannot be authorised (invalid backups, no or an invalid key, a key
    another client presents too) gets a `problem`. Strict, that fails; else its entry
    keeps what the current file gave it (`public_key` None when nothing) and no
    repository, so one broken client never blocks the others. Every key is on one entry
    at most. A problem of the server itself always fails.
    """
    settings = server_settings(server, hostvars.get(server))
    previous = parse_authorized_entries(existing_authorized_keys)
    out = []
    for client in clients or []:
        client = str(client)
        client_vars = hostvars.get(client) or {}
        try:
            if _server_name(client_vars, backup_servers) != server:
                continue
        except AnsibleFilterError:
            continue  # no backup server at all, so not this one's client (its own run says why)
        entry = _client_entry(client, client_vars, settings, hostvars, backup_servers, previous,
                              local_pool_path)
        if entry is not None:
            out.append(entry)
    _refuse_shared_keys(out, previous)
    problems = [e["problem"] for e in out if e["problem"]]
    if strict and problems:
        _fail("; ".join(problems))
    return out


def server_clients_problem(*args, **kwargs):
    """Why some clients of the server cannot be authorised ('' when every one is in order)."""
    try:
        entries = server_clients(*args, **dict(kwargs, strict=False))
    except AnsibleFilterError as err:
        return _message(err)
    return "; ".join(e["problem"] for e in entries if e["problem"])


def authorized_keys_line(entry):
    """The forced-command line for one client of server_clients()."""
    restrict = "".join(" --restrict-to-path %s" % d for d in entry["client_dirs"])
    return 'command="borg serve%s",restrict %s' % (restrict, entry["public_key"])


def result_report(results, keys=()):
    """Non-secret summary of a looped module result (register of a no_log task).

    Each entry names the backup and repository of the loop item, whether it failed and
    why, and the listed keys of the module result. Items carry passphrases, so only
    this summary may be printed.
    """
    report = []
    for res in (results or {}).get("results", []):
        item = res.get("item") or {}
        entry = {
            "backup": item.get("name"),
            "client": item.get("client"),
            "repository": item.get("repository"),
            "failed": bool(res.get("failed")),
            "skipped": bool(res.get("skipped")),
            "changed": bool(res.get("changed")),
        }
        if res.get("failed"):
            entry["msg"] = res.get("msg")
            for extra in ("rc", "kind", "stderr"):
                if res.get(extra) not in (None, ""):
                    entry[extra] = res.get(extra)
        for key in keys:
            if key in res and key not in PRIVATE_KEYS:
                entry[key] = res[key]
        report.append(entry)
    return report


class FilterModule(object):
    def filters(self):
        return {
            "resolve_backups": resolve_backups,
            "server_settings": server_settings,
            "backups_problem": backups_problem,
            "limit_problem": limit_problem,
            "public_backups": public_backups,
            "server_clients": server_clients,
            "server_clients_problem": server_clients_problem,
            "authorized_keys_line": authorized_keys_line,
            "validate_public_key": validate_public_key,
            "known_hosts_name": known_hosts_name,
            "result_report": result_report,
        }
