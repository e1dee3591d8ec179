"""Restore and instant recovery on another host than the one backed up: a backup server and a
recovery host on loopback sshd; the recovery host reads the client's repository with its own key.
A restore, browse or search gets a temporary grant on the server for that (restore_anywhere.yml);
instant recovery still needs the key authorised by hand (borg serve --restrict-to-path)."""
import filecmp
import json
import os
import re
import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest

# Two more sshd hosts and SSH round trips: ~50 s; run with -m slow (make test excludes it).
pytestmark = pytest.mark.slow
import yaml

from tests.lib.borgrepo import BorgFailed, BorgRepo
from tests.lib.playbook import run_playbook
from tests.lib.sshd import keygen
from tests.recovery.dbs import PG_ROWS
from tests.recovery.test_instant_recovery import STATE_DIR, assert_nothing_left

SECRET = "remote pw $HOME;'\"|&"  # survives only if nothing goes through a shell


@pytest.fixture(scope="module")
def remote(test_root, sshd_factory, controller, pg_crashed):
    root = Path(tempfile.mkdtemp(prefix="remote-", dir=test_root))
    root.chmod(0o755)
    server, target = sshd_factory("ir-server"), sshd_factory("ir-target")
    pool = root / "pool"
    (pool / "db1").mkdir(parents=True)
    # The server's borg user (a unique name: the machine is shared), with an empty authorized_keys:
    # the recovery host's key is authorised only by a grant (restore) or by hand (instant recovery).
    user, home = f"bfr{secrets.token_hex(3)}", root / "borg-home"
    subprocess.run(["useradd", "--system", "--home-dir", str(home), "--create-home", "--shell", "/bin/sh",
                    "--password", "*", user], check=True, capture_output=True)
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "authorized_keys").touch(mode=0o600)
    # The recovery host's own key.
    key = root / "target_key"
    pub = keygen(key, comment="recovery-host")
    known = root / "target_known_hosts"
    known.write_text(server.known_hosts_line + "\n")
    files = root / "files"
    (files / "app").mkdir(parents=True)
    (files / "app" / "config.yml").write_text("answer: 42\n")
    (files / "app" / "blob.bin").write_bytes(os.urandom(200_000))
    os.symlink("config.yml", files / "app" / "current")
    env = dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=str(root / "server-borg"))
    for name, path in (("files", files / "app"), ("pg", pg_crashed)):
        subprocess.run(["borg", "init", "-e", "repokey-blake2", str(pool / "db1" / name)], env=env, check=True,
                       capture_output=True)
        subprocess.run(["borg", "create", f"{pool}/db1/{name}::{name}-2026-11-25T02:00:00", str(path)], env=env,
                       check=True)
    subprocess.run(["chown", "-R", f"{user}:{user}", str(pool), str(home)], check=True)
    inv = {"all": {
        "vars": {"ansible_user": "root", "ansible_python_interpreter": "/usr/bin/python3",
                 "ansible_ssh_private_key_file": str(controller.key),
                 "ansible_ssh_common_args": f"-o UserKnownHostsFile={controller.known_hosts} "
                                            "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"},
        "children": {
            "backup_servers": {"hosts": {"server1": {
                "ansible_host": server.address, "ansible_port": server.port, "borgfleet_server_user": user,
                "borgfleet_server_user_home": str(home),
                "borgfleet_storage_pools": [{"name": "main", "path": str(pool)}]}}},
            # db1 was backed up; it is not even reachable - only its inventory is used.
            "clients": {"hosts": {"db1": {
                "ansible_host": "127.0.0.254", "borgfleet_backup_server": "server1",
                "borgfleet_backups": [{"name": "files", "paths": ["/srv/app"], "passphrase": SECRET},
                                      {"name": "pg", "passphrase": SECRET,
                                       "databases": [{"engine": "postgresql", "method": "snapshot"}]}]}}},
            "recovery": {"hosts": {"target1": {
                "ansible_host": target.address, "ansible_port": target.port,
                "borgfleet_ssh_key": str(key), "borgfleet_known_hosts": str(known),
                "borgfleet_borg_base_dir": str(root / "target-borg")}}},
        }}}
    inventory = root / "inventory.yml"
    inventory.write_text(yaml.safe_dump(inv))
    inventory.chmod(0o600)
    url = f"ssh://{user}@{server.address}:{server.port}{pool}"
    yield dict(root=root, inventory=inventory, files=files, key=key, pub=pub, known=known, url=url, pool=pool,
               authorized_keys=home / ".ssh" / "authorized_keys")
    subprocess.run(["userdel", user], capture_output=True)


def refused(remote, repository):
    """True if the recovery host's key is refused on this repository by the server's forced command."""
    repo = BorgRepo(remote["url"] + repository, SECRET, ssh_key=remote["key"], known_hosts=remote["known"],
                    base_dir=remote["root"] / "probe")
    try:
        repo.run("list", repo.url)
    except BorgFailed as e:
        # Permission denied: no line at all for the key; PathNotAllowed: a line, for other paths.
        assert re.search("Permission denied|not allowed|PathNotAllowed", str(e)), str(e)
        return True
    return False


