# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory from the BorgFleet service's MariaDB (the fleet the UI manages)."""
from __future__ import annotations

DOCUMENTATION = r"""
name: fleet
short_description: BorgFleet fleet from the service's MariaDB
description:
  - Reads servers, storage pools and backup jobs that the BorgFleet service (C(ui/)) keeps in
    MariaDB and builds the inventory of docs/contract.md, so C(ansible-playbook), AWX and the
    service's own workers all run the same fleet.
  - Groups C(backup_servers) and C(clients); hosts get C(borgfleet_storage_pools),
    C(borgfleet_backup_server), C(borgfleet_backups) and the
    per-server extra variables saved in the service.
  - Every value read from the database is marked unsafe (Ansible never templates it), so a passphrase
    or path that looks like a Jinja template reaches borg exactly as typed.
  - Passphrases are stored encrypted (C(bf1:) + a Fernet token); the plugin decrypts them with
    the service's key file and fails, naming the backup, when the key is missing or wrong or a
    value was never encrypted. It never returns ciphertext as a passphrase.
  - The inventory source file name must end in C(fleet.yml) or C(fleet.yaml).
requirements: [PyMySQL, cryptography]
options:
  plugin:
    description: Marks this file as a source for this plugin.
    required: true
    choices: [borgfleet.backup.fleet]
  db_host:
    description: MariaDB host.
    type: str
    default: 127.0.0.1
    env: [{name: BORGFLEET_DB_HOST}]
  db_port:
    description: MariaDB port.
    type: int
    default: 3306
    env: [{name: BORGFLEET_DB_PORT}]
  db_user:
    description: MariaDB user (read-only grants are enough).
    type: str
    default: root
    env: [{name: BORGFLEET_DB_USER}]
  db_password:
    description: MariaDB password; prefer the environment variable over the file.
    type: str
    default: ''
    env: [{name: BORGFLEET_DB_PASSWORD}]
  db_password_file:
    description:
      - A file (or FIFO) holding the MariaDB password; wins over O(db_password). The service's
        workers hand the password this way so that it is never written to a run's files.
    type: path
    env: [{name: BORGFLEET_DB_PASSWORD_FILE}]
  db_name:
    description: The service's database.
    type: str
    default: borgfleet
    env: [{name: BORGFLEET_DB_NAME}]
  secret_key_file:
    description:
      - The service's key file (one Fernet key per line; any of them decrypts). Read only when
        there is a passphrase to decrypt.
    type: path
    default: /etc/borgfleet/secret.key
    env: [{name: BORGFLEET_SECRET_KEY_FILE}]
"""

EXAMPLES = r"""
# fleet.yml -- ansible-playbook -i fleet.yml playbooks/backup.yml
plugin: borgfleet.backup.fleet
db_host: db.example.org
db_user: borgfleet_ro
db_name: borgfleet
secret_key_file: /etc/borgfleet/secret.key   # the service's key file (decrypts the passphrases)
"""

import json

from ansible.errors import AnsibleError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.utils.unsafe_proxy import AnsibleUnsafeText, wrap_var

from ansible_collections.borgfleet.backup.plugins.module_utils.contract import ContractError, check_host_vars

try:
    import pymysql
    import pymysql.cursors
except ImportError:  # reported when the plugin is used
    pymysql = None

try:
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet
except ImportError:  # reported when a passphrase is decrypted
    Fernet = None

# The service's format (ui/borgfleet_ui/secret_store.py): "bf1:" + Fernet token.
PREFIX = "bf1:"
# A local connection runs modules with the controller's Python, as inventory/demo does. The only
# template this plugin hands out: ours, not data from the database.
LOCAL_INTERPRETER = "{{ ansible_playbook_python }}"


class Decryptor:
    """Decrypts stored passphrases with the key file, read once, on first use."""

    def __init__(self, path):
        self.path, self.box = path, None

    def __call__(self, stored, what):
        if not isinstance(stored, str) or not stored.startswith(PREFIX):
            raise AnsibleError(f"the passphrase of {what} is stored in plain text in the BorgFleet database;"
                               " run 'borgfleet-ui db upgrade' to encrypt it")
        try:
            return self._box().decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise AnsibleError(f"cannot decrypt the passphrase of {what} with the key file {self.path}:"
                               " wrong key (use the BorgFleet service's key file)") from None

    def _box(self):
        if self.box is None:
            if Fernet is None:
                raise AnsibleError("the borgfleet.backup.fleet inventory needs the cryptography Python package")
            try:
                with open(self.path) as f:
                    keys = [line.strip() for line in f if line.strip()]
                self.box = MultiFernet([Fernet(k) for k in keys])
            except OSError as e:
                raise AnsibleError(f"cannot read the BorgFleet secret key file {self.path} ({e.strerror});"
                                   " set secret_key_file or BORGFLEET_SECRET_KEY_FILE to the service's"
                                   " key file") from None
            except ValueError:
                raise AnsibleError(f"the BorgFleet secret key file {self.path} holds no valid key") from None
        return self.box


SERVER_COLUMNS = ("id", "name", "role", "address", "port", "ssh_user", "connection", "backup_server_id",
                  "local_pool_path", "vars_json")
BACKUP_COLUMNS = ("id", "client_id", "name", "paths_json", "exclude_json", "compression", "passphrase",
                  "databases_json", "retention_json", "schedule", "timezone")


