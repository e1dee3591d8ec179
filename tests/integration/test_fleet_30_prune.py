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


@pytest.fixture(scope="module")
def prune_runs(fleet, prune_repo):
    """check mode, then real, then again; with the archive lists around each run."""
    keys = [("client1", "etc"), ("client2", "home")]
    runs = {"before": prune_repo.archive_names(),
            "others_before": {k: fleet.repo(*k).archive_names() for k in keys}}
    runs["check"] = fleet.play("prune.yml", check=True)
    runs["after_check"] = prune_repo.archive_names()
    runs["real"] = fleet.play("prune.yml")
    runs["after_real"] = prune_repo.archive_names()
    runs["others_after"] = {k: fleet.repo(*k).archive_names() for k in keys}
    runs["again"] = fleet.play("prune.yml", limit="client2", extra_vars={"borgfleet_backup": "prunetest"})
    runs["after_again"] = prune_repo.archive_names()
    return runs


def test_prune_check_mode_removes_nothing(prune_runs):
    assert prune_runs["check"].rc == 0, prune_runs["check"]
    assert prune_runs["after_check"] == prune_runs["before"]


def test_prune_keeps_exactly_what_retention_says(prune_runs):
    assert prune_runs["real"].rc == 0, prune_runs["real"]
    expected = sorted([f"prunetest-{ts}" for ts, why in ARCHIVES.items() if why.startswith("kept")] + [OTHER])
    assert sorted(prune_runs["after_real"]) == expected


def test_backups_without_retention_are_never_pruned(prune_runs):
    assert prune_runs["others_after"] == prune_runs["others_before"]


def test_prune_again_changes_nothing(prune_runs):
    again = prune_runs["again"]
    assert again.rc == 0, again
    assert prune_runs["after_again"] == prune_runs["after_real"]
    assert again.recap["client2"]["changed"] == 0, again.changed_tasks()
