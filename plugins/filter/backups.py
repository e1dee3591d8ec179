# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure inventory logic of the roles: which backups a client has, where their
repositories live, and what a backup server's authorized_keys must say.

The backup rules are module_utils/contract.py's, wrapped here (a ContractError becomes an
AnsibleFilterError with the same text); what is below is only the server's authorized_keys
and the result summary. Deterministic and side-effect free, unit-tested in
tests/unit/test_filter_backups.py.
"""

from __future__ import annotations

import functools

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - the unit tests always have ansible-core
    AnsibleFilterError = ValueError

from ansible_collections.borgfleet.backup.plugins.module_utils import authorized_keys, contract
from ansible_collections.borgfleet.backup.plugins.module_utils.contract import DEFAULT_LOCAL_POOL_PATH, PRIVATE_KEYS, ContractError

# The file's format is module_utils/authorized_keys.py's (the server module writes it too).
SSH_KEY_TYPES = authorized_keys.SSH_KEY_TYPES
# The marker the server role writes above each client's authorized_keys line.
AUTHORIZED_KEYS_MARKER = authorized_keys.CLIENT_MARKER


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
run_retention = _filter(contract.run_retention)
known_hosts_name = contract.known_hosts_name
public_backups = contract.public_backups
validate_public_key = _filter(authorized_keys.validate_public_key)


# A line exactly as authorized_keys_line() writes it: restricted borg serve, then the key.
_AUTHORIZED_LINE_RE = authorized_keys.CLIENT_LINE_RE


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


key_fingerprint = authorized_keys.key_fingerprint
_key_id = authorized_keys.key_id


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


def authorized_keys_line(entry):
    """The forced-command line for one client of server_clients()."""
    return authorized_keys.client_line(entry["client_dirs"], entry["public_key"])


def verifiable_backups(backups):
    """The backups whose archives can be verified by starting them (contract.verifiable)."""
    return [b for b in backups or [] if contract.verifiable(b.get("databases"))]


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
            # error_kind: the class of the failure (BorgError.kind, sent by fail_json).
            for extra in ("rc", "error_kind", "stderr"):
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
            "public_backups": public_backups,
            "server_clients": server_clients,
            "authorized_keys_line": authorized_keys_line,
            "validate_public_key": validate_public_key,
            "known_hosts_name": known_hosts_name,
            "result_report": result_report,
            "verifiable_backups": verifiable_backups,
            "run_retention": run_retention,
        }
