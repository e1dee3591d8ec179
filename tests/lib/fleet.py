"""A test fleet: backup servers and clients on loopback sshd, and its inventory (docs/contract.md).

All hosts share this machine's filesystem, so every client gets its own key, known_hosts and
BORG_BASE_DIR, and every backup server its own pool path and borg user.
"""
import copy
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .borgrepo import BorgRepo


def passphrase():
    # Quotes, $, ; and spaces: a passphrase that only survives if nothing goes through a shell.
    return f"pw {secrets.token_hex(8)} $HOME;'\"|&"


@dataclass
class Controller:
    """The operator's side: one key accepted as root everywhere, one pinned known_hosts."""
    key: Path
    known_hosts: Path

    def ssh_argv(self, sshd, *command, user="root"):
        return ["ssh", "-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-p", str(sshd.port), f"{user}@{sshd.address}", "--", *command]


@dataclass
class Server:
    name: str
    sshd: object
    dir: Path
    user: str
    pools: list

    @property
    def home(self):
        return self.dir / "home"

    def hostvars(self):
        return {"ansible_host": self.sshd.address, "ansible_port": self.sshd.port,
                "borgfleet_server_user": self.user,
                "borgfleet_server_user_home": str(self.home),
                "borgfleet_storage_pools": copy.deepcopy(self.pools)}

    def remove_user(self):
        """Undo the borg_server role's account (the machine is shared by every test host)."""
        subprocess.run(["userdel", self.user], stdin=subprocess.DEVNULL, capture_output=True)


@dataclass
class Client:
    name: str
    sshd: object
    dir: Path
    server: Server
    backups: list = field(default_factory=list)

    @property
    def ssh_key(self):
        return self.dir / "borgfleet_ed25519"

    @property
    def known_hosts(self):
        return self.dir / "borgfleet_known_hosts"

    @property
    def borg_base_dir(self):
        return self.dir / "borg"

    def hostvars(self):
        return {"ansible_host": self.sshd.address, "ansible_port": self.sshd.port,
                "borgfleet_backup_server": self.server.name,
                "borgfleet_ssh_key": str(self.ssh_key),
                "borgfleet_known_hosts": str(self.known_hosts),
                "borgfleet_borg_base_dir": str(self.borg_base_dir),
                "borgfleet_backups": copy.deepcopy(self.backups)}

    def backup(self, name):
        return next(b for b in self.backups if b["name"] == name)

    def repo_path(self, backup_name):
        b = self.backup(backup_name)
        pool = next((p for p in self.server.pools if p["name"] == b.get("pool")), self.server.pools[0])
        return f"{pool['path']}/{self.name}/{backup_name}"

    def repo_url(self, backup_name):
        s = self.server
        return f"ssh://{s.user}@{s.sshd.address}:{s.sshd.port}{self.repo_path(backup_name)}"

    def repo(self, backup_name, controller, ssh_key=None):
        """Raw borg access to one of this client's repositories (client key, harness known_hosts)."""
        return BorgRepo(self.repo_url(backup_name), self.backup(backup_name)["passphrase"],
                        ssh_key=ssh_key or self.ssh_key, known_hosts=controller.known_hosts,
                        base_dir=self.borg_base_dir)


def inventory(controller, servers, clients):
    """The inventory dict of docs/contract.md for these hosts."""
    return {"all": {
        "vars": {
            "ansible_user": "root",
            # The managed hosts are this Debian machine; discovery would find pyenv shims
            # on root's PATH before the system interpreter.
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_private_key_file": str(controller.key),
            # Host keys of the test sshds are pinned, not ignored.
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={controller.known_hosts} "
                                       "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        },
        "children": {
            "backup_servers": {"hosts": {s.name: s.hostvars() for s in servers}},
            "clients": {"hosts": {c.name: c.hostvars() for c in clients}},
        },
    }}


def write_inventory(path, inv):
    path = Path(path)
    path.write_text(yaml.safe_dump(inv, sort_keys=False, allow_unicode=True))
    path.chmod(0o600)  # it holds passphrases
    return path
