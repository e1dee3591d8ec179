"""Bad input is refused cleanly: wrong passphrase, shell metacharacters, a server that is down."""
import re

import pytest

# Each is one playbook run: the brief's example, and command substitution with quotes and spaces.
METACHAR_NAMES = ["x;touch {marker}", "x' && $(touch '{marker}')"]


@pytest.fixture()
def marker(fleet, tmp_path):
    path = fleet.drop / f"pwned-{tmp_path.name}"
    yield path
    assert not path.exists(), "a shell ran text taken from user data"


def _state(repo):
    """What must not change: the archive list (names and ids) and the manifest's timestamp."""
    info = repo.info()
    return ([(a["name"], a["id"]) for a in repo.archives()], info["repository"]["last_modified"])


def test_wrong_passphrase_fails_clearly_and_leaves_repository_unchanged(fleet, backup_run):
    repo = fleet.repo("client1", "etc")
    before = _state(repo)
    wrong = "definitely not the passphrase"

    def mutate(clients):
        clients["client1"].backup("etc")["passphrase"] = wrong

    inv = fleet.variant("wrong-passphrase", mutate)
    result = fleet.play("backup.yml", inventory=inv, limit="client1", verbosity=2)
    assert result.rc != 0, result
    print(result.failures())
    assert re.search(r"wrong passphrase", result.failures(), re.I), result
    # The class of the failure reaches the role's report (the module's error_kind), not only its text.
    assert "error_kind: wrong_passphrase" in result.output, result
    # The host failed, and the run's stats (what the service records of a failed run) still say why.
    [entry] = result.stats["_run"]["borgfleet_backup"]
    assert entry["backup"] == "etc" and entry["failed"] and entry["error_kind"] == "wrong_passphrase", entry
    assert ("client1", "Stop if a backup failed") in result.failed(), result.failed()
    assert wrong not in result.output
    assert _state(repo) == before


@pytest.mark.parametrize("template", METACHAR_NAMES)
def test_backup_name_with_metacharacters_is_refused(fleet, backup_run, marker, template):
    bad = template.format(marker=marker)

    def mutate(clients):
        c1 = clients["client1"]
        c1.backups.append(dict(c1.backup("etc"), name=bad))

    inv = fleet.variant("bad-backup-name", mutate)
    result = fleet.play("backup.yml", inventory=inv, limit="client1")
    assert result.rc != 0, result
    print(result.failures())
    assert re.search(r"invalid|not allowed|must match|refus", result.failures(), re.I), result
    pool = fleet.server.dir / "pool"
    assert not [p for p in pool.rglob("*") if "touch" in p.name], "a repository was made for the bad name"


def test_setup_refuses_a_backup_name_with_metacharacters(fleet, setup_run, marker):
    bad = f"x;touch {marker}"

    def mutate(clients):
        c1 = clients["client1"]
        c1.backups.append(dict(c1.backup("etc"), name=bad))

    result = fleet.play("setup.yml", inventory=fleet.variant("bad-setup-name", mutate))
    assert result.rc != 0, result
    print(result.failures())
    assert re.search(r"invalid|not allowed|must match|refus", result.failures(), re.I), result
    assert not [p for p in (fleet.server.dir / "pool").rglob("*") if "touch" in p.name]


def test_backup_extra_var_with_metacharacters_is_refused(fleet, backup_run, marker):
    repo = fleet.repo("client1", "etc")
    before = repo.archive_names()
    result = fleet.play("backup.yml", limit="client1", extra_vars={"borgfleet_backup": f"etc;touch {marker}"})
    assert result.rc != 0, result
    print(result.failures())
    assert "etc;touch" in result.failures(), result  # the refusal names what it refused
    assert repo.archive_names() == before


@pytest.mark.parametrize("playbook", ["delete_archive.yml", "restore.yml"])
@pytest.mark.parametrize("template", ["etc-x;touch {marker}", "$(touch {marker})"])
def test_archive_name_with_metacharacters_is_handled(fleet, backup_run, marker, playbook, template):
    repo = fleet.repo("client1", "etc")
    before = _state(repo)
    target = fleet.clients["client1"].dir / "restore-bad"
    result = fleet.play(playbook, limit="client1", extra_vars={
        "borgfleet_backup": "etc", "borgfleet_archive": template.format(marker=marker),
        "borgfleet_restore_target": str(target)})
    assert result.rc != 0, result  # no such archive, or an invalid name: either way a failure
    print(result.failures())
    assert re.search(r"not found|does not exist|no archive|invalid|not allowed|refus", result.failures(), re.I), result
    assert _state(repo) == before
    assert not target.exists() or not any(target.iterdir())


def test_unreachable_backup_server_fails_with_a_clear_message(fleet, backup_run):
    repo_before = fleet.repo("client1", "etc").archive_names()
    fleet.server.sshd.stop()
    try:
        result = fleet.play("backup.yml", limit="client1", extra_vars={"borgfleet_backup": "etc"})
    finally:
        fleet.server.sshd.start()
    assert result.rc != 0, result
    print(result.failures())
    assert re.search(r"unreachable|connection refused|cannot connect|could not connect", result.failures(), re.I), result
    assert fleet.server.sshd.address in result.failures(), "the message should say which server"
    assert fleet.repo("client1", "etc").archive_names() == repo_before