def build_fleet(servers, pools, backups, decrypt):
    """Rows of servers, storage_pools, backup_jobs (+ pool name) -> {group: {host: vars}};
    decrypt(stored, what) turns a stored passphrase into the passphrase.

    Every value is wrapped unsafe (recursively): data from the database is never a template."""
    by_id = {s["id"]: s for s in servers}
    # Grouped once: a fleet of 1,000 servers and 5,000 backups, scanned again for each server, cost
    # every run ~0.5 s before its first task.
    pools_of, backups_of = {}, {}
    for p in pools:
        pools_of.setdefault(p["server_id"], []).append(p)
    for b in backups:
        backups_of.setdefault(b["client_id"], []).append(b)
    out = {"backup_servers": {}, "clients": {}}
    for s in servers:
        hv = {"ansible_host": s["address"], "ansible_port": s["port"], "ansible_user": s["ssh_user"]}
        if s["connection"] == "local":
            hv["ansible_connection"] = "local"
        if s["role"] == "backup_server":
            hv["borgfleet_storage_pools"] = [{"name": p["name"], "path": p["path"]} for p in pools_of.get(s["id"], ())]
        else:
            if s["backup_server_id"]:
                hv["borgfleet_backup_server"] = by_id[s["backup_server_id"]]["name"]
            else:
                hv["borgfleet_backup_server"] = "local"
                hv["borgfleet_local_pool_path"] = s["local_pool_path"]
            hv["borgfleet_backups"] = [_backup(b, s["name"], decrypt) for b in backups_of.get(s["id"], ())]
        # Saved extra vars (keys, known_hosts, server user ...) win over the derived ones. They are
        # checked again here: a row saved before the allowlist, or written to the database by hand,
        # must not reach ssh (ProxyCommand) or Ansible (become, interpreters) either.
        saved = json.loads(s["vars_json"] or "{}")
        try:
            check_host_vars(saved, s["role"], s["connection"])
        except ContractError as e:
            raise AnsibleError(f"server {s['name']!r} in the BorgFleet database: {e}; an admin must correct"
                               " its extra vars in the service") from None
        hv.update(saved)
        hv = {k: unsafe(v) for k, v in hv.items()}
        if s["connection"] == "local":
            hv.setdefault("ansible_python_interpreter", LOCAL_INTERPRETER)
        out["backup_servers" if s["role"] == "backup_server" else "clients"][s["name"]] = hv
    return out


def unsafe(v):
    """wrap_var for the JSON-shaped values of the database (dicts, lists, strings, numbers), by exact
    type: the same result, a few times faster than wrap_var's chain of abstract-class checks, which
    took most of a 1,000-server fleet's inventory. Anything else goes through wrap_var."""
    t = type(v)
    if t is str:
        return AnsibleUnsafeText(v)
    if t is dict:
        return {unsafe(k): unsafe(x) for k, x in v.items()}
    if t is list:
        return [unsafe(x) for x in v]
    if v is None or t is int or t is bool or t is float:
        return v
    return wrap_var(v)


def _backup(b, client, decrypt):
    d = {"name": b["name"], "paths": json.loads(b["paths_json"]), "exclude": json.loads(b["exclude_json"]),
         "compression": b["compression"],
         "passphrase": decrypt(b["passphrase"], f"backup {b['name']!r} of client {client!r}")}
    if b.get("databases_json"):
        d["databases"] = json.loads(b["databases_json"])
    if b.get("pool_name"):
        d["pool"] = b["pool_name"]
    if b.get("retention_json"):
        d["retention"] = json.loads(b["retention_json"])
    if b.get("schedule"):
        d["schedule"] = b["schedule"]
        d["timezone"] = b["timezone"]
    return d


class InventoryModule(BaseInventoryPlugin):
    NAME = "borgfleet.backup.fleet"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("fleet.yml", "fleet.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        if pymysql is None:
            raise AnsibleError("the borgfleet.backup.fleet inventory needs the PyMySQL Python package")
        password = self.get_option("db_password")
        if self.get_option("db_password_file"):
            try:
                with open(self.get_option("db_password_file")) as f:
                    password = f.read().rstrip("\n")
            except OSError as e:
                raise AnsibleError(f"cannot read the BorgFleet database password file"
                                   f" {self.get_option('db_password_file')} ({e.strerror})") from None
        try:
            conn = pymysql.connect(host=self.get_option("db_host"), port=int(self.get_option("db_port")),
                                   user=self.get_option("db_user"), password=password,
                                   database=self.get_option("db_name"), charset="utf8mb4",
                                   cursorclass=pymysql.cursors.DictCursor,
                                   # A hung database fails the run with a message, never hangs it.
                                   connect_timeout=10, read_timeout=120, write_timeout=60)
        except pymysql.MySQLError as e:
            raise AnsibleError(f"cannot reach the BorgFleet database: {e}") from e
        try:
            with conn.cursor() as cur:
                # The columns build_fleet reads, not the rows' stats and capabilities: decoding them
                # was most of a 1,000-server fleet's inventory, paid by every run.
                cur.execute("SELECT " + ", ".join(SERVER_COLUMNS) + " FROM servers ORDER BY name")
                servers = cur.fetchall()
                cur.execute("SELECT server_id, name, path FROM storage_pools ORDER BY id")
                pools = cur.fetchall()
                cur.execute("SELECT " + ", ".join("b." + c for c in BACKUP_COLUMNS) + ", p.name AS pool_name"
                            " FROM backup_jobs b LEFT JOIN storage_pools p ON p.id=b.pool_id ORDER BY b.id")
                backups = cur.fetchall()
        finally:
            conn.close()
        decrypt = Decryptor(self.get_option("secret_key_file"))
        for group, hosts in build_fleet(servers, pools, backups, decrypt).items():
            self.inventory.add_group(group)
            for name, hv in hosts.items():
                self.inventory.add_host(name, group=group)
                for k, v in hv.items():
                    self.inventory.set_variable(name, k, v)
