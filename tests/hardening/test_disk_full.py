"""Disk full on the pool mid-backup (issue 10).

A backup server whose only pool is a 48 MiB tmpfs, a client over real SSH, backup.yml as an operator runs it.
When the pool fills up mid-backup the play fails saying no space is left on the pool (its path, the
repository on it, the server); the aborted transaction's data is removed so the pool is as before and
`borg check` passes; the earlier archive is intact; once space is freed the next backup.yml succeeds.
"""
import os
import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest

from ansible_collections.borgfleet.backup.plugins.module_utils import borg as b
from tests.lib import fleet as fl
from tests.lib.playbook import run_playbook
from tests.lib.trees import compare_trees, make_tree

MiB = 1024 * 1024


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def small_pool(test_root, controller, sshd_factory, ansible_control_dir):
    """One backup server with a 48 MiB tmpfs pool and one client; the tmpfs is unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    root = Path(tempfile.mkdtemp(prefix="diskfull-", dir=test_root))
    root.chmod(0o755)
    server_dir = root / "server"
    server_dir.mkdir(mode=0o755)
    pool = server_dir / "pool"
    pool.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(pool)], check=True)
    server = fl.Server(name="fullsrv", sshd=sshd_factory("fullsrv"), dir=server_dir,
                       user=f"bft{secrets.token_hex(3)}", pools=[{"name": "tiny", "path": str(pool)}])
    try:
        client_dir = root / "fullcli"
        client_dir.mkdir(mode=0o700)
        make_tree(client_dir / "data", seed="diskfull")
        client = fl.Client(name="fullcli", sshd=sshd_factory("fullcli"), dir=client_dir, server=server,
                           backups=[{"name": "files", "paths": [str(client_dir / "data")],
                                     "passphrase": fl.passphrase()}])
        inventory = fl.write_inventory(root / "inventory.yml", fl.inventory(controller, [server], [client]))

        def play(name):
            return run_playbook(name, inventory, control_dir=ansible_control_dir)

        yield play, client, pool, root
    finally:
        if subprocess.run(["umount", str(pool)]).returncode != 0:
            subprocess.run(["umount", "-l", str(pool)])
        server.remove_user()


def test_full_pool_fails_clearly_keeps_the_repository_and_recovers(small_pool, controller):
    play, client, pool, root = small_pool
    data = client.dir / "data"
    repo = client.repo("files", controller)

    setup = play("setup.yml")
    assert setup.rc == 0, setup
    first = play("backup.yml")
    assert first.rc == 0, first
    [archive1] = repo.archive_names()
    as_archived = root / "as-archived"
    # cp -a: the reference keeps owners, times, xattrs and ACLs, as borg does.
    subprocess.run(["cp", "-a", str(data), str(as_archived)], check=True)

    # Fill the pool to 6 MiB of free space, then back up 16 MiB that does not compress.
    filler = pool / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, free_bytes(pool) - 6 * MiB)
    finally:
        os.close(fd)
    free_before = free_bytes(pool)
    (data / "big.bin").write_bytes(os.urandom(16 * MiB))

    full = play("backup.yml")
    failures = " ".join(full.failures().split())  # the YAML callback folds long lines
    assert full.rc != 0 and full.recap["fullcli"]["failed"] >= 1, full
    repo_path = client.repo_path("files")
    assert f"no space left on the storage pool holding repository {repo_path} on backup server " \
           f"{client.server.sshd.address}" in failures, failures
    assert "the partial data of this run was removed from the pool; free space on that pool" in failures
    assert "Traceback" not in failures and "Borg server:" not in failures  # the message itself is readable
    # The aborted transaction's segments are gone: the pool has the room it had before.
    assert free_bytes(pool) >= free_before - MiB, (free_bytes(pool), free_before)

    # The repository is consistent and the earlier archive restores identically.
    repo.run("check", repo.url)
    assert repo.archive_names() == [archive1]
    restored = repo.extract(archive1, root / "restored-1")
    assert compare_trees(as_archived, restored / str(data).lstrip("/")) == []

    # Space freed: the next backup succeeds and holds the big file.
    filler.unlink()
    again = play("backup.yml")
    assert again.rc == 0, again
    names = repo.archive_names()
    assert len(names) == 2 and names[0] == archive1
    restored = repo.extract(names[1], root / "restored-2", str(data / "big.bin").lstrip("/"))
    assert (restored / str(data / "big.bin").lstrip("/")).read_bytes() == (data / "big.bin").read_bytes()
    repo.run("check", repo.url)


# Records as borg 1.2 writes them (--log-json), trimmed: the server's pool full mid-write, this host's
# cache full, and the pre-commit free-space check.
def _log(message, msgid=None):
    import json
    rec = {"type": "log_message", "levelname": "ERROR", "message": message, "name": "borg.archiver"}
    if msgid:
        rec["msgid"] = msgid
    return json.dumps(rec)


POOL_FULL = "\n".join([
    _log('Traceback (most recent call last):\n\n  File "/usr/lib/python3/dist-packages/borg/remote.py", line 240, in '
         'serve\n    res = f(**args)\n\n  File "/usr/lib/python3/dist-packages/borg/repository.py", line 1230, in put\n'
         '    segment, offset = self.io.write_put(id, data)\n\n  File "/usr/lib/python3/dist-packages/borg/platform/'
         'base.py", line 174, in write\n    self.f.write(data)\n\nOSError: [Errno 28] No space left on device\n',
         "OSError"),
    _log("Borg server: Platform: Linux vm 6.18\nBorg server: Borg: 1.2.4  Python: CPython 3.11.2\nPlatform: Linux\n"),
])
CACHE_FULL = _log(
    'Local Exception\nTraceback (most recent call last):\n  File "/usr/lib/python3/dist-packages/borg/archive.py", '
    'line 664, in save\n    self.cache.commit()\n  File "/usr/lib/python3/dist-packages/borg/cache.py", line 619, in '
    'commit\n  File "/usr/lib/python3/dist-packages/borg/crypto/file_integrity.py", line 20, in __exit__\n'
    'OSError: [Errno 28] No space left on device\n\nPlatform: Linux vm 6.18\n')
QUOTA = _log("Insufficient free space to complete transaction (required: 1.50 GB, available: 120.00 MB).",
             "Repository.InsufficientFreeSpaceError")


@pytest.mark.parametrize("stderr,kind,detail", [
    (POOL_FULL, "no_space", "OSError: [Errno 28] No space left on device"),
    (CACHE_FULL, "no_space_local", "OSError: [Errno 28] No space left on device"),
    (QUOTA, "no_space", "Insufficient free space to complete transaction (required: 1.50 GB, available: 120.00 MB)."),
])
def test_no_space_says_where(stderr, kind, detail):
    assert b.classify(2, stderr) == (kind, detail)
    settings = b.BorgSettings("ssh://borg@backup1.example.com:2222/srv/pools/fast/web1/etc")
    msg = b.error_message(kind, detail, settings)
    if kind == "no_space":
        assert msg.startswith("no space left on the storage pool holding repository /srv/pools/fast/web1/etc on "
                              "backup server backup1.example.com: " + detail)
    else:
        assert msg.startswith("no space left on this host while borg worked on ssh://borg@backup1.example.com:2222/"
                              "srv/pools/fast/web1/etc: borg's cache")
    assert "Borg server" not in msg and "Traceback" not in msg
