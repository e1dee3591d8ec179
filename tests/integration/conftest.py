"""The integration fleet: two clients and one backup server, each a real sshd on loopback.

One fleet and one `setup.yml` run are shared by the whole session (setup is the slow part);
tests that need a different inventory write a variant next to it and never change the shared one.
"""
import copy
import dataclasses
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lib import fleet as fl
from tests.lib.playbook import PLAYBOOKS, run_playbook
from tests.lib.trees import make_tree

RETENTION = {"daily": 3, "weekly": 2, "monthly": 2}


@dataclass
class TestFleet:
    root: Path
    controller: fl.Controller
    server: fl.Server
    clients: dict
    inventory: Path
    control_dir: Path

    __test__ = False  # not a test class, despite the name

    def play(self, name, inventory=None, **kwargs):
        return run_playbook(name, inventory or self.inventory, control_dir=self.control_dir, **kwargs)

    def variant(self, label, mutate):
        """Write another inventory: `mutate(clients)` edits deep copies of the clients."""
        clients = {n: dataclasses.replace(c, backups=copy.deepcopy(c.backups)) for n, c in self.clients.items()}
        mutate(clients)
        inv = fl.inventory(self.controller, [self.server], list(clients.values()))
        return fl.write_inventory(self.root / f"inventory-{label}.yml", inv)

    @property
    def drop(self):
        """A world-writable dir: a marker made by *any* user (root or borg) would land here."""
        d = self.root / "drop"
        d.mkdir(exist_ok=True)
        d.chmod(0o1777)
        return d

    def repo(self, client, backup, **kwargs):
        return self.clients[client].repo(backup, self.controller, **kwargs)


@pytest.fixture(scope="session")
def fleet(test_root, controller, sshd_factory, ansible_control_dir):
    # A directory of its own: another tier (tests/hardening) builds its own fleet in the same session.
    test_root = Path(tempfile.mkdtemp(prefix="fleet-", dir=test_root))
    test_root.chmod(0o755)
    missing = [p for p in ("setup.yml", "backup.yml") if not (PLAYBOOKS / p).exists()]
    if missing:
        pytest.fail(f"playbooks missing: {missing} (roles engineer's part)")
    server_dir = test_root / "server1"
    server_dir.mkdir(mode=0o755)
    server = fl.Server(
        name="server1", sshd=sshd_factory("server1"), dir=server_dir,
        # The machine is shared: a unique borg user per run, so parallel runs never collide.
        user=f"bft{secrets.token_hex(3)}",
        pools=[{"name": "main", "path": str(server_dir / "pool")}])
    clients = {}
    for name in ("client1", "client2"):
        d = test_root / name
        d.mkdir(mode=0o700)
        make_tree(d / "data", seed=name)
        clients[name] = fl.Client(name=name, sshd=sshd_factory(name), dir=d, server=server)
    c1, c2 = clients["client1"], clients["client2"]
    c1.backups = [{"name": "etc", "paths": [str(c1.dir / "data")],
                   "exclude": ["*.tmp", str(c1.dir / "data" / "secret")],
                   "passphrase": fl.passphrase()}]
    c2.backups = [{"name": "home", "paths": [str(c2.dir / "data")],
                   "exclude": ["*.tmp", str(c2.dir / "data" / "secret")],
                   "passphrase": fl.passphrase()},
                  {"name": "prunetest", "paths": [str(c2.dir / "data" / "sub")],
                   "passphrase": fl.passphrase(), "retention": dict(RETENTION)}]
    inv = fl.write_inventory(test_root / "inventory.yml",
                             fl.inventory(controller, [server], list(clients.values())))
    yield TestFleet(root=test_root, controller=controller, server=server, clients=clients,
                    inventory=inv, control_dir=ansible_control_dir)
    server.remove_user()


@pytest.fixture(scope="session")
def setup_run(fleet):
    """The first setup.yml run; every test that needs a set-up fleet depends on it."""
    result = fleet.play("setup.yml")
    if result.rc != 0:
        pytest.fail(f"setup.yml failed, nothing else can run:\n{result}")
    return result


@pytest.fixture(scope="session")
def backup_run(fleet, setup_run):
    """One backup.yml run over every client and backup."""
    result = fleet.play("backup.yml")
    if result.rc != 0:
        pytest.fail(f"backup.yml failed:\n{result}")
    return result
