"""Snapshot backups of live MariaDB and PostgreSQL on btrfs, under a write load, restored and
checked row by row; and every way a run can end leaves no snapshot and no mount behind."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from plugins.module_utils.borg import Borg, BorgSettings
from plugins.module_utils.snapshot import RunLock
from tests.databases.dbs import (MOUNT_ROOT, SECRET, MariaDB, Postgres, Writer, check_restored, our_mounts,
                                 stale_secret_dirs)
from tests.lib.playbook import run_module, start_module
DB_PASSWORD = 'Sql-Pass-"quoted"-#1'


def extract(borg_args, archive, path_in_archive, target):
    """borg extract the snapshot's data directory to `target` (through module_utils/borg.py)."""
    target.mkdir(parents=True)
    borg = Borg(BorgSettings(**borg_args))
    strip = len(Path(path_in_archive).parts) - 1
    borg.extract(archive, str(target), paths=[path_in_archive], strip_components=strip)
    return target


def mariadb_args(mariadb, borg_args, **extra):
    args = dict(borg_args, name="mariadb", archive_name="mariadb-{now:%Y-%m-%dT%H:%M:%S.%f}", engine="mariadb",
                login_unix_socket=str(mariadb.socket), login_user="backup", login_password=DB_PASSWORD,
                mount_root=MOUNT_ROOT)
    args.update(extra)
    return args


def timed_insert(mariadb, i):
    started = time.monotonic()
    mariadb.sql("INSERT INTO app.load VALUES (%d, 'after')" % (10 ** 8 + i))
    return time.monotonic() - started


def test_mariadb_snapshot_under_write_load(mariadb, btrfs, borg_args, tmp_path, test_root):
    mariadb.sql("TRUNCATE app.load")
    writer = Writer(mariadb, "app.load")
    writer.start()
    time.sleep(1.5)
    result = run_module(tmp_path, "snapshot", mariadb_args(mariadb, borg_args))
    time.sleep(1)
    writer.halt()
    assert writer.error is None, writer.error

    freeze = result["freeze"]
    assert freeze["method"] == "flush_tables_with_read_lock"
    assert 0 < freeze["window"] < 5, freeze
    assert freeze["requested_at"] <= freeze["acquired_at"] <= result["snapshot"]["finished_at"] \
        <= freeze["released_at"]
    # Writers went on after the freeze: the lock was really released.
    assert any(t > freeze["released_at"] for t in writer.committed_at.values())
    assert result["archive"]["stats"]["nfiles"] > 10
    [path] = result["snapshot"]["paths"]
    assert path == MOUNT_ROOT + "/mariadb" + str(btrfs.mnt / "mariadb")

    datadir = extract(borg_args, result["archive"]["name"], path, test_root / "restored-mariadb")
    shutil.chown(datadir, "mysql", "mysql")
    subprocess.run(["chown", "-R", "mysql:mysql", str(datadir)], check=True)
    restored = MariaDB(datadir, test_root / "restored-mariadb-run").start()
    try:
        rows = dict(line.split("\t") for line in restored.sql("SELECT id, payload FROM app.load").splitlines())
        rows = {int(k): v for k, v in rows.items()}
        committed, present = check_restored(rows, writer, freeze["acquired_at"], freeze["released_at"])
        assert committed > 20, "the write load was too thin to prove anything: %d rows" % committed
        assert restored.sql("SELECT COUNT(*), SUM(CRC32(payload)) FROM app.bulk").split() == \
            mariadb.sql("SELECT COUNT(*), SUM(CRC32(payload)) FROM app.bulk").split()
        assert "aria rows" in restored.sql("SELECT note FROM app.notes WHERE id = 1")
        print("mariadb: %d rows committed before the lock, %d restored, freeze window %.3f s"
              % (committed, present, freeze["window"]))
    finally:
        restored.stop()


@pytest.mark.parametrize("mode", ["checkpoint", "backup"])
def test_postgres_snapshot_under_write_load(postgres, btrfs, borg_args, tmp_path, test_root, mode):
    postgres.sql("TRUNCATE load")
    writer = Writer(postgres, "load")
    writer.start()
    time.sleep(1.5)
    result = run_module(tmp_path, "snapshot", dict(
        borg_args, name="postgres", archive_name="pg-{now:%Y-%m-%dT%H:%M:%S.%f}", engine="postgresql",
        login_unix_socket=str(postgres.rundir), login_port=postgres.port, postgresql_mode=mode,
        mount_root=MOUNT_ROOT))
    time.sleep(1)
    writer.halt()
    assert writer.error is None, writer.error
    freeze, snap = result["freeze"], result["snapshot"]
    assert freeze["method"] == {"checkpoint": "checkpoint", "backup": "backup_start_stop"}[mode]
    [path] = snap["paths"]
    assert path.endswith("/postgres/data")

    datadir = extract(borg_args, result["archive"]["name"], path, test_root / ("restored-pg-" + mode))
    assert (datadir / "backup_label").exists() == (mode == "backup")
    subprocess.run(["chown", "-R", "postgres:postgres", str(datadir)], check=True)
    datadir.chmod(0o700)
    restored = Postgres(datadir, test_root / ("restored-pg-run-" + mode)).start()
    try:
        rows = {int(k): v for k, v in (line.split("|") for line in
                                       restored.sql("SELECT id, payload FROM load").splitlines())}
        # backup mode replays the WAL copied after pg_backup_stop: consistent as of the stop.
        upper = snap["finished_at"] if mode == "checkpoint" else freeze["released_at"]
        committed, present = check_restored(rows, writer, freeze["acquired_at"], upper)
        assert committed > 20, "the write load was too thin to prove anything: %d rows" % committed
        assert restored.sql("SELECT count(*), sum(hashtext(payload)) FROM bulk") == \
            postgres.sql("SELECT count(*), sum(hashtext(payload)) FROM bulk")
        print("postgres %s: %d rows committed before the snapshot, %d restored" % (mode, committed, present))
    finally:
        restored.stop()


