"""roles/prune with `borgfleet_retention`: a retention given for one run of one backup (what the
service previews before saving it) replaces the backup's own; --check is a real dry run. Without
borgfleet_backup, or invalid, it is refused with the contract's message. A client with local
repositories (connection local), archives made by borg directly with controlled timestamps."""
import os
import sys

import pytest
import yaml

from tests.lib.borgrepo import BorgRepo
from tests.lib.playbook import run_playbook

PASS = "run-retention-pass"
STAMPS = ["2025-03-10T14:00:00", "2025-03-10T10:00:00", "2025-03-09T12:00:00", "2025-03-02T12:00:00"]


def _inventory(tmp_path):
    pool, base = tmp_path / "repos", tmp_path / "base"
    host = {"ansible_connection": "local", "ansible_python_interpreter": os.environ.get("PYTHON", "/usr/bin/python3"),
            "borgfleet_backup_server": "local", "borgfleet_local_pool_path": str(pool),
            "borgfleet_borg_base_dir": str(base),
            "borgfleet_backups": [{"name": "data", "paths": [str(tmp_path)], "passphrase": PASS,
                                   "retention": {"daily": 7}}]}
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"clients": {"hosts": {"rr1": host}}}}}))
    repo = BorgRepo(str(pool / "rr1" / "data"), PASS, base_dir=base)
    (pool / "rr1").mkdir(parents=True)
    repo.run("init", "--encryption", "repokey-blake2", repo.url)
    (tmp_path / "f").write_text("x")
    for ts in STAMPS:
        repo.create(f"data-{ts}", tmp_path / "f", timestamp=ts)
    return inv, repo


def _stats(run):
    """The prune entries of the run's result task, as the recording callback got them."""
    return run.results("borgfleet prune result")["rr1"]["msg"]


def test_run_retention_is_the_contracts_rule_as_a_filter():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "collections"))
    from ansible.errors import AnsibleFilterError
    from ansible_collections.borgfleet.backup.plugins.filter.backups import FilterModule
    rule = FilterModule().filters()["run_retention"]
    assert rule(None, "", "web1") is None and rule("", "data", "web1") is None
    assert rule({"daily": "7", "within": "2d", "yearly": 0}, "data", "web1") == {"daily": 7, "within": "2d"}
    with pytest.raises(AnsibleFilterError, match="borgfleet_retention applies to one backup: set borgfleet_backup"):
        rule({"daily": 7}, "", "web1")
    with pytest.raises(AnsibleFilterError, match="retention keeps nothing"):
        rule({"daily": 0}, "data", "web1")


def _said(run):
    """The failed tasks' text with YAML's line wrapping undone."""
    return " ".join(run.failures().split())


def test_a_retention_for_one_run_replaces_the_backups_own(tmp_path):
    inv, repo = _inventory(tmp_path)
    before = repo.archive_names()
    run = run_playbook("prune.yml", inv, check=True,
                       extra_vars={"borgfleet_backup": "data", "borgfleet_retention": {"daily": 1}})
    assert run.rc == 0, run
    entry = _stats(run)[0]
    assert [a["name"] for a in entry["kept"]] == ["data-2025-03-10T14:00:00"]
    assert entry["kept"][0]["rule"] == "daily #1"
    assert sorted(a["name"] for a in entry["pruned"]) == sorted(f"data-{ts}" for ts in STAMPS[1:])
    assert repo.archive_names() == before                      # check mode: nothing pruned
    # Its own retention (daily 7) keeps one a day.
    run = run_playbook("prune.yml", inv, check=True, extra_vars={"borgfleet_backup": "data"})
    assert run.rc == 0, run
    assert [a["name"] for a in _stats(run)[0]["pruned"]] == ["data-2025-03-10T10:00:00"]


def test_a_retention_for_one_run_needs_its_backup_and_is_checked(tmp_path):
    inv, repo = _inventory(tmp_path)
    before = repo.archive_names()
    run = run_playbook("prune.yml", inv, extra_vars={"borgfleet_retention": {"daily": 1}})
    assert run.rc != 0 and "borgfleet_retention applies to one backup: set borgfleet_backup too" in _said(run), run
    run = run_playbook("prune.yml", inv, extra_vars={"borgfleet_backup": "data", "borgfleet_retention": {"within": "30S"}})
    assert run.rc != 0 and "retention.within must look like 2d, 12H, 1w, 6m or 1y" in _said(run), run
    assert repo.archive_names() == before
