"""collect_stats / detect_capabilities / analyze_pools run as an operator runs them, their result
tasks compared with what this machine and borg itself report."""
import json
import os
import re
import subprocess

import pytest
import yaml

from tests.lib.playbook import run_playbook

PASSPHRASE = "pools pw $HOME;'\"|& 7"


def sh(*argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120, env=env).stdout


def test_collect_stats_result_task(localhost_inventory):
    run = run_playbook("collect_stats.yml", localhost_inventory)
    assert run.rc == 0, run
    stats = run.results("borgfleet stats result")["localhost"]["msg"]
    mem_total = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    assert stats["memory"]["total_bytes"] == mem_total
    assert stats["kernel"] == os.uname().release
    assert any(f["mountpoint"] == "/" for f in stats["filesystems"])


def test_detect_capabilities_from_the_command_line_in_check_mode():
    # As the brief's operator runs it: -i localhost, with the local connection (-c local is
    # -e ansible_connection=local); --check changes nothing and reads the same.
    run = run_playbook("detect_capabilities.yml", "localhost,", check=True, extra_vars={
        "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}, timeout=300)
    assert run.rc == 0, run
    assert "TASK [borgfleet.backup.stats : borgfleet capabilities result]" in run.output
    assert run.recap["localhost"]["changed"] == 0 and re.search(r"changed=0\s", run.output)
    server_version = sh("mariadb", "-NBe", "SELECT VERSION()").strip()
    assert f"server_version: {server_version}" in run.output
    caps = run.stats["_run"]["borgfleet_capabilities"]["localhost"]        # what the service stores
    assert caps == run.results("borgfleet capabilities result")["localhost"]["msg"]
    assert caps["mysql"]["server_version"] == server_version


def borg_env(base):
    return dict(os.environ, BORG_PASSPHRASE=PASSPHRASE, BORG_BASE_DIR=str(base))


@pytest.fixture(scope="module")
def local_pool(tmp_path_factory):
    """A client with two backups in its local pool (made with borg directly) and an orphan repository.

    Shared by the tests below, which only read it (each writes its own inventory variant)."""
    tmp_path = tmp_path_factory.mktemp("pool")
    pool, base, data = tmp_path / "repos", tmp_path / "borg-base", tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(1024 * 1024))
    (data / "b.txt").write_text("same text\n" * 20000)
    env = borg_env(base)
    data_repo, etc_repo = pool / "localhost" / "data", pool / "localhost" / "etc"
    for repo in (data_repo, etc_repo):
        sh("borg", "init", "--make-parent-dirs", "-e", "repokey-blake2", str(repo), env=env)
    sh("borg", "create", f"{data_repo}::data-2026-01-01T00:00:00", str(data), env=env)
    sh("borg", "create", f"{data_repo}::manual-keep", str(data), env=env)  # not data-*: not this backup's
    sh("borg", "create", f"{data_repo}::data-2026-01-02T00:00:00", str(data), env=env)
    sh("borg", "create", f"{etc_repo}::etc-2026-01-01T00:00:00", "/etc/hostname", env=env)
    orphan = pool / "gone-client" / "old"
    sh("borg", "init", "--make-parent-dirs", "-e", "none", str(orphan), env=env)
    inventory = {"all": {"children": {"clients": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
        "borgfleet_backup_server": "local", "borgfleet_local_pool_path": str(pool),
        "borgfleet_borg_base_dir": str(base),
        "borgfleet_backups": [{"name": "data", "paths": [str(data)], "passphrase": PASSPHRASE},
                              {"name": "etc", "paths": ["/etc/hostname"], "passphrase": PASSPHRASE}],
    }}}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return {"pool": pool, "base": base, "inventory": path, "data_repo": data_repo, "etc_repo": etc_repo,
            "orphan": orphan, "hosts": inventory}


def test_analyze_pools_reads_what_borg_and_du_say(local_pool):
    run = run_playbook("analyze_pools.yml", local_pool["inventory"])
    assert run.rc == 0, run
    assert PASSPHRASE not in run.output and PASSPHRASE not in json.dumps(run.events)
    result = run.results("borgfleet pools result")["localhost"]["msg"]
    assert result["warn_percent"] == 80 and result["alerts"] == []
    assert run.stats["_run"]["borgfleet_pools"] == {"localhost": result}   # what the service reads
    (pool,) = result["pools"]
    st = os.statvfs(local_pool["pool"])
    assert pool["name"] == "local" and pool["path"] == str(local_pool["pool"])
    assert pool["total_bytes"] == st.f_blocks * st.f_frsize
    assert pool["warn"] is (pool["used_percent"] >= 80)
    repos = {r["path"]: r for r in pool["repositories"]}
    assert set(repos) == {str(local_pool["data_repo"]), str(local_pool["etc_repo"]), str(local_pool["orphan"])}

    env = borg_env(local_pool["base"])
    data = repos[str(local_pool["data_repo"])]
    assert data["client"] == "localhost" and data["backup"] == "data"
    assert data["size_on_disk_bytes"] == int(sh("du", "-s", "-x", "-B1", str(local_pool["data_repo"])).split()[0])
    info = json.loads(sh("borg", "info", "--json", str(local_pool["data_repo"]), env=env))["cache"]["stats"]
    assert data["borg"]["stats"]["original_size"] == info["total_size"]
    assert data["borg"]["stats"]["deduplicated_size"] == info["unique_csize"]
    # Three identical archives: stored once.
    assert data["borg"]["stats"]["deduplicated_size"] * 2 < data["borg"]["stats"]["original_size"]
    archives = json.loads(sh("borg", "list", "--json", str(local_pool["data_repo"]), env=env))["archives"]
    assert data["borg"]["archive_count"] == len(archives) == 3
    assert data["borg"]["backup_archive_count"] == 2
    assert data["borg"]["last_archive"]["name"] == "data-2026-01-02T00:00:00"
    assert data["borg"]["last_archive"]["time"] == archives[-1]["start"]
    assert repos[str(local_pool["etc_repo"])]["borg"]["archive_count"] == 1
    orphan = repos[str(local_pool["orphan"])]
    assert orphan["borg"] is None and orphan["client"] == "gone-client" and orphan["size_on_disk_bytes"] > 0
    assert pool["repositories_size_bytes"] == sum(r["size_on_disk_bytes"] for r in repos.values())


def test_analyze_pools_warns_and_reports_unreadable_repositories(local_pool, tmp_path):
    hosts = local_pool["hosts"]
    client = hosts["all"]["children"]["clients"]["hosts"]["localhost"]
    client["borgfleet_backups"][1]["passphrase"] = "not the passphrase"
    path = tmp_path / "hosts-wrong.yml"
    path.write_text(yaml.safe_dump(hosts))
    run = run_playbook("analyze_pools.yml", path, extra_vars={"borgfleet_pool_warn_percent": 1},
                       check=True)
    # The pool is still reported; the client then fails for the repository it could not read.
    assert run.rc != 0
    assert ("localhost", "Stop if a repository could not be read") in run.failed()
    result = run.results("borgfleet pools result")["localhost"]["msg"]
    (pool,) = result["pools"]
    assert pool["warn"] is True and result["warn_percent"] == 1
    assert any(a.startswith("pool local (") and "full (threshold 1%)" in a for a in result["alerts"])
    etc = next(r for r in pool["repositories"] if r["backup"] == "etc")
    assert etc["borg"] is None and "wrong passphrase" in etc["borg_error"]
    assert next(r for r in pool["repositories"] if r["backup"] == "data")["borg"]["archive_count"] == 3
    assert PASSPHRASE not in run.output and "not the passphrase" not in run.output
