"""LVM snapshot backups in the lab VM: MariaDB and PostgreSQL with their datadirs on logical
volumes, under a write load, backed up by the collection's real playbooks over SSH (the VM is a
client with `borgfleet_backup_server: local`), restored with restore.yml, started on the
restored datadirs and checked row by row; no snapshot LV and no snapshot mount is left."""
import json
import shlex
import time
from pathlib import Path

import pytest
import yaml

from tests.databases.dbs import check_restored
from tests.lib.playbook import run_module, run_playbook

pytestmark = pytest.mark.lab

SECRET = "Lab-Passphrase-7"
VG = "labvg"
# LV name -> where the engine keeps its data (Debian's defaults; the LV is mounted right there).
VOLUMES = {"mysql": "/var/lib/mysql", "postgresql": "/var/lib/postgresql"}
DATADIRS = {"mariadb": "/var/lib/mysql", "postgresql": "/var/lib/postgresql/15/main"}
WRITER = "/root/vm_writer.py"
MOUNT_ROOT = "/run/borgfleet/snapshots"
BULK_ROWS = 20000
# The engine's lock must come within this (the module aborts otherwise). The default, 10 s, is
# for real hardware: FLUSH TABLES WITH READ LOCK took 5.6 s in this emulated VM on a loaded host.
FREEZE_TIMEOUT = 60
# The lock is released this soon after the snapshot is taken (the UNLOCK round trip), long before
# the snapshot is mounted and borg reads it.
RELEASE_AFTER_SNAPSHOT = 20


@pytest.fixture(scope="module")
def lvm_databases(lab_vm):
    """LVM on the VM's second disk, one LV per engine mounted as its datadir, engines started
    on them, a `bulk` table of known content and an empty `load` table in database `app`."""
    vm = lab_vm
    vm.run(["pvcreate", "-q", "/dev/vdb"])
    vm.run(["vgcreate", "-q", VG, "/dev/vdb"])
    for lv, datadir in VOLUMES.items():
        device = "/dev/%s/%s" % (VG, lv)
        vm.run(["lvcreate", "-q", "-y", "-L", "512M", "-n", lv, VG])
        vm.run(["mkfs.ext4", "-q", device])
        vm.run(["mount", device, "/mnt"])
        vm.run(["cp", "-a", datadir + "/.", "/mnt/"])
        vm.run(["umount", "/mnt"])
        vm.run(["mount", device, datadir])
    vm.run(["systemctl", "start", "mariadb.service", "postgresql@15-main.service"], timeout=600)
    vm.run(["mariadb", "--execute",
            "CREATE DATABASE app;"
            " CREATE TABLE app.load (id INT PRIMARY KEY, payload VARCHAR(64)) ENGINE=InnoDB;"
            " CREATE TABLE app.bulk (id INT PRIMARY KEY, payload VARCHAR(64)) ENGINE=InnoDB;"
            " INSERT INTO app.bulk SELECT seq, CONCAT('bulk-', seq) FROM app.seq_1_to_%d;" % BULK_ROWS])
    psql = ["runuser", "-u", "postgres", "--", "psql", "--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=1"]
    vm.run(psql + ["-c", "CREATE DATABASE app"])
    vm.run(psql + ["-d", "app", "-c", "CREATE TABLE load (id int PRIMARY KEY, payload text);"
                   " CREATE TABLE bulk AS SELECT g AS id, 'bulk-' || g AS payload"
                   " FROM generate_series(1, %d) g;" % BULK_ROWS])
    vm.put(WRITER, (Path(__file__).parent / "vm_writer.py").read_text(), mode="0755")
    return vm


