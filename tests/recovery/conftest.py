"""Fixtures for restore and instant recovery: scratch dirs other users can traverse, rowfs mounts."""
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROWFS = REPO / "plugins" / "module_utils" / "rowfs.py"
# Modules (and so rowfs) run with the managed host's python3, which has Debian's python3-pyfuse3.
SYSTEM_PYTHON = "/usr/bin/python3"


def mounted(path):
    """True if `path` is a mount point (read from mountinfo: a dead FUSE mount cannot be stat'ed)."""
    path = os.path.realpath(str(path))
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@pytest.fixture(scope="session")
def pg_crashed(test_root):
    """Data dir of a crashed throwaway PostgreSQL with known rows (see dbs.crashed_postgres)."""
    from tests.recovery.dbs import crashed_postgres
    root = Path(tempfile.mkdtemp(prefix="pg-", dir=test_root))
    root.chmod(0o755)
    return crashed_postgres(root / "pg")


@pytest.fixture
def scratch(test_root):
    """A fresh 0755 directory under the session's root-owned test tree (not /tmp: 0700 parents)."""
    d = Path(tempfile.mkdtemp(prefix="rec-", dir=test_root))
    d.chmod(0o755)
    return d


class Rowfs:
    def __init__(self, source, delta, mountpoint):
        self.source, self.delta, self.mountpoint = Path(source), Path(delta), Path(mountpoint)
        self.proc = None

    def start(self):
        self.mountpoint.mkdir(exist_ok=True)
        self.log = open(self.delta.parent / (self.mountpoint.name + ".log"), "w")
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(ROWFS), str(self.source), str(self.delta),
                                      str(self.mountpoint), "--allow-other"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not mounted(self.mountpoint):
            assert self.proc.poll() is None, (self.delta.parent / (self.mountpoint.name + ".log")).read_text()
            assert time.time() < deadline, "rowfs did not mount within 20 s"
            time.sleep(0.05)
        return self

    def stop(self):
        if mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-u", str(self.mountpoint)], check=True)
        rc = self.proc.wait(timeout=20)
        self.log.close()
        return rc

    def delta_bytes(self):
        total = 0
        for e in os.scandir(self.delta):
            try:
                total += e.stat().st_blocks * 512
            except FileNotFoundError:  # a map's .tmp renamed meanwhile (FUSE release is asynchronous)
                pass
        return total


@pytest.fixture
def rowfs(scratch):
    """A rowfs over scratch/src (filled by the test first: call .start())."""
    (scratch / "src").mkdir(mode=0o755)
    fs = Rowfs(scratch / "src", scratch / "delta", scratch / "mnt")
    yield fs
    if fs.proc and fs.proc.poll() is None:
        if mounted(fs.mountpoint):
            subprocess.run(["fusermount3", "-uz", str(fs.mountpoint)])
        fs.proc.wait(timeout=20)
