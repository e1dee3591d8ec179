"""The `lab` tier: a real Debian VM under qemu (TCG) with real LVM, reached over SSH.

These tests run only from `make test-lab` (BORGFLEET_LAB=1): they need root, debootstrap and
qemu, build (or reuse) the image in /var/cache/borgfleet-lab, and take minutes. `make test`
collects them and deselects them.
"""
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "lab"


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: needs the qemu lab VM (make test-lab)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("BORGFLEET_LAB") == "1":
        return
    lab = [item for item in items if item.get_closest_marker("lab")]
    if lab:
        config.hook.pytest_deselected(items=lab)
        items[:] = [item for item in items if not item.get_closest_marker("lab")]


class VM:
    """The booted lab VM: commands run over SSH as root, given as argv lists (quoted with
    shlex.join for the remote shell, never pasted together)."""

    def __init__(self, state):
        self.state = Path(state)
        self.port = int((self.state / "port").read_text())
        self.key = self.state / "id_ed25519"
        self.known_hosts = self.state / "known_hosts"

    def ssh_argv(self):
        return ["ssh", "-F", str(self.state / "ssh_config"), "lab"]

    def shell(self, command, input=None, check=True, timeout=300):
        """Run a remote shell command line made by the caller from constants and shlex.join."""
        proc = subprocess.run(self.ssh_argv() + ["--", command], input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
        if check and proc.returncode:
            raise RuntimeError("lab VM: %s: rc %d: %s" % (command, proc.returncode, proc.stderr[-2000:]))
        return proc

    def run(self, argv, **kw):
        return self.shell(shlex.join(argv), **kw)

    def put(self, path, content, mode="0644"):
        """Write `content` to `path` in the VM (through stdin: no content on any command line)."""
        self.shell("cat > %s && chmod %s %s" % (shlex.quote(path), mode, shlex.quote(path)), input=content)

    def inventory_vars(self):
        """How ansible reaches the VM: key and known_hosts of this image, strict host key checking."""
        return {"ansible_host": "127.0.0.1", "ansible_port": self.port, "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes"
                                           % self.known_hosts,
                # sshd under TCG on a loaded host can take longer than the default 10 s to answer.
                "ansible_ssh_timeout": 60,
                "ansible_python_interpreter": "/usr/bin/python3"}


@pytest.fixture(scope="session")
def lab_timings():
    """Figures the tier reports at its end (image build, boot to SSH, playbooks)."""
    timings = {}
    yield timings
    print("\nlab timings: " + ", ".join("%s %.1f s" % kv for kv in timings.items()))


@pytest.fixture(scope="session")
def lab_vm(tmp_path_factory, lab_timings):
    """One clean VM per session, from the cached image (built here if missing).

    LAB_VM_STATE=DIR uses a VM already booted with `lab/boot start DIR` (a developer iterating
    on a test saves the boot) and leaves it running; its LVM disk must still be empty."""
    if os.environ.get("LAB_VM_STATE"):
        yield VM(os.environ["LAB_VM_STATE"])
        return
    started = time.monotonic()
    build = subprocess.run([str(LAB / "build-image")], stdout=subprocess.PIPE, text=True, check=True)
    image = build.stdout.strip().splitlines()[-1]
    lab_timings["image (build or cache)"] = time.monotonic() - started
    # Short path: it holds the ssh config and qemu's files.
    state = Path(tmp_path_factory.mktemp("labvm"))
    started = time.monotonic()
    try:
        # lab/boot waits up to LAB_SSH_TIMEOUT (1200 s) for SSH and then fails with the console's tail.
        subprocess.run([str(LAB / "boot"), "start", str(state), image], stdout=subprocess.PIPE, check=True,
                       timeout=1500)
        lab_timings["boot to SSH"] = time.monotonic() - started
        yield VM(state)
    finally:
        subprocess.run([str(LAB / "boot"), "stop", str(state)], check=False, timeout=120)
