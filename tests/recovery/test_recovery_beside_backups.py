"""An instant-recovery session never blocks its repository: while a PostgreSQL session of a local repository
is live, a real backup, then a prune that removes the very archive the session runs from, and a compact
that deletes its segments, all succeed (read back with borg list and borg check), while the session keeps
answering the same rows - also after a stop and a resume. Removing the session leaves no frozen copy and
nothing mounted."""
import json
import os
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
