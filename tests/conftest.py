"""Shared fixtures: a root-owned scratch tree, the controller key, and real sshd hosts.

Set BORGFLEET_KEEP_TESTDIR=1 to keep the scratch tree (configs, sshd logs, repositories)
after the run for debugging.
"""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from plugins.module_utils.borg import host_id
from tests.lib.fleet import Controller
from tests.lib.sshd import Sshd, keygen

# Raw borg in the tests runs as docs/contract.md tells an operator to run it on a managed host: with
# the host id the modules use, so each side recognises (and removes) the other's stale locks.
os.environ.setdefault("BORG_HOST_ID", host_id())

# sshd's StrictModes and the borg user's access to pools need every parent directory to be
# root-owned and not world-writable, which rules out /tmp.
TEST_ROOT_PARENT = Path(os.environ.get("BORGFLEET_TEST_ROOT", "/var/lib/borgfleet-tests"))


@pytest.fixture(scope="session")
def test_root():
    TEST_ROOT_PARENT.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="run-", dir=TEST_ROOT_PARENT))
    root.chmod(0o755)
    yield root
    if os.environ.get("BORGFLEET_KEEP_TESTDIR"):
        print(f"\nkept test tree: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def controller(test_root):
    d = test_root / "controller"
    d.mkdir(mode=0o700)
    key = d / "id_ed25519"
    keygen(key, comment="borgfleet-test-controller")
    known_hosts = d / "known_hosts"
    known_hosts.touch(mode=0o600)
    return Controller(key=key, known_hosts=known_hosts)


class SshdFactory:
    """Starts sshd hosts on 127.0.0.2, 127.0.0.3, ... and pins their keys for the controller."""

    def __init__(self, root, controller):
        self.root = root
        self.controller = controller
        self.started = []
        self._next = 2

    def __call__(self, name):
        address = f"127.0.0.{self._next}"
        self._next += 1
        # The address in the directory name: two fleets of one session may reuse a host name.
        sshd = Sshd(name, address, self.root / f"sshd-{name}-{address}", self.controller.key.with_suffix(".pub").read_text().strip())
        self.started.append(sshd)
        sshd.start()
        with open(self.controller.known_hosts, "a") as f:
            f.write(sshd.known_hosts_line + "\n")
        return sshd

    def stop_all(self):
        for sshd in reversed(self.started):
            sshd.stop()


@pytest.fixture(scope="session")
def sshd_factory(test_root, controller):
    factory = SshdFactory(test_root, controller)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def ansible_control_dir(test_root):
    d = test_root / "ansible-cp"
    d.mkdir(mode=0o700)
    return d


# The service's fixtures, registered here once so tests/ui and tests/hardening share one service.
from tests.lib.ui_fixtures import api, app, client, db, redis, start_worker, ui_env, users  # noqa: E402,F401
# A database fixture shared by tests/databases and tests/hardening, registered once.
from tests.lib.db_fixtures import plain_mariadb  # noqa: E402,F401
