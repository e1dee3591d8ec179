"""playbooks/backup.yml with `databases:` in the inventory: method auto snapshots a datadir on
btrfs and falls back to a streamed dump on plain storage (ext4 here); nothing is left behind."""
import json

import pytest
import yaml

from plugins.module_utils.borg import Borg, BorgSettings
from tests.databases.dbs import MOUNT_ROOT, SECRET, our_mounts
from tests.databases.test_snapshot import DB_PASSWORD
from tests.lib.playbook import run_playbook


@pytest.mark.slow  # setup.yml + backup.yml over four repositories: ~1.5-2.5 min
def test_backup_playbook_snapshots_or_dumps(mariadb, postgres, plain_mariadb, btrfs, tmp_path):
    pool = tmp_path / "repos"
    inventory = {"all": {"children": {"clients": {"hosts": {"localhost": {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "borgfleet_backup_server": "local",
        "borgfleet_local_pool_path": str(pool),
        "borgfleet_borg_base_dir": str(tmp_path / "borgbase"),
        "borgfleet_snapshot_mount_root": MOUNT_ROOT,
        "borgfleet_backups": [
            {"name": "files", "paths": [str(tmp_path / "files")], "passphrase": SECRET},
            {"name": "maria", "passphrase": SECRET,
             "databases": [{"engine": "mariadb", "login_unix_socket": str(mariadb.socket),
                            "login_user": "backup", "login_password": DB_PASSWORD}]},
            {"name": "pg", "passphrase": SECRET,
             "databases": [{"engine": "postgresql", "method": "auto", "login_unix_socket": str(postgres.rundir),
                            "login_port": postgres.port}]},
            {"name": "shop", "passphrase": SECRET,
             "databases": [{"engine": "mariadb", "method": "auto", "database": "shop",
                            "login_unix_socket": str(plain_mariadb.socket)}]},
        ]}}}}}}
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("hello\n")
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(inventory))

    setup = run_playbook("setup.yml", inv)
    assert setup.rc == 0, setup
    run = run_playbook("backup.yml", inv)
    assert run.rc == 0, run
    assert SECRET not in run.output and DB_PASSWORD not in run.output
    report = {entry["backup"]: entry for entry in run.results("borgfleet backup result")["localhost"]["msg"]}
    assert set(report) == {"files", "maria", "pg", "shop"}
    assert not any(e["failed"] for e in report.values()), report
    assert report["maria"]["method"] == "snapshot" and report["pg"]["method"] == "snapshot"
    assert report["shop"]["method"] == "dump"
    # The module says why: auto chose by the storage of the data directory.
    assert report["maria"]["method_reason"].startswith("auto: ") and "btrfs" in report["maria"]["method_reason"]
    assert report["shop"]["method_reason"].startswith("auto: ") and "cannot be snapshotted (plain storage)" \
        in report["shop"]["method_reason"], report["shop"]
    assert report["shop"]["dump"]["file"] == "mariadb-shop.sql" and "freeze" not in report["shop"]
    assert {report[b]["engine"] for b in ("maria", "shop")} == {"mariadb"} and report["pg"]["engine"] == "postgresql"
    assert all(report[b]["client"] == "localhost" and report[b]["repository"] == str(pool / "localhost" / b)
               for b in ("maria", "pg", "shop"))
    assert 0 < report["maria"]["freeze"]["window"] < 5

    def contents(backup):
        borg = Borg(BorgSettings(repository=str(pool / "localhost" / backup), passphrase=SECRET,
                                 borg_base_dir=str(tmp_path / "borgbase")))
        [archive] = borg.list_archives()
        assert archive["name"].startswith(backup + "-")
        items, _ = borg.list_contents(archive["name"])
        return [i["path"] for i in items]

    assert any(p.endswith("/maria" + str(btrfs.mnt / "mariadb") + "/ibdata1") for p in contents("maria"))
    assert any(p.endswith("/postgres/data/PG_VERSION") for p in contents("pg"))
    assert contents("shop") == ["mariadb-shop.sql"]
    assert any(p.endswith("files/a.txt") for p in contents("files"))
    assert not our_mounts() and not btrfs.snapshots()
    json.dumps(report)  # the report is plain data the service can store
