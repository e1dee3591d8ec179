# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure inventory logic of the roles: which backups a client has, where their
repositories live, and what a backup server's authorized_keys must say.

Everything here is deterministic and side-effect free, so the roles stay thin and
the rules are unit-tested in tests/unit/test_filter_backups.py.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - the unit tests always have ansible-core
    AnsibleFilterError = ValueError

from ansible_collections.borgfleet.backup.plugins.module_utils import contract
from ansible_collections.borgfleet.backup.plugins.module_utils.contract import (  # noqa: F401 (re-exported)
    BACKUP_KEYS, BACKUP_NAME_RE, CLIENT_NAME_RE, DATABASE_ENGINES, DATABASE_KEYS, DATABASE_METHODS,
    DEFAULT_LOCAL_POOL_PATH, DEFAULT_SERVER_USER, LOCAL, PASSED_ON_KEYS, POOL_NAME_RE, POOL_PATH_RE,
    RETENTION_KEYS, SERVER_USER_RE, ContractError)

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

# Never shown in logs: secrets, and database settings (they may hold credentials).
PRIVATE_KEYS = ("passphrase", "passcommand", "databases")


def _fail(msg):
    raise AnsibleFilterError(msg)


def _filter(rule):
    """A contract function as a filter: its ContractError becomes Ansible's filter error, same text."""
    @functools.wraps(rule)
    def wrapper(*args, **kwargs):
        try:
            return rule(*args, **kwargs)
        except ContractError as err:
            raise AnsibleFilterError(str(err)) from err
    return wrapper


# The rules live in module_utils/contract.py (shared with the modules and the service).
_server_name = _filter(contract.server_name)
server_settings = _filter(contract.server_settings)
resolve_backups = _filter(contract.resolve_backups)
known_hosts_name = contract.known_hosts_name


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
        contract.resolve_backups(*args, **kwargs)
    except ContractError as err:
        return str(err)
    return ""


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
    comment = fields[2:]
    if len(comment) > 1 or (comment and not _KEY_COMMENT_RE.match(comment[0])):
        # A comment with quotes or spaces could smuggle nothing into sshd, but the
        # line is ours: keep it predictable.
        _fail("%s: public key comment must be a single plain word" % owner)
    return " ".join(fields)


def parse_authorized_keys(text):
    """Client name -> key, from an authorized_keys file this role wrote before."""
    keys = {}
    client = None
    for line in (text or "").splitlines():
        if line.startswith(AUTHORIZED_KEYS_MARKER):
            client = line[len(AUTHORIZED_KEYS_MARKER):].strip()
            continue
        if client and line.strip() and not line.startswith("#"):
            # command="...",restrict <key>: the key follows the last option.
            match = re.search(r'",restrict (.*)\Z', line)
            if match:
                keys[client] = match.group(1).strip()
        client = None
    return keys


def server_clients(hostvars, clients, server, backup_servers=None, existing_authorized_keys="",
                   local_pool_path=DEFAULT_LOCAL_POOL_PATH):
    """What a backup server must hold for its clients.

    For every client whose backups live on `server`: its public key (the fact
    `borgfleet_client_public_key` published by the client role, else the key this
    server already had for it), the `<pool>/<client>` directories its forced command
    is restricted to, and its repositories with their append-only setting.
    """
    previous = parse_authorized_keys(existing_authorized_keys)
    out = []
    for client in clients or []:
        client = str(client)
        client_vars = hostvars.get(client) or {}
        if _server_name(client_vars, backup_servers) != server:
            continue
        backups = resolve_backups(client_vars.get("borgfleet_backups"), client, hostvars,
                                  backup_servers, local_pool_path=local_pool_path)
        if not backups:
            continue
        key = client_vars.get("borgfleet_client_public_key") or previous.get(client)
        if not key:
            _fail("backup server %r: no public key for client %r; run playbooks/setup.yml on that "
                  "client too (it publishes borgfleet_client_public_key), or set that variable "
                  "in the inventory" % (server, client))
        dirs = []
        for backup in backups:
            if backup["client_dir"] not in dirs:
                dirs.append(backup["client_dir"])
        out.append({
            "client": client,
            "public_key": validate_public_key(key, "client %r" % client),
            "client_dirs": dirs,
            "repositories": [{"name": b["name"], "path": b["repository_path"],
                              "append_only": b["append_only"]} for b in backups],
        })
    return out


def server_clients_problem(*args, **kwargs):
    """server_clients' error message, or '' when every client of the server is in order."""
    try:
        server_clients(*args, **kwargs)
    except AnsibleFilterError as err:
        return getattr(err, "message", None) or str(err)
    return ""


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
