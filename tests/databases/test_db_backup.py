"""db_backup decides snapshot or dump itself: method auto on plain storage (the test tree's own
filesystem) streams a dump, read back with borg and loaded into a fresh MariaDB; on btrfs it
snapshots; check mode only plans; a forced snapshot on plain storage fails with the reason."""
import subprocess

from plugins.module_utils.borg import Borg, BorgSettings
from tests.databases.dbs import MOUNT_ROOT, MariaDB, our_mounts, stale_secret_dirs
from tests.lib.playbook import run_module
from tests.databases.test_snapshot import DB_PASSWORD


def plain_args(plain_mariadb, borg_args, **extra):
    args = dict(borg_args, name="shop", archive_name="shop-{now:%Y-%m-%dT%H:%M:%S.%f}", engine="mariadb",
                database="shop", login_unix_socket=str(plain_mariadb.socket), mount_root=MOUNT_ROOT)
    args.update(extra)
    return args


def test_auto_falls_back_to_a_dump_on_plain_storage(plain_mariadb, borg_args, tmp_path, test_root):
    plan = run_module(tmp_path, "db_backup", plain_args(plain_mariadb, borg_args), check=True)
    assert plan["method"] == "dump" and plan["changed"] is True, plan
    assert [s["kind"] for s in plan["storage"]] == ["plain"]
    assert "archive" not in plan and Borg(BorgSettings(**borg_args)).list_archives() == []

    result = run_module(tmp_path, "db_backup", plain_args(plain_mariadb, borg_args))
    assert result["method"] == "dump" and result["engine"] == "mariadb"
    datadir = str(plain_mariadb.datadir.resolve())
    assert result["method_reason"] == "auto: %s cannot be snapshotted (plain storage)" % datadir, result
    assert result["storage"] == [{"path": datadir, "kind": "plain", "snapshot_capable": False}]
    assert result["dump"]["file"] == "mariadb-shop.sql" and "freeze" not in result and "snapshot" not in result
    assert not our_mounts() and not stale_secret_dirs()

    # Read back: the archive holds the dump alone, and it restores the rows into a fresh server.
    borg = Borg(BorgSettings(**borg_args))
    [archive] = borg.list_archives()
    assert archive["name"] == result["archive"]["name"]
    target = tmp_path / "extracted"
    target.mkdir()
    files, _ = borg.extract(archive["name"], str(target))
    assert files == ["mariadb-shop.sql"]
    base = test_root / "fresh-from-db-backup"
    base.mkdir()
    fresh = MariaDB(base / "data", base / "run").install()
    try:
        fresh.start()
        fresh.sql("CREATE DATABASE shop")
        with open(target / "mariadb-shop.sql") as f:
            subprocess.run(fresh.client() + ["shop"], stdin=f, check=True)
        assert fresh.sql("SELECT id, name FROM shop.items ORDER BY id") == "1\tone\n2\ttwo\n"
    finally:
        fresh.stop()


def test_auto_snapshots_on_btrfs_and_a_forced_snapshot_refuses_plain_storage(
        mariadb, plain_mariadb, btrfs, borg_args, tmp_path):
    result = run_module(tmp_path, "db_backup", dict(
        borg_args, name="mariadb", archive_name="mariadb-{now:%Y-%m-%dT%H:%M:%S.%f}", engine="mariadb",
        login_unix_socket=str(mariadb.socket), login_user="backup", login_password=DB_PASSWORD,
        mount_root=MOUNT_ROOT))
    assert result["method"] == "snapshot" and result["method_reason"].startswith("auto: "), result
    assert result["freeze"]["method"] == "flush_tables_with_read_lock" and result["archive"]["stats"]["nfiles"] > 10
    assert result["snapshot"]["paths"] == [MOUNT_ROOT + "/mariadb" + str(btrfs.mnt / "mariadb")]
    assert "dump" not in result and result["cleaned"] == []

    refused = run_module(tmp_path, "db_backup", plain_args(plain_mariadb, borg_args, method="snapshot"),
                         expect_failure=True)
    assert refused["method"] == "snapshot" and "cannot be snapshotted" in refused["msg"], refused
    assert [a["name"] for a in Borg(BorgSettings(**borg_args)).list_archives()] == [result["archive"]["name"]]


def test_a_failure_keeps_the_method_and_the_error_kind(plain_mariadb, borg_args, tmp_path):
    failed = run_module(tmp_path, "db_backup", plain_args(plain_mariadb, dict(borg_args, passphrase="wrong-one")),
                        expect_failure=True)
    assert failed["error_kind"] == "wrong_passphrase" and failed["method"] == "dump", failed
    assert failed["engine"] == "mariadb"