class Load:
    """The VM-side writer's log, as the dicts tests/databases/dbs.py:check_restored() reads."""

    def __init__(self, vm, engine):
        self.vm, self.engine = vm, engine
        self.log, self.stop_file = "/root/load-%s.log" % engine, "/root/load-%s.stop" % engine
        self.started_at, self.committed_at = {}, {}

    def start(self):
        self.vm.run(["rm", "-f", self.log, self.stop_file])
        self.vm.shell(shlex.join(["setsid", WRITER, self.engine, self.log, self.stop_file])
                      + " </dev/null >/dev/null 2>&1 &")
        return self

    def lines(self):
        return self.vm.run(["cat", self.log], check=False).stdout.splitlines()

    def wait_rows(self, n, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.lines()) >= n:
                return
            time.sleep(1)
        raise AssertionError("%s writer: fewer than %d rows in %d s: %s" % (self.engine, n, timeout, self.lines()[-3:]))

    def halt(self, timeout=60):
        self.vm.run(["touch", self.stop_file])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.lines()
            if lines and not lines[-1][0].isdigit():
                assert lines[-1] == "done", "%s writer: %s" % (self.engine, lines[-1])
                for line in lines[:-1]:
                    i, sent, committed = line.split()
                    self.started_at[int(i)] = float(sent)
                    self.committed_at[int(i)] = float(committed)
                return self
            time.sleep(1)
        raise AssertionError("%s writer did not stop" % self.engine)


def leftovers(vm):
    """Snapshot LVs (attr 's') and mounts under the snapshot mount root, in the VM."""
    lvs = json.loads(vm.run(["lvs", "--reportformat", "json", "-o", "lv_name,lv_attr", VG]).stdout)
    snapshots = [lv["lv_name"] for lv in lvs["report"][0]["lv"] if lv["lv_attr"].startswith("s")
                 or lv["lv_name"].startswith("borgfleet-")]
    mounts = [m for m in vm.run(["findmnt", "-rn", "-o", "TARGET"]).stdout.split() if m.startswith(MOUNT_ROOT)]
    return snapshots, mounts


def restore(vm, inventory, backup, archive, path_in_archive, target, control_dir):
    """restore.yml: the snapshot's datadir out of the archive, to `target` in the VM."""
    rel = path_in_archive.lstrip("/")
    run = run_playbook("restore.yml", inventory, extra_vars={
        "borgfleet_backup": backup, "borgfleet_archive": archive, "borgfleet_restore_target": target,
        "borgfleet_restore_paths": [rel], "borgfleet_restore_strip_components": len(Path(rel).parts) - 1},
        control_dir=control_dir, timeout=900)
    assert run.rc == 0, run
    vm.run(["chmod", "755", target])  # the engine's user must reach the datadir inside
    return target + "/" + Path(rel).name


def mariadb_rows(vm, datadir):
    """Start mariadbd on the restored datadir (own socket, no network), read it, stop it."""
    rundir = "/run/lab-restore-mysqld"  # socket and pid file: written by the mysql user
    sock = rundir + "/mysqld.sock"
    vm.run(["install", "-d", "-o", "mysql", "-g", "mysql", rundir])
    vm.run(["chown", "-R", "mysql:mysql", datadir])
    vm.shell(shlex.join(["setsid", "mariadbd", "--no-defaults", "--user=mysql", "--datadir=" + datadir,
                         "--socket=" + sock, "--skip-networking", "--pid-file=" + rundir + "/mysqld.pid",
                         "--skip-log-bin", "--log-error=/tmp/restore-mysqld.err"]) + " </dev/null >/dev/null 2>&1 &")
    client = ["mariadb", "--socket=" + sock, "--batch", "--skip-column-names"]
    try:
        deadline = time.monotonic() + 600  # InnoDB crash recovery under TCG on a loaded host
        while vm.run(["mariadb-admin", "--socket=" + sock, "ping"], check=False).returncode:
            assert time.monotonic() < deadline, vm.run(["tail", "-20", "/tmp/restore-mysqld.err"]).stdout
            time.sleep(2)
        rows = vm.run(client + ["--execute", "SELECT id, payload FROM app.load"]).stdout
        bulk = vm.run(client + ["--execute", "SELECT COUNT(*), SUM(CRC32(payload)) FROM app.bulk"]).stdout.split()
    finally:
        vm.run(["mariadb-admin", "--socket=" + sock, "shutdown"], check=False)
    return {int(i): p for i, p in (line.split("\t") for line in rows.splitlines())}, bulk


