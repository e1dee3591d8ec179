"""backup.yml: one archive per backup, excluded files absent, content identical when read back."""
import re

from tests.lib.argwatch import ArgvWatcher

from tests.lib.trees import EXCLUDED, compare_trees

ARCHIVE_NAME = re.compile(r"^(?P<backup>[A-Za-z0-9._-]+)-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")


def test_backup_creates_one_archive_per_backup(fleet, backup_run):
    for client, backup in [("client1", "etc"), ("client2", "home"), ("client2", "prunetest")]:
        names = fleet.repo(client, backup).archive_names()
        assert len(names) == 1, (client, backup, names)
        m = ARCHIVE_NAME.match(names[0])
        assert m and m.group("backup") == backup, names



def test_run_stats_hold_the_report_the_service_reads(fleet, backup_run):
    """set_stats key borgfleet_backup (what the service records) = the result task's report, every host's
    entries aggregated, with the archive's figures and without the report's warnings."""
    reported = [e for res in backup_run.results("borgfleet backup result").values() for e in res["msg"]]
    stats = backup_run.stats["_run"]["borgfleet_backup"]
    assert sorted((e["client"], e["backup"]) for e in stats) == \
        [("client1", "etc"), ("client2", "home"), ("client2", "prunetest")], stats
    assert sorted(stats, key=lambda e: (e["client"], e["backup"])) == sorted(
        ({k: v for k, v in e.items() if k != "warnings_from_borg"} for e in reported),
        key=lambda e: (e["client"], e["backup"]))
    for e in stats:
        assert not e["failed"] and e["changed"] and set(e) == {
            "backup", "client", "repository", "failed", "skipped", "changed", "archive"}, e
        assert ARCHIVE_NAME.match(e["archive"]["name"]) and e["archive"]["stats"]["nfiles"] > 0, e

def test_archive_holds_the_tree_without_excluded_files(fleet, backup_run):
    c1 = fleet.clients["client1"]
    repo = fleet.repo("client1", "etc")
    archive = repo.archive_names()[-1]
    paths = repo.paths(archive)
    data = str(c1.dir / "data").lstrip("/")
    for rel in ["README.txt", "bin/random.dat", "sub/deep/nested.txt", "name with spaces & ünïcode.txt",
                "link-to-readme", "empty", "mode600.conf"]:
        assert f"{data}/{rel}" in paths, rel
    for rel in EXCLUDED:
        assert f"{data}/{rel}" not in paths, f"excluded {rel} is in the archive"


def test_archive_content_is_identical_to_the_source(fleet, backup_run, tmp_path):
    c2 = fleet.clients["client2"]
    repo = fleet.repo("client2", "home")
    out = repo.extract(repo.archive_names()[-1], tmp_path / "x")
    source = c2.dir / "data"
    assert compare_trees(source, out / str(source).lstrip("/"), ignore=EXCLUDED) == []


def test_backup_limited_to_one_backup(fleet, backup_run):
    # Fleet-wide run of one backup: client2's home only; client2's prunetest and client1
    # (which has no backup of that name) are left alone, and that is not an error.
    keys = [("client1", "etc"), ("client2", "home"), ("client2", "prunetest")]
    before = {k: fleet.repo(*k).archive_names() for k in keys}
    result = fleet.play("backup.yml", extra_vars={"borgfleet_backup": "home"})
    assert result.rc == 0, result
    after = {k: fleet.repo(*k).archive_names() for k in keys}
    assert after[("client1", "etc")] == before[("client1", "etc")]
    assert after[("client2", "prunetest")] == before[("client2", "prunetest")]
    added = [n for n in after[("client2", "home")] if n not in before[("client2", "home")]]
    assert len(added) == 1 and added[0].startswith("home-"), after


def test_passphrase_never_in_output_or_any_command_line(fleet, backup_run):
    secrets = [b["passphrase"] for c in fleet.clients.values() for b in c.backups]
    random_parts = [s.split()[1] for s in secrets]  # however the passphrase were quoted
    # The control: borg create's command line names the repository it writes to.
    watcher = ArgvWatcher(random_parts, control=fleet.repo("client1", "etc").url)
    watcher.start()
    try:
        result = fleet.play("backup.yml", limit="client1", extra_vars={"borgfleet_backup": "etc"}, verbosity=3)
    finally:
        watcher.stop.set()
        watcher.join()
    assert result.rc == 0, result
    for secret, part in zip(secrets, random_parts):
        assert secret not in result.output and part not in result.output
    assert watcher.scans > 10, "the watcher did not get to look"
    assert watcher.control_seen, "the watcher never saw borg's command line: it could not have seen a secret"
    assert watcher.seen == [], watcher.seen
