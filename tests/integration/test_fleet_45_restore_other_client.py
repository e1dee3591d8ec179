"""restore_anywhere.yml onto another client over SSH: a temporary grant on the backup server lets
client2's own key read client1's repository for the run, and is gone afterwards (also after a
failed or a check-mode run). Read back with borg and with sshd itself."""
import re
import time

from plugins.module_utils import authorized_keys as ak
from tests.lib.borgrepo import BorgFailed
from tests.lib.trees import EXCLUDED, compare_trees

REFUSED = re.compile(r"not allowed|PathNotAllowed", re.I)


def refused(fleet, client, backup, key_of):
    """True if key_of's key is refused on client's repository (the forced command's path check)."""
    repo = fleet.repo(client, backup, ssh_key=fleet.clients[key_of].ssh_key)
    try:
        repo.run("list", repo.url)
    except BorgFailed as e:
        assert REFUSED.search(str(e)), str(e)
        return True
    return False


def keys_file(fleet):
    return (fleet.server.home / ".ssh" / "authorized_keys").read_text()


def test_restore_onto_another_client_through_a_grant_that_is_revoked(fleet, backup_run):
    c1, c2 = fleet.clients["client1"], fleet.clients["client2"]
    before = keys_file(fleet)
    assert refused(fleet, "client1", "etc", key_of="client2")
    target = c2.dir / "from-client1"
    ev = {"borgfleet_restore_hosts": "client2", "borgfleet_restore_source": "client1", "borgfleet_backup": "etc",
          "borgfleet_archive": "latest", "borgfleet_restore_target": str(target)}

    # The dry run reads the repository too: granted, then revoked; nothing written.
    r = fleet.play("restore_anywhere.yml", extra_vars=ev, check=True)
    assert r.rc == 0, r
    assert not target.exists() and keys_file(fleet) == before

    r = fleet.play("restore_anywhere.yml", extra_vars=ev)
    assert r.rc == 0, r
    source = c1.dir / "data"
    assert compare_trees(source, target / str(source).lstrip("/"), ignore=EXCLUDED) == []
    # Revoked: the file is as it was, and the key is refused again; its own repository still works.
    assert keys_file(fleet) == before
    assert refused(fleet, "client1", "etc", key_of="client2")
    assert fleet.repo("client2", "home").archive_names()

    # Searching its archives from client2 goes through a grant too.
    r = fleet.play("search.yml", extra_vars={"borgfleet_restore_hosts": "client2", "borgfleet_restore_source": "client1",
                                             "borgfleet_backup": "etc", "borgfleet_search_path": "*/data/sub"})
    assert r.rc == 0 and "change: added" in r.output, r
    assert keys_file(fleet) == before

    # A restore that fails (no such archive) revokes too.
    r = fleet.play("restore_anywhere.yml", extra_vars=dict(ev, borgfleet_archive="etc-no-such-archive"))
    assert r.rc != 0 and "etc-no-such-archive" in r.output, r
    assert "Revoke the grant" in r.output
    assert keys_file(fleet) == before


def test_an_expired_grant_falls_back_to_the_clients_own_line(fleet, setup_run):
    """A grant nobody revoked (a killed run) ends by itself: sshd skips the expired line and applies
    the client's own line, so the client keeps its backups and loses the other repository. (The next
change of the file drops the expired record: tests/unit/test_authorized_keys.py.)"""
    path = fleet.server.home / ".ssh" / "authorized_keys"
    before = path.read_text()
    lines, grants = ak.split(before)
    assert grants == []
    key = fleet.clients["client2"].ssh_key.with_suffix(".pub").read_text().strip()
    repo = fleet.clients["client1"].repo_path("etc")
    soon = ak.utc(time.time() + 6)
    grant = {"client": "client2", "id": "0123456789abcdef", "expires": soon, "path": repo, "public_key": key}
    path.write_text(ak.join(lines, [grant], ak.utc(time.time())))
    try:
        assert f'expiry-time="{soon}"' in path.read_text()
        assert not refused(fleet, "client1", "etc", key_of="client2")  # live: the grant line applies
        while ak.utc(time.time()) <= soon:
            time.sleep(0.2)
        assert refused(fleet, "client1", "etc", key_of="client2")
        assert fleet.repo("client2", "home").archive_names()  # its own line still applies
    finally:
        path.write_text(before)

