"""btrfs detection on a real btrfs filesystem (a loop device), through the module and the prober."""
import os
import shutil
import socket
import subprocess

import pytest

from ansible_collections.borgfleet.backup.plugins.module_utils import facts, probes
from tests.lib.playbook import run_module

pytestmark = pytest.mark.skipif(not shutil.which("mkfs.btrfs"), reason="btrfs-progs is not installed")


def sh(*argv):
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture
def btrfs(tmp_path):
    """A 300 MB btrfs on a loop device with a subvolume `db`; unmounted (and the loop freed) after."""
    image, mnt = tmp_path / "btrfs.img", tmp_path / "mnt"
    mnt.mkdir()
    sh("truncate", "-s", "300M", str(image))
    sh("mkfs.btrfs", "-q", str(image))
    sh("mount", "-o", "loop", str(image), str(mnt))
    try:
        sh("btrfs", "subvolume", "create", str(mnt / "db"))
        (mnt / "db" / "data").mkdir()
        (mnt / "db" / "data" / "ibdata1").write_bytes(os.urandom(3 * 1024 * 1024))
        (mnt / "plain").mkdir()
        yield mnt
    finally:
        # mount -o loop sets autoclear: unmounting frees the loop device too.
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=60)
    assert not os.path.ismount(mnt)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_datadir_inside_a_subvolume_through_the_module(btrfs, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("redis-server", "redis-cli", "du", "btrfs", "lvs"):
        if shutil.which(name):
            os.symlink(shutil.which(name), tools / name)
    root = tmp_path / "root"
    (root / "etc" / "redis").mkdir(parents=True)
    datadir = btrfs / "db" / "data"
    # A Redis whose configured dir is on the btrfs; nothing listens on its port.
    (root / "etc" / "redis" / "redis.conf").write_text(f"port {free_port()}\ndir {datadir}\n")
    result = run_module(tmp_path, "server_facts", {"gather": ["capabilities"], "probe_path": str(tools),
                                                   "probe_root": str(root)})
    st = result["capabilities"]["redis"]["storage"]
    assert st["type"] == "btrfs" and st["fstype"] == "btrfs" and st["mountpoint"] == str(btrfs)
    assert st["snapshot_capable"] is True
    assert st["btrfs"]["subvolume"] == str(btrfs / "db") and st["btrfs"]["datadir_is_subvolume"] is False
    show = sh("btrfs", "subvolume", "show", str(btrfs / "db"))
    assert st["btrfs"]["uuid"] in show and st["btrfs"]["name"] == "db"
    du = int(sh("du", "-s", "-x", "-B1", str(datadir)).split()[0])
    assert st["snapshot_size"]["datadir_bytes"] == du >= 3 * 1024 * 1024


def test_prober_on_btrfs_and_elsewhere(btrfs, tmp_path):
    prober = facts.StorageProber(probes.Probe(timeout=5), size_timeout=30)
    sub = prober.describe(str(btrfs / "db"))
    assert sub["type"] == "btrfs" and sub["btrfs"]["datadir_is_subvolume"] is True and sub["snapshot_capable"]
    # A plain directory at the top of the filesystem lives in the top-level subvolume (id 5).
    top = prober.describe(str(btrfs / "plain"))
    assert top["btrfs"]["subvolume"] == str(btrfs) and top["btrfs"]["subvolume_id"] == "5"
    # Not btrfs: the root filesystem of this machine (its kind read by util-linux, not by the prober).
    fstype, source = sh("findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", "/var/lib").split()[:2]
    assert fstype != "btrfs", "this machine's /var/lib is on btrfs: the plain case needs another directory"
    lsblk = subprocess.run(["lsblk", "-no", "TYPE", source], capture_output=True, text=True).stdout.split()
    plain = prober.describe("/var/lib")
    assert plain["fstype"] == fstype and plain["type"] == ("lvm" if lsblk[:1] == ["lvm"] else "plain"), plain
    assert plain["snapshot_capable"] is False
    missing = prober.describe(str(tmp_path / "nope"))
    assert missing["exists"] is False and missing["snapshot_capable"] is False
    # Without btrfs-progs the same subvolume cannot be snapshotted from here.
    no_tools = facts.StorageProber(probes.Probe(path=str(tmp_path), timeout=5), size_timeout=30)
    bare = no_tools.describe(str(btrfs / "db"))
    assert bare["type"] == "btrfs" and bare["snapshot_capable"] is False and "btrfs-progs" in bare["reason"]
