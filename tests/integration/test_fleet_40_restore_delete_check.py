"""restore.yml, delete_archive.yml and check.yml against archives made by backup.yml."""
import re

from tests.lib.trees import EXCLUDED, compare_trees


def _new_archive(fleet, client, backup):
    repo = fleet.repo(client, backup)
    before = repo.archive_names()
    result = fleet.play("backup.yml", extra_vars={"borgfleet_backup": backup}, limit=client)
    assert result.rc == 0, result
    added = [n for n in repo.archive_names() if n not in before]
    assert len(added) == 1, added
    return added[0]


def test_restore_whole_archive_is_identical(fleet, backup_run):
    c1 = fleet.clients["client1"]
    archive = fleet.repo("client1", "etc").archive_names()[-1]
    target = c1.dir / "restore-all"
    result = fleet.play("restore.yml", limit="client1", extra_vars={
        "borgfleet_backup": "etc", "borgfleet_archive": archive, "borgfleet_restore_target": str(target)})
    assert result.rc == 0, result
    source = c1.dir / "data"
    assert compare_trees(source, target / str(source).lstrip("/"), ignore=EXCLUDED) == []


def test_restore_selected_paths_only(fleet, backup_run):
    c1 = fleet.clients["client1"]
    archive = fleet.repo("client1", "etc").archive_names()[-1]
    target = c1.dir / "restore-sub"
    sub = c1.dir / "data" / "sub"
    result = fleet.play("restore.yml", limit="client1", extra_vars={
        "borgfleet_backup": "etc", "borgfleet_archive": archive, "borgfleet_restore_target": str(target),
        "borgfleet_restore_paths": [str(sub).lstrip("/")]})
    assert result.rc == 0, result
    restored_data = target / str(c1.dir / "data").lstrip("/")
    assert sorted(p.name for p in restored_data.iterdir()) == ["sub"]
    assert compare_trees(sub, restored_data / "sub", ignore=["deep/also.tmp"]) == []


def test_delete_archive_removes_only_that_archive(fleet, backup_run):
    repo = fleet.repo("client1", "etc")
    doomed = _new_archive(fleet, "client1", "etc")
    others = [n for n in repo.archive_names() if n != doomed]
    assert others, "need another archive to prove only one is deleted"
    result = fleet.play("delete_archive.yml", limit="client1",
                        extra_vars={"borgfleet_backup": "etc", "borgfleet_archive": doomed})
    assert result.rc == 0, result
    assert repo.archive_names() == others


def test_check_passes_on_healthy_repositories(fleet, backup_run):
    result = fleet.play("check.yml")
    assert result.rc == 0, result
    assert result.recap["client1"]["failed"] == 0 and result.recap["client2"]["failed"] == 0, result


def test_check_fails_on_a_corrupted_repository(fleet, backup_run):
    # Flip one byte inside the largest data segment of client2's prunetest repository, then put
    # it back: borg's repository check verifies every entry's CRC, so check.yml must fail.
    repo_dir = fleet.server.dir / "pool" / "client2" / "prunetest"
    segment = max((p for p in (repo_dir / "data").rglob("*") if p.is_file() and p.name.isdigit()),
                  key=lambda p: p.stat().st_size)
    offset = segment.stat().st_size // 2
    with open(segment, "r+b") as f:
        f.seek(offset)
        original = f.read(1)
        f.seek(offset)
        f.write(bytes([original[0] ^ 0xFF]))
    try:
        result = fleet.play("check.yml", limit="client2")
    finally:
        with open(segment, "r+b") as f:
            f.seek(offset)
            f.write(original)
    assert result.rc != 0, result
    assert result.recap["client2"]["failed"] >= 1, result
    print(result.failures())
    assert re.search(r"prunetest.*(error|corrupt|damaged|fail)", result.failures(), re.I | re.S), result
    assert "client1" not in result.recap or result.recap["client1"]["failed"] == 0
    # Repaired by hand, the repository checks clean again.
    fleet.repo("client2", "prunetest").run("check", "--repository-only", fleet.repo("client2", "prunetest").url)
