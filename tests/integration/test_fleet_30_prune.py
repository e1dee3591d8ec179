"""prune.yml keeps exactly what the retention says; in check mode it removes nothing.

prunetest's retention is {daily: 3, weekly: 2, monthly: 2} (conftest). Archives are made with
controlled timestamps (borg create --timestamp, UTC; times kept away from midnight so the
client's local time zone cannot move a day). Borg applies the rules in order, newest first,
one archive per period, and an archive already kept by an earlier rule does not count again.
"""
import pytest

ARCHIVES = {  # name suffix -> expected fate and why
    "2025-03-10T14:00:00": "kept: daily #1 (newest of 03-10)",
    "2025-03-10T10:00:00": "pruned: same day as a newer archive",
    "2025-03-09T12:00:00": "kept: daily #2",
    "2025-03-08T12:00:00": "kept: daily #3",
    "2025-03-05T12:00:00": "pruned: its ISO week 10 is already covered by 03-09",
    "2025-03-02T12:00:00": "kept: weekly #1 (week 9)",
    "2025-02-15T12:00:00": "kept: weekly #2 (week 7)",
    "2025-01-20T12:00:00": "kept: monthly #1 (March and February already covered)",
    "2024-12-24T12:00:00": "kept: monthly #2",
}
# Another prefix in the same repository: prune is limited to prunetest-* and must not touch it.
OTHER = "other-2024-01-01T12:00:00"


@pytest.fixture(scope="module")
def prune_repo(fleet, backup_run):
    repo = fleet.repo("client2", "prunetest")
    repo.delete_matching("prunetest-*")  # the archive backup.yml made today would blur the rules
    src = fleet.clients["client2"].dir / "data" / "README.txt"
    for ts in ARCHIVES:
        repo.create(f"prunetest-{ts}", src, timestamp=ts)
    repo.create(OTHER, src, timestamp="2024-01-01T12:00:00")
    assert len(repo.archive_names()) == len(ARCHIVES) + 1
    return repo


def test_prune_check_mode_removes_nothing(fleet, prune_repo):
    before = prune_repo.archive_names()
    result = fleet.play("prune.yml", check=True)
    assert result.rc == 0, result
    assert prune_repo.archive_names() == before


def test_prune_keeps_exactly_what_retention_says(fleet, prune_repo):
    untouched = {k: fleet.repo(*k).archive_names() for k in [("client1", "etc"), ("client2", "home")]}
    result = fleet.play("prune.yml")
    assert result.rc == 0, result
    expected = sorted([f"prunetest-{ts}" for ts, why in ARCHIVES.items() if why.startswith("kept")] + [OTHER])
    assert sorted(prune_repo.archive_names()) == expected
    # Backups without retention are never pruned.
    for key, names in untouched.items():
        assert fleet.repo(*key).archive_names() == names, key


def test_prune_again_changes_nothing(fleet, prune_repo):
    before = prune_repo.archive_names()
    result = fleet.play("prune.yml", extra_vars={"borgfleet_backup": "prunetest"})
    assert result.rc == 0, result
    assert prune_repo.archive_names() == before
    assert result.recap["client2"]["changed"] == 0, result.changed_tasks()