def postgres_rows(vm, datadir):
    """Start PostgreSQL on the restored datadir (crash recovery from the snapshot), read it, stop it.
    Debian keeps the configuration in /etc: the copy gets a minimal one of its own."""
    pg = "/usr/lib/postgresql/15/bin/"
    sockdir = "/run/lab-restore-pg"
    # The live cluster's PID is in the snapshot's lock file and alive: it would block the start.
    vm.run(["rm", "-f", datadir + "/postmaster.pid"])
    vm.put(datadir + "/postgresql.conf", "listen_addresses = ''\nport = 5433\nunix_socket_directories = '%s'\n"
           % sockdir)
    vm.put(datadir + "/pg_hba.conf", "local all all peer\n")
    vm.put(datadir + "/pg_ident.conf", "")
    vm.run(["install", "-d", "-o", "postgres", "-g", "postgres", sockdir])
    vm.run(["chown", "-R", "postgres:postgres", datadir])
    vm.run(["chmod", "700", datadir])
    as_pg = ["runuser", "-u", "postgres", "--"]
    vm.run(as_pg + [pg + "pg_ctl", "-D", datadir, "-l", "/tmp/restore-pg.log", "-w", "-t", "600", "start"],
           timeout=660)
    psql = as_pg + ["psql", "--no-psqlrc", "-q", "-A", "-t", "-h", sockdir, "-p", "5433", "-d", "app", "-c"]
    try:
        rows = vm.run(psql + ["SELECT id, payload FROM load"]).stdout
        bulk = vm.run(psql + ["SELECT count(*), sum(hashtext(payload)) FROM bulk"]).stdout.replace("|", " ").split()
    finally:
        vm.run(as_pg + [pg + "pg_ctl", "-D", datadir, "-m", "fast", "-w", "stop"], check=False)
    return {int(i): p for i, p in (line.split("|") for line in rows.splitlines())}, bulk


def lvm_report(vm, kind, fields):
    """`lvs`/`vgs` of the lab VG as lvm itself reports it, in bytes."""
    out = vm.run([kind, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields, VG]).stdout
    return json.loads(out)["report"][0][kind[:2]]


def test_server_facts_reads_the_engines_logical_volumes(lvm_databases, tmp_path):
    """server_facts' real lvs path (tests/unit/test_facts_given_lvs_report.py hands it a report):
    each engine's datadir is found on its LV, with the figures lvm itself reports."""
    vm = lvm_databases
    inventory = tmp_path / "facts-hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"lab": vm.inventory_vars()}}}))
    caps = run_module(tmp_path, "server_facts", {"gather": ["capabilities"]}, inventory=inventory, host="lab",
                      timeout=900)["capabilities"]
    [vg] = lvm_report(vm, "vgs", "vg_free,vg_extent_size,vg_free_count")
    sizes = {lv["lv_name"]: int(lv["lv_size"]) for lv in lvm_report(vm, "lvs", "lv_name,lv_size")}
    [cluster] = caps["postgresql"]["clusters"]
    storages = {"mysql": caps["mysql"]["storage"], "postgresql": cluster["storage"]}
    assert int(vg["vg_free_count"]) > 0  # room for a snapshot: the backup below takes one
    for lv, st in storages.items():
        mountpoint = vm.run(["findmnt", "-n", "-o", "TARGET", "-T", st["path"]]).stdout.strip()
        assert mountpoint == VOLUMES[lv] and st["mountpoint"] == mountpoint and st["fstype"] == "ext4", st
        assert st["type"] == "lvm", st
        assert st["lvm"]["vg"] == VG and st["lvm"]["lv"] == lv and st["lvm"]["path"] == "/dev/%s/%s" % (VG, lv), st
        assert st["lvm"]["size_bytes"] == sizes[lv] == 512 * 1024 * 1024, st
        assert st["lvm"]["vg_free_bytes"] == int(vg["vg_free"]), st
        assert st["lvm"]["vg_free_extents"] == int(vg["vg_free_count"]), st
        assert st["lvm"]["vg_extent_bytes"] == int(vg["vg_extent_size"]), st
        assert st["snapshot_capable"] is True and st["snapshot_fits"]["aggressive"] is True, st