def test_restore_onto_another_host_through_a_grant(remote, ansible_control_dir):
    assert refused(remote, "/db1/files")
    target = remote["root"] / "restored-on-target1"
    ev = {"borgfleet_restore_hosts": "target1", "borgfleet_restore_source": "db1", "borgfleet_backup": "files",
          "borgfleet_archive": "latest", "borgfleet_restore_target": str(target)}
    r = run_playbook("restore_anywhere.yml", remote["inventory"], extra_vars=ev, check=True,
                     control_dir=ansible_control_dir)
    assert r.rc == 0 and not target.exists(), r
    r = run_playbook("restore_anywhere.yml", remote["inventory"], extra_vars=ev, control_dir=ansible_control_dir)
    assert r.rc == 0, r
    assert SECRET not in r.output
    restored = target / str(remote["files"]).lstrip("/") / "app"
    cmp = filecmp.dircmp(remote["files"] / "app", restored)
    assert sorted(cmp.same_files) == ["blob.bin", "config.yml", "current"] and not cmp.diff_files
    assert os.readlink(restored / "current") == "config.yml"
    # Browse and search from the recovery host too.
    r = run_playbook("search.yml", remote["inventory"], extra_vars={
        "borgfleet_restore_hosts": "target1", "borgfleet_restore_source": "db1", "borgfleet_backup": "files",
        "borgfleet_search_path": "*/app/config.yml"}, control_dir=ansible_control_dir)
    assert r.rc == 0 and "change: added" in r.output and "files-2026-11-25T02:00:00" in r.output, r
    # Each grant was revoked: the key reaches nothing again.
    assert "borg serve" not in remote["authorized_keys"].read_text()
    assert refused(remote, "/db1/files")


def test_instant_recovery_on_a_recovery_host(remote, ansible_control_dir):
    # No grant for instant recovery yet: the key is authorised by hand, for db1's directory only.
    remote["authorized_keys"].write_text(f'command="borg serve --restrict-to-path {remote["pool"]}/db1",restrict '
                                         f'{remote["pub"]}\n')
    assert refused(remote, "/db2/files") and not refused(remote, "/db1/files")
    ev = {"borgfleet_recovery_hosts": "target1", "borgfleet_recovery_source": "db1", "borgfleet_backup": "pg",
          "borgfleet_archive": "latest", "borgfleet_recovery_name": "remote-pg",
          "borgfleet_recovery_query": "SELECT count(*) FROM accounts"}
    r = run_playbook("instant_recovery.yml", remote["inventory"], extra_vars=ev, control_dir=ansible_control_dir)
    assert r.rc == 0, r
    assert SECRET not in r.output
    assert f"- '{PG_ROWS + 1}'" in r.output, r
    session = json.loads((STATE_DIR / "ir-remote-pg.json").read_text())
    assert session["repository"].startswith(remote["url"])
    # The session reads a frozen copy the role made on the backup server, beside the repository (inside the
    # client's directory, which the recovery host's restricted key reaches), not the repository itself.
    pool_db1 = remote["root"] / "pool" / "db1"
    copy = Path(session["frozen_copy"])
    assert copy.parent == pool_db1 and copy.name.startswith(".borgfleet-ir-remote-pg-") and (copy / "config").exists()
    mount_argv = [p for p in Path("/proc").glob("[0-9]*/cmdline")
                  if session["archive_mount"].encode() in p.read_bytes() and b"/usr/bin/borg\0mount" in p.read_bytes()]
    assert mount_argv and all(str(copy).encode() in p.read_bytes() for p in mount_argv)
    (seeded,) = (STATE_DIR / "ir-remote-pg" / "borg" / ".config" / "borg" / "security").glob("*/location")
    assert seeded.read_text() == remote["url"].rsplit(str(remote["root"]), 1)[0] + str(copy)
    # Again: the running session is kept, and so is its copy (not made afresh under it).
    inode = (copy / "config").stat().st_ino
    r = run_playbook("instant_recovery.yml", remote["inventory"], extra_vars=ev, control_dir=ansible_control_dir)
    assert r.rc == 0, r
    assert (copy / "config").stat().st_ino == inode

    # While it lives, the recovery host's own restricted key backs up into the same repository over SSH, then
    # prunes and compacts it (a short lock wait: a held lock would fail them in seconds).
    repo = BorgRepo(remote["url"] + "/db1/pg", SECRET, ssh_key=remote["key"], known_hosts=remote["known"],
                    base_dir=remote["root"] / "target-borg")
    repo.run("create", "--lock-wait", "5", repo.archive("pg-2026-11-26T02:00:00"), str(remote["files"]))
    repo.run("prune", "--lock-wait", "5", "--keep-last", "1", "--glob-archives", "pg-*", repo.url)
    repo.run("compact", "--lock-wait", "5", repo.url)
    assert repo.archive_names() == ["pg-2026-11-26T02:00:00"]
    answered = subprocess.run(["/usr/lib/postgresql/15/bin/psql", "-X", "-A", "-t", "-h", session["socket_dir"],
                               "-p", str(session["port"]), "-d", "postgres", "-c", "SELECT count(*) FROM accounts"],
                              capture_output=True, text=True, user="postgres", group="postgres", extra_groups=[])
    assert answered.stdout.strip() == str(PG_ROWS + 1), answered.stderr

    r = run_playbook("instant_recovery.yml", remote["inventory"], control_dir=ansible_control_dir, extra_vars={
        "borgfleet_recovery_hosts": "target1", "borgfleet_recovery_state": "absent",
        "borgfleet_recovery_name": "remote-pg"})
    assert r.rc == 0, r
    assert_nothing_left("remote-pg", session["engine_proc"]["pid"])
    assert not copy.exists()  # removed on the backup server by the role
