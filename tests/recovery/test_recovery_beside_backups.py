"""An instant-recovery session never blocks its repository: while a PostgreSQL session of a local repository
is live, a real backup, then a prune that removes the very archive the session runs from, and a compact
that deletes its segments, all succeed (read back with borg list and borg check), while the session keeps
answering the same rows - also after a stop and a resume. Removing the session leaves no frozen copy and
nothing mounted."""
import json
import os
import pwd
import subprocess
import tempfile
from pathlib import Path

from tests.lib.playbook import run_module
from tests.modules.test_modules import SECRET
from tests.recovery.dbs import PG_ROWS
from tests.recovery.test_instant_recovery import STATE_DIR, assert_nothing_left, backup, make_repo, psql

ROWS_QUERY = "SELECT count(*), sum(balance), max(id) FROM accounts"
EXPECTED_ROWS = [[str(PG_ROWS + 1), str(7 * PG_ROWS * (PG_ROWS + 1) // 2 + 42), "100001"]]


def borg_json(common, *args):
    env = dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=common["borg_base_dir"])
    proc = subprocess.run(["borg", *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


def segments(repository):
    return {p.relative_to(repository) for p in (Path(repository) / "data").glob("*/*") if p.name.isdigit()}


def test_backup_prune_compact_while_a_session_is_live(tmp_path, test_root, pg_crashed):
    root = Path(tempfile.mkdtemp(prefix="ir-busy-", dir=test_root))
    root.chmod(0o755)
    common = make_repo(root, "pg")
    first = "pg-2026-11-25T02:00:00"
    backup(common, first, pg_crashed)
    # A short lock wait: had the session kept the repository's lock, the writers below would fail in seconds.
    quick = dict(common, lock_wait=5)
    r = run_module(tmp_path, "instant_recovery", dict(common, archive=first, name="t-busy", query=ROWS_QUERY))
    session = r["session"]
    assert r["query_rows"] == EXPECTED_ROWS
    copy = Path(session["frozen_copy"])
    assert copy.parent == Path(common["repository"]).parent and copy.name == ".borgfleet-ir-t-busy"
    # Links, not copies: the copy's segments are the repository's own inodes (the few top-level files are copied).
    shared = segments(common["repository"]) & segments(copy)
    assert shared and all((copy / s).stat().st_ino == (Path(common["repository"]) / s).stat().st_ino for s in shared)
    # Read with a private BORG_BASE_DIR whose security entry is the repository's own (key type, newest manifest
    # seen) at the copy's location: borg's relocation and replay checks hold, the repository's entry is untouched.
    security = Path(common["borg_base_dir"]) / ".config" / "borg" / "security"
    (repo_id,) = [d.name for d in security.iterdir()]
    mine = STATE_DIR / "ir-t-busy" / "borg" / ".config" / "borg" / "security" / repo_id
    assert (mine / "location").read_text() == str(copy)
    assert (mine / "key-type").read_text() == (security / repo_id / "key-type").read_text()
    assert (security / repo_id / "location").read_text() == common["repository"]
    print(f"\nfrozen copy after {r['timings']['frozen_copy']} s, ready in {r['ready_seconds']} s")

    second = "pg-2026-11-26T02:00:00"
    r = run_module(tmp_path, "borg_archive", dict(quick, name=second, paths=[str(pg_crashed)]))
    assert r["changed"] and r["archive"]["name"] == second
    r = run_module(tmp_path, "borg_prune", dict(quick, match_archives="pg-*", keep_daily=1))
    assert [a["name"] for a in r["pruned"]] == [first] and r["compacted"], r
    listed = [a["name"] for a in borg_json(common, "list", "--json", common["repository"])["archives"]]
    assert listed == [second]
    borg_json(common, "check", common["repository"])
    # compact deleted the segments that held the first archive; only the copy's links keep them now.
    gone = shared - segments(common["repository"])
    assert gone and all((copy / s).stat().st_nlink == 1 for s in gone)

    assert psql(session, ROWS_QUERY).stdout.strip() == "|".join(EXPECTED_ROWS[0])
    assert psql(session, "INSERT INTO accounts VALUES (200000, 'written-in-recovery', 1)").returncode == 0
    # Stop and resume: the same frozen data, the row written in the layer included.
    run_module(tmp_path, "instant_recovery", {"name": "t-busy", "state": "stopped"}, secrets=[SECRET])
    r = run_module(tmp_path, "instant_recovery", dict(common, archive=first, name="t-busy",
                                                    query="SELECT count(*), min(owner) FROM accounts WHERE id >= 100001"))
    assert r["query_rows"] == [["2", "after-checkpoint"]] and r["session"]["frozen_copy"] == str(copy)
    assert psql(r["session"], ROWS_QUERY).stdout.strip().split("|")[0] == str(PG_ROWS + 2)

    r = run_module(tmp_path, "instant_recovery", {"name": "t-busy", "state": "absent"}, secrets=[SECRET])
    assert "frozen copy" in r["removed"]
    assert not copy.exists() and not (STATE_DIR / "ir-t-busy").exists()
    assert_nothing_left("t-busy", session["pid"])
    # The repository is whole and holds the new backup (the pruned archive went, read back above).
    borg_json(common, "check", common["repository"])
    assert borg_json(common, "list", "--json", common["repository"])["archives"][0]["name"] == second


def test_repository_copy_on_a_backup_server_as_the_repository_owner(tmp_path, test_root):
    """borg_repository_copy as root (the admin on a backup server) on a repository of another user (the borg user;
    here postgres, a user with a home): borg's commit under the lock and the copy stay that user's, so the
    repository is still served by its owner, who reads the copy too. Only copies beside the repository."""
    root = Path(tempfile.mkdtemp(prefix="ir-owner-", dir=test_root))
    root.chmod(0o755)
    common = make_repo(root, "files")
    (root / "data").mkdir()
    (root / "data" / "a.txt").write_text("frozen\n")
    backup(common, "files-1", root / "data")
    owner = pwd.getpwnam("postgres")
    subprocess.run(["chown", "-R", f"{owner.pw_uid}:{owner.pw_gid}", str(root / "pool")], check=True)
    copy = Path(common["repository"]).parent / ".borgfleet-ir-s1-host1"
    args = dict(repository=common["repository"], path=str(copy))
    assert run_module(tmp_path, "borg_repository_copy", args, check=True)["changed"] and not copy.exists()
    r = run_module(tmp_path, "borg_repository_copy", args)
    assert r["changed"] and r["copy"]["segments"] > 0 and r["copy"]["transaction"] is not None
    for tree in (Path(common["repository"]), copy):
        strangers = [p for p in [tree, *tree.rglob("*")] if p.lstat().st_uid != owner.pw_uid]
        assert not strangers, strangers
    # The owner reads the copy (the key is in its config), under its own name and lock.
    env = dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=str(root / "reader"), HOME=owner.pw_dir,
               BORG_RELOCATED_REPO_ACCESS_IS_OK="no")
    (root / "reader").mkdir()
    os.chown(root / "reader", owner.pw_uid, owner.pw_gid)
    listed = subprocess.run(["borg", "list", "--short", str(copy)], env=env, capture_output=True, text=True,
                            user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
    assert listed.returncode == 0 and listed.stdout.split() == ["files-1"], listed.stderr
    # Nothing but a .borgfleet-ir-* directory beside the repository is ever made or removed.
    for wrong in (root / ".borgfleet-ir-elsewhere", Path(common["repository"]).parent / "not-a-copy"):
        r = run_module(tmp_path, "borg_repository_copy", dict(args, path=str(wrong)), expect_failure=True)
        assert "beside it" in r["msg"]
    r = run_module(tmp_path, "borg_repository_copy", dict(args, state="absent"))
    assert r["changed"] and not copy.exists() and Path(common["repository"], "config").exists()
    assert not run_module(tmp_path, "borg_repository_copy", dict(args, state="absent"))["changed"]
