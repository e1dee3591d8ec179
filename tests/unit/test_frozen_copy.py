"""module_utils/frozen.py without borg (pure file logic): what settle() keeps of a linked tree, where a copy may
be made or removed, the URLs of a copy over SSH, and pool scans that skip copies. The copy made by borg itself
under its lock is tested in tests/recovery/test_recovery_beside_backups.py."""
import os
import subprocess

import pytest

from ansible_collections.borgfleet.backup.plugins.module_utils import facts, frozen
from ansible_collections.borgfleet.backup.plugins.module_utils.errors import RecoveryError


def test_settle_drops_locks_and_the_uncommitted_tail_and_copies_top_level_files(tmp_path):
    repo, copy = tmp_path / "repo", tmp_path / ".borgfleet-ir-s1"
    (repo / "data" / "0").mkdir(parents=True)
    for n in range(8):  # committed up to 5 (index.5), 6 and 7 written by an open transaction
        (repo / "data" / "0" / str(n)).write_bytes(b"segment %d" % n)
    for name in ("config", "index.5", "hints.5", "integrity.5", "nonce", "README"):
        (repo / name).write_text(name)
    (repo / "lock.exclusive").mkdir()
    (repo / "lock.exclusive" / "host@1.2-0").write_text("")
    (repo / "lock.roster").write_text("{}")
    subprocess.run(frozen.link_command(str(repo), str(copy)), check=True)  # what borg with-lock runs
    figures = frozen.settle(str(copy))
    assert figures == {"transaction": 5, "segments": 6, "uncommitted_dropped": 2}
    assert sorted(os.listdir(copy)) == ["README", "config", "data", "hints.5", "index.5", "integrity.5", "nonce"]
    assert sorted(os.listdir(copy / "data" / "0")) == [str(n) for n in range(6)]
    # Segments stay links (the repository's own bytes); the top-level files are copies of their own.
    assert (copy / "data" / "0" / "3").stat().st_ino == (repo / "data" / "0" / "3").stat().st_ino
    assert all((copy / n).stat().st_nlink == 1 and (copy / n).read_text() == n for n in ("config", "nonce"))
    assert (repo / "data" / "0" / "7").exists() and (repo / "lock.roster").exists()  # the repository untouched


def test_copies_only_beside_their_repository_and_only_ours_are_removed(tmp_path):
    repo = str(tmp_path / "pool" / "db1" / "pg")
    assert frozen.copy_path_for(repo, "s1") == str(tmp_path / "pool" / "db1" / ".borgfleet-ir-s1")
    assert frozen.copy_path_for(repo + "/", "s1", "abc") == str(tmp_path / "pool" / "db1" / ".borgfleet-ir-s1-abc")
    for wrong in (str(tmp_path / "pool" / ".borgfleet-ir-s1"), str(tmp_path / "pool" / "db1" / "pg2"),
                  "pool/db1/.borgfleet-ir-s1", str(tmp_path / "pool" / "db1" / ".borgfleet-ir-x" / "..")):
        with pytest.raises(RecoveryError):
            frozen.check_copy_path(repo, wrong)
    (tmp_path / "pool" / "db1" / "pg").mkdir(parents=True)
    with pytest.raises(RecoveryError):
        frozen.remove(repo)
    os.symlink(repo, tmp_path / "pool" / "db1" / ".borgfleet-ir-link")
    with pytest.raises(RecoveryError):
        frozen.remove(str(tmp_path / "pool" / "db1" / ".borgfleet-ir-link"))
    assert os.path.isdir(repo)
    assert frozen.remove(str(tmp_path / "pool" / "db1" / ".borgfleet-ir-gone")) is False


def test_ssh_locations_of_a_copy():
    url = "ssh://borg@10.0.0.2:22/srv/borg/db1/pg"
    assert frozen.ssh_path(url) == "/srv/borg/db1/pg"
    assert frozen.ssh_path("/srv/borg/db1/pg") is None and frozen.ssh_path("borg@host:pg") is None
    assert frozen.ssh_url_with_path(url, "/srv/borg/db1/.borgfleet-ir-s1-abc") == \
        "ssh://borg@10.0.0.2:22/srv/borg/db1/.borgfleet-ir-s1-abc"


def test_security_entry_seeded_from_the_repository_s_own(tmp_path):
    real = tmp_path / "real" / ".config" / "borg" / "security" / "ab12"
    real.mkdir(parents=True)
    (real / "location").write_text("/pool/db1/pg")
    (real / "key-type").write_text("5")
    (real / "manifest-timestamp").write_text("2026-12-02T10:00:00.000000")
    env = {"BORG_BASE_DIR": str(tmp_path / "real")}
    assert frozen.known_ids(env, "/pool/db1/pg") == ["ab12"] and frozen.known_ids(env, "/elsewhere") == []
    added = frozen.seed_security("/pool/db1/.borgfleet-ir-s1", ["ab12"], env, str(tmp_path / "mine"))
    mine = tmp_path / "mine" / ".config" / "borg" / "security" / "ab12"
    assert (mine / "location").read_text() == "/pool/db1/.borgfleet-ir-s1"
    assert (mine / "key-type").read_text() == "5" and (mine / "manifest-timestamp").read_text().startswith("2026")
    assert (real / "location").read_text() == "/pool/db1/pg"
    assert added == {"BORG_BASE_DIR": str(tmp_path / "mine"),
                     "BORG_KEYS_DIR": str(tmp_path / "real" / ".config" / "borg" / "keys")}


def test_pool_scans_skip_frozen_copies(tmp_path):
    for d in ("db1/pg", "db1/.borgfleet-ir-s1", "db2/files"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "config").write_text("[repository]\nversion = 1\n")
    assert facts.find_repositories(str(tmp_path)) == [str(tmp_path / "db1" / "pg"), str(tmp_path / "db2" / "files")]
