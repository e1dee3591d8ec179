"""borg_mount through ansible-playbook with real borg and FUSE: four ways, allow_other proven by
reading as another user, a killed borg leaves a dead mount that the next run cleans up."""
import errno
import os
import signal
import subprocess
import time

import pytest

from tests.lib.playbook import four_ways, run_module
from tests.modules.test_modules import SECRET, borg
from tests.recovery.conftest import mounted

MOUNTS = "/run/borgfleet/mounts"
NOBODY = 65534


@pytest.fixture
def repo(scratch):
    data = scratch / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "file.txt").write_text("hello from the archive\n")
    os.chmod(data / "sub" / "file.txt", 0o600)
    os.chown(data / "sub" / "file.txt", NOBODY, NOBODY)
    os.chown(data / "sub", NOBODY, NOBODY)
    common = {"repository": str(scratch / "repo"), "passphrase": SECRET, "borg_base_dir": str(scratch / "base")}
    borg(common["repository"], "init", "--encryption", "repokey-blake2", base=common["borg_base_dir"])
    env = dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=common["borg_base_dir"])
    subprocess.run(["borg", "create", common["repository"] + "::one", "sub"], cwd=data, env=env, check=True)
    subprocess.run(["borg", "create", common["repository"] + "::two", "sub"], cwd=data, env=env, check=True)
    yield common
    for name in ("t-one", "t-repo"):
        if mounted(f"{MOUNTS}/{name}"):
            subprocess.run(["fusermount3", "-uz", f"{MOUNTS}/{name}"])


def borg_pid(mountpoint):
    """The borg process serving a mount point (its command line names it)."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"mount" in argv and mountpoint.encode() in argv:
                return int(pid)
    return None


def test_mount_archive_four_ways_allow_other_and_stale_cleanup(tmp_path, repo):
    mp = f"{MOUNTS}/t-one"
    args = dict(repo, archive="one", name="t-one")
    assert not mounted(mp)
    _, real, _, _ = four_ways(tmp_path, "borg_mount", args, lambda: mounted(mp))
    assert real["mountpoint"] == mp and mounted(mp)
    # The file's owner, not root who mounted it, reads it: allow_other plus archived modes.
    proc = subprocess.run(["cat", f"{mp}/sub/file.txt"], user=NOBODY, group=NOBODY, extra_groups=[],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "hello from the archive\n", proc.stderr
    with pytest.raises(OSError):
        open(f"{mp}/sub/new", "w")  # read-only
    # Kill borg: the mount is left dead (ENOTCONN); the next run removes it and mounts again.
    pid = borg_pid(mp)
    assert pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 10
    while True:
        try:
            os.statvfs(mp)  # statfs always asks the daemon (stat may be answered from the cache)
        except OSError as e:
            assert e.errno in (errno.ENOTCONN, errno.ECONNABORTED)
            break
        assert time.time() < deadline
        time.sleep(0.1)
    r = run_module(tmp_path, "borg_mount", args)
    assert r["changed"] and r["cleaned"] == [mp]
    assert open(f"{mp}/sub/file.txt").read() == "hello from the archive\n"
    r = run_module(tmp_path, "borg_mount", {"name": "t-one", "state": "unmounted"}, check=True, secrets=[SECRET])
    assert r["changed"] and mounted(mp)
    r = run_module(tmp_path, "borg_mount", {"name": "t-one", "state": "unmounted"}, secrets=[SECRET])
    assert r["changed"] and not mounted(mp) and not os.path.exists(mp)
    assert not run_module(tmp_path, "borg_mount", {"name": "t-one", "state": "unmounted"}, secrets=[SECRET])["changed"]
    assert borg_pid(mp) is None


def test_mount_whole_repository(tmp_path, repo):
    mp = f"{MOUNTS}/t-repo"
    r = run_module(tmp_path, "borg_mount", dict(repo, name="t-repo"))
    assert r["changed"] and mounted(mp)
    assert sorted(os.listdir(mp)) == ["one", "two"]
    assert open(f"{mp}/two/sub/file.txt").read() == "hello from the archive\n"
    r = run_module(tmp_path, "borg_mount", dict(repo, name="t-repo", passphrase="wrong-one-here"))
    assert not r["changed"]  # a healthy mount is left alone, no borg call
    run_module(tmp_path, "borg_mount", {"name": "t-repo", "state": "unmounted"}, secrets=[SECRET])
    assert not mounted(mp)
    r = run_module(tmp_path, "borg_mount", dict(repo, name="t-repo", passphrase="wrong-one-here"),
                 expect_failure=True)
    assert r["failed"] and r["error_kind"] == "wrong_passphrase" and not os.path.exists(mp)