def test_backup_playbook_lvm_snapshots_restore(lvm_databases, lab_timings, tmp_path):
    vm = lvm_databases
    control_dir = tmp_path / "cp"
    control_dir.mkdir()
    host = dict(vm.inventory_vars(), **{
        "borgfleet_backup_server": "local",
        "borgfleet_local_pool_path": "/srv/borg",
        "borgfleet_backups": [
            {"name": "maria", "passphrase": SECRET,
             "databases": [{"engine": "mariadb", "method": "auto", "freeze_timeout": FREEZE_TIMEOUT}]},
            {"name": "pg", "passphrase": SECRET,
             "databases": [{"engine": "postgresql", "method": "auto", "freeze_timeout": FREEZE_TIMEOUT}]},
        ]})
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"clients": {"hosts": {"lab": host}}}}}))

    started = time.monotonic()
    # Bounds for TCG on a loaded host: measured 59 s / 190 s on a quiet one.
    setup = run_playbook("setup.yml", inventory, control_dir=control_dir, timeout=1200)
    assert setup.rc == 0, setup
    lab_timings["setup.yml"] = time.monotonic() - started

    loads = {engine: Load(vm, engine).start() for engine in ("mariadb", "postgresql")}
    for load in loads.values():
        load.wait_rows(20)
    started = time.monotonic()
    run = run_playbook("backup.yml", inventory, control_dir=control_dir, timeout=1200)
    lab_timings["backup.yml"] = time.monotonic() - started
    for load in loads.values():
        load.wait_rows(len(load.lines()) + 5)  # the writers outlived the freeze
        load.halt()
    assert run.rc == 0, run
    assert SECRET not in run.output

    report = {entry["backup"]: entry for entry in run.results("borgfleet backup result")["lab"]["msg"]}
    assert set(report) == {"maria", "pg"}, report
    for name, entry in report.items():
        assert not entry["failed"], entry
        assert entry["method"] == "snapshot", entry
        [volume] = entry["snapshot"]["volumes"]
        assert volume["kind"] == "lvm" and volume["snapshot"].startswith(VG + "/borgfleet-" + name), volume
        # Writers are blocked only around the snapshot: the lock is held before it is taken and
        # released right after (wall-clock bounds of real hardware do not hold under TCG).
        freeze, snap = entry["freeze"], entry["snapshot"]
        assert freeze["requested_at"] <= freeze["acquired_at"] <= snap["started_at"] <= snap["finished_at"], entry
        assert freeze["acquired_at"] - freeze["requested_at"] < FREEZE_TIMEOUT, entry
        assert freeze["released_at"] - snap["finished_at"] < RELEASE_AFTER_SNAPSHOT, entry
        assert 0 < freeze["window"], entry
    assert report["maria"]["freeze"]["method"] == "flush_tables_with_read_lock"
    assert report["pg"]["freeze"]["method"] == "checkpoint"  # WAL on the same LV: one atomic snapshot

    assert leftovers(vm) == ([], []), "snapshot LVs or mounts left behind"

    checks = {
        "maria": ("mariadb", mariadb_rows, "released_at",
                  ["mariadb", "--batch", "--skip-column-names", "--execute",
                   "SELECT COUNT(*), SUM(CRC32(payload)) FROM app.bulk"]),
        "pg": ("postgresql", postgres_rows, "finished_at",
               ["runuser", "-u", "postgres", "--", "psql", "--no-psqlrc", "-A", "-t", "-d", "app", "-c",
                "SELECT count(*), sum(hashtext(payload)) FROM bulk"]),
    }
    for backup, (engine, read_rows, upper_key, live_bulk) in checks.items():
        entry = report[backup]
        [path] = entry["snapshot"]["paths"]
        assert path == MOUNT_ROOT + "/" + backup + DATADIRS[engine], path  # the stable mount path
        started = time.monotonic()
        datadir = restore(vm, inventory, backup, entry["archive"]["name"], path, "/srv/restore/" + backup,
                          control_dir)
        rows, bulk = read_rows(vm, datadir)
        lab_timings["restore + start + read " + backup] = time.monotonic() - started
        freeze, snap = entry["freeze"], entry["snapshot"]
        # MariaDB: consistent as of the lock; PostgreSQL checkpoint mode: as of the snapshot.
        upper = freeze["released_at"] if upper_key == "released_at" else snap["finished_at"]
        committed, present = check_restored(rows, loads[engine], freeze["acquired_at"], upper)
        assert committed > 10, "the write load was too thin to prove anything: %d rows" % committed
        assert bulk == vm.run(live_bulk).stdout.replace("|", " ").split() and bulk[0] == str(BULK_ROWS), bulk
        print("%s: %d rows committed before the freeze, %d restored, freeze window %.3f s, "
              "snapshot %.3f s, archive %s files"
              % (engine, committed, present, freeze["window"], snap.get("seconds", -1),
                 entry["archive"]["stats"]["nfiles"]))

    assert leftovers(vm) == ([], [])