def test_borg_failure_releases_lock_and_removes_snapshot(mariadb, btrfs, borg_args, tmp_path):
    args = mariadb_args(mariadb, dict(borg_args, passphrase="not-the-passphrase"))
    result = run_module(tmp_path, "snapshot", args, expect_failure=True)
    assert result["error_kind"] == "wrong_passphrase", result
    assert timed_insert(mariadb, 100) < 2  # the read lock is gone
    # no mount and no snapshot: checked by the autouse fixture for every test


def test_killed_run_leaves_leftovers_that_cleanup_removes(mariadb, btrfs, repo, borg_args, tmp_path):
    # Hold the repository lock so the run is certainly inside `borg create` when it is killed.
    env = dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=borg_args["borg_base_dir"])
    holder = subprocess.Popen(["borg", "with-lock", str(repo), "sleep", "120"], env=env)
    run = start_module(tmp_path, "snapshot", mariadb_args(mariadb, borg_args))
    try:
        deadline = time.monotonic() + 90
        while not our_mounts() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert our_mounts(), run.stdout.read().decode() if run.poll() is not None else "no mount appeared"
        time.sleep(0.5)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    finally:
        holder.terminate()
        holder.wait()
    assert our_mounts() and btrfs.snapshots(), "the kill came too late to leave anything"
    assert timed_insert(mariadb, 101) < 2  # the killed session took its lock with it

    # The next backup finds the leftovers, removes them, and backs up as usual.
    next_run = run_module(tmp_path, "snapshot", mariadb_args(mariadb, borg_args))
    assert {c["snapshot"] for c in next_run["cleaned"]} == {v["snapshot"] for v in next_run["snapshot"]["volumes"]}
    assert next_run["archive"]["stats"]["nfiles"] > 10
    assert not our_mounts() and not btrfs.snapshots()
    again = run_module(tmp_path, "snapshot", dict(name="mariadb", engine="mariadb", state="absent",
                                                  repository=borg_args["repository"], mount_root=MOUNT_ROOT,
                                                  login_unix_socket=str(mariadb.socket)), secrets=[SECRET])
    assert not again["changed"], again
    # The killed run's credential file is swept too.
    assert not stale_secret_dirs()


def test_freeze_gives_up_behind_a_long_query(mariadb, btrfs, borg_args, tmp_path):
    """FTWRL waiting behind another session's table lock blocks every writer: we give up in time."""
    blocker = mariadb.session()
    blocker.send("LOCK TABLES app.notes WRITE;\nSELECT 'locked';\n")
    assert blocker.read_until("locked", 10) is not None
    try:
        started = time.monotonic()
        result = run_module(tmp_path, "snapshot", mariadb_args(mariadb, borg_args, freeze_timeout=2),
                            expect_failure=True)
        assert time.monotonic() - started < 20
        assert "lock" in result["msg"].lower(), result["msg"]
        assert timed_insert(mariadb, 102) < 2  # writers are not blocked any more
    finally:
        blocker.proc.kill()
        blocker.close()


def test_check_mode_reports_whether_a_snapshot_is_possible(mariadb, plain_mariadb, btrfs, borg_args, tmp_path):
    on_btrfs = run_module(tmp_path, "snapshot", mariadb_args(mariadb, borg_args), check=True)
    assert on_btrfs["snapshot_capable"] is True
    assert [s["kind"] for s in on_btrfs["storage"]] == ["btrfs"]
    assert not our_mounts() and not btrfs.snapshots()  # a plan only
    plain = dict(borg_args, name="plain", archive_name="plain-{now}", engine="mariadb",
                 login_unix_socket=str(plain_mariadb.socket), mount_root=MOUNT_ROOT)
    on_ext4 = run_module(tmp_path, "snapshot", plain, check=True)
    assert on_ext4["snapshot_capable"] is False
    assert [s["kind"] for s in on_ext4["storage"]] == ["plain"]
    # For real, plain storage is refused with the reason, before anything is frozen.
    refused = run_module(tmp_path, "snapshot", plain, expect_failure=True)
    assert "cannot be snapshotted" in refused["msg"] and "dump" in refused["msg"], refused["msg"]
    assert Borg(BorgSettings(**borg_args)).list_archives() == []


def test_a_second_run_of_the_same_backup_is_refused(mariadb, btrfs, borg_args, tmp_path):
    """It would otherwise take the running one's snapshot for a leftover and remove it."""
    with RunLock("mariadb", MOUNT_ROOT):
        refused = run_module(tmp_path, "snapshot", mariadb_args(mariadb, borg_args), expect_failure=True)
    assert "in progress" in refused["msg"], refused["msg"]
    assert Borg(BorgSettings(**borg_args)).list_archives() == []
