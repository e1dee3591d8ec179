"""instant_recovery for real: a throwaway PostgreSQL and MariaDB with known rows, crashed (what a
snapshot holds) and backed up with borg into a local repository, started straight from the archive
through ansible-playbook, queried for the exact rows, written to, stopped, resumed, removed — and
afterwards the repository checks clean, the archive id is unchanged and no mount, process, layer or
state file is left. Also after killing the engine or the borg mount, and a cleanup run."""
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.lib.playbook import run_module
from tests.modules.test_modules import SECRET, borg
from tests.recovery.conftest import mounted
from tests.recovery.dbs import MariaDB, PG_BIN, PG_ROWS

STATE_DIR = Path("/var/lib/borgfleet/recovery")
ROWFS_ON_HOST = Path("/usr/local/lib/borgfleet/rowfs.py")
ROWFS_SOURCE = Path(__file__).resolve().parents[2] / "plugins" / "module_utils" / "rowfs.py"
MOUNTS = Path("/run/borgfleet/mounts")
WAL_SEGMENT = 16 << 20


def make_repo(root, backup_name):
    """A local repository where the inventory contract puts it: <pool>/<client>/<backup>."""
    (root / "pool" / "localhost").mkdir(parents=True)
    common = {"repository": str(root / "pool" / "localhost" / backup_name), "passphrase": SECRET, "borg_base_dir": str(root / "base")}
    borg(common["repository"], "init", "--encryption", "repokey-blake2", base=common["borg_base_dir"])
    return common


def backup(common, archive, path):
    env = dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=common["borg_base_dir"])
    subprocess.run(["borg", "create", f"{common['repository']}::{archive}", str(path)], env=env, check=True)


def archive_id(common, archive):
    info = json.loads(borg(f"{common['repository']}::{archive}", "info", "--json", base=common["borg_base_dir"]))
    return info["archives"][0]["id"]


def assert_repository_untouched(common, archive, before_id):
    env = dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=common["borg_base_dir"])
    proc = subprocess.run(["borg", "check", common["repository"]], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert archive_id(common, archive) == before_id


def assert_nothing_left(name, pid=None):
    assert not (STATE_DIR / f"ir-{name}.json").exists()
    assert not (STATE_DIR / f"ir-{name}").exists()
    assert not any(m.startswith(f"{MOUNTS}/ir-{name}") for m in open("/proc/self/mountinfo").read().split())
    assert not (MOUNTS / f"ir-{name}").exists() and not (MOUNTS / f"ir-{name}-archive").exists()
    if pid:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] if Path(f"/proc/{pid}").exists() else "gone"
        assert state in ("gone", "Z"), f"engine pid {pid} still running"
    for p in Path("/proc").iterdir():  # no rowfs or borg mount of this session
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        assert f"mounts/ir-{name}".encode() not in cmd, cmd


@pytest.fixture(scope="module")
def pg_archive(test_root, pg_crashed):
    root = Path(tempfile.mkdtemp(prefix="ir-pg-", dir=test_root))
    root.chmod(0o755)
    common = make_repo(root, "pg")
    backup(common, "pg-2026-11-25T02:00:00", pg_crashed)
    return common, "pg-2026-11-25T02:00:00"


def psql(session, query):
    return subprocess.run([str(PG_BIN / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                           "-h", session["socket_dir"], "-p", str(session["port"]), "-d", "postgres", "-c", query],
                          capture_output=True, text=True, user="postgres", group="postgres", extra_groups=[])


def test_postgresql_from_archive_query_write_stop_resume_absent(tmp_path, pg_archive):
    common, archive = pg_archive
    before = archive_id(common, archive)
    args = dict(common, archive=archive, name="t-pg", verify=True,
                query="SELECT count(*), sum(balance), max(id) FROM accounts")
    r = run_module(tmp_path, "instant_recovery", args, check=True)
    assert r["changed"] and not (STATE_DIR / "ir-t-pg.json").exists()
    r = run_module(tmp_path, "instant_recovery", args)
    s = r["session"]
    assert r["changed"] and s["engine"] == "postgresql" and s["address"] == "127.0.0.1"
    assert r["query_rows"] == [[str(PG_ROWS + 1), str(7 * PG_ROWS * (PG_ROWS + 1) // 2 + 42), "100001"]]
    assert r["verify"]["rows"] == PG_ROWS + 1 and r["verify"]["largest_table"] == "postgres:public.accounts"
    assert "postgres" in r["verify"]["databases"]
    assert s["health"]["intact"] and s["health"]["engine_running"]
    assert s["datadir"].startswith(f"{MOUNTS}/ir-t-pg/")
    # rowfs runs from the one file the action plugin put on the host: the collection's own rowfs.py.
    assert ROWFS_ON_HOST.read_bytes() == ROWFS_SOURCE.read_bytes()
    rowfs_pid = json.loads((STATE_DIR / "ir-t-pg.json").read_text())["rowfs_proc"]["pid"]
    rowfs_argv = Path(f"/proc/{rowfs_pid}/cmdline").read_bytes().split(b"\0")
    assert str(ROWFS_ON_HOST).encode() in rowfs_argv, rowfs_argv
    print(f"\nPostgreSQL ready in {r['ready_seconds']} s, layer {s['layer_bytes']} bytes")
    # Listening on TCP at the chosen address too, as the engine's own user with its own settings.
    ps = subprocess.run(["ps", "-o", "user=,args=", "-p", str(s["pid"])], capture_output=True, text=True).stdout
    assert ps.startswith("postgres ") and "archive_mode=off" in ps
    # Promoted (not a standby), following nothing that postgresql.auto.conf names.
    assert psql(s, "SELECT pg_is_in_recovery(), current_setting('primary_conninfo'), "
                   "current_setting('restore_command')").stdout.strip() == "f||"
    # Writable: the writes land in the layer, the archive stays as it was.
    assert psql(s, "INSERT INTO accounts VALUES (200000, 'written-in-recovery', 1)").returncode == 0
    assert psql(s, "SELECT count(*) FROM accounts").stdout.strip() == str(PG_ROWS + 2)
    assert not run_module(tmp_path, "instant_recovery", dict(common, archive=archive, name="t-pg"))["changed"]
    listed = run_module(tmp_path, "instant_recovery", {"state": "query"}, secrets=[SECRET])["sessions"]
    assert [x["name"] for x in listed if x["name"] == "t-pg"] == ["t-pg"]
    # stopped keeps the layer; started again resumes with the row written above.
    r = run_module(tmp_path, "instant_recovery", {"name": "t-pg", "state": "stopped"}, secrets=[SECRET])
    assert r["changed"] and not r["session"]["health"]["engine_running"] and r["session"]["health"]["intact"]
    r = run_module(tmp_path, "instant_recovery", dict(common, archive=archive, name="t-pg",
                                                    query="SELECT owner FROM accounts WHERE id = 200000"))
    assert r["changed"] and r["query_rows"] == [["written-in-recovery"]]
    pid = r["session"]["pid"]
    layer = r["session"]["layer_bytes"]
    db_size = int(psql(r["session"], "SELECT pg_database_size('postgres')").stdout)
    # What the server wrote, not a copy: the pages it changed, and the WAL segment its new
    # timeline starts in after the promotion (a copy of the last one, 16 MiB).
    assert 0 < layer < db_size + WAL_SEGMENT, (layer, db_size)
    r = run_module(tmp_path, "instant_recovery", {"name": "t-pg", "state": "absent"}, secrets=[SECRET])
    assert r["changed"] and "engine" in r["removed"] and "state file" in r["removed"]
    assert not run_module(tmp_path, "instant_recovery", {"name": "t-pg", "state": "absent"}, secrets=[SECRET])["changed"]
    assert_nothing_left("t-pg", pid)
    assert_repository_untouched(common, archive, before)


def test_verified_reports_and_tears_down_even_when_the_check_fails(tmp_path, pg_archive):
    """state=verified is the whole verification in one call: start, check, tear down, report."""
    common, archive = pg_archive
    before = archive_id(common, archive)
    args = dict(common, state="verified", backup="pg", match_archives="pg-*")
    planned = run_module(tmp_path, "instant_recovery", args, check=True)
    assert planned["report"]["archive"] == archive and planned["report"]["passed"] is None
    assert not (STATE_DIR / "ir-verify-pg.json").exists() and not planned.get("session")

    r = run_module(tmp_path, "instant_recovery", dict(args, query="SELECT count(*) FROM accounts"))
    report = r["report"]
    assert report["passed"] is True and report["msg"] == "" and report["backup"] == "pg", report
    # The entry of "borgfleet verify result" (docs/contract.md), exactly.
    assert set(report) == {"backup", "archive", "passed", "engine", "ready_seconds", "total_seconds", "databases",
                           "largest_table", "rows", "query_rows", "layer_bytes", "msg"}
    assert report["archive"] == archive and report["engine"] == "postgresql"
    assert report["rows"] == PG_ROWS + 1 and report["largest_table"] == "postgres:public.accounts"
    assert "postgres" in report["databases"] and report["query_rows"] == [[str(PG_ROWS + 1)]]
    assert 0 < report["ready_seconds"] <= report["total_seconds"] and report["layer_bytes"] > 0
    assert r["session"]["name"] == "verify-pg" and "engine" in r["removed"] and "state file" in r["removed"]
    assert_nothing_left("verify-pg", r["session"]["pid"])

    # The engine started and answered, then the check failed (a query on a table that does not exist):
    # the task fails with the reason, and the session is torn down all the same.
    r = run_module(tmp_path, "instant_recovery", dict(args, query="SELECT * FROM no_such_table"),
                 expect_failure=True)
    report = r["report"]
    assert r["failed"] and "no_such_table" in r["msg"] and report["msg"] == r["msg"], r
    assert report["passed"] is False and report["engine"] == "postgresql" and report["rows"] == PG_ROWS + 1
    pid = r["session"]["pid"]
    assert pid and r["session"]["health"]["engine_running"], r["session"]  # it really was running
    assert "engine" in r["removed"] and "layer mount" in r["removed"] and "archive mount" in r["removed"]
    assert_nothing_left("verify-pg", pid)
    assert_repository_untouched(common, archive, before)


def test_postgresql_killed_engine_and_dead_mount_are_cleaned_up(tmp_path, pg_archive):
    common, archive = pg_archive
    before = archive_id(common, archive)
    r = run_module(tmp_path, "instant_recovery", dict(common, archive=archive, name="t-pg-kill"))
    pid = r["session"]["pid"]
    os.killpg(pid, signal.SIGKILL)  # the engine dies with its backends
    time.sleep(0.5)
    r = run_module(tmp_path, "instant_recovery", {"state": "cleanup"}, secrets=[SECRET])
    assert r["changed"] and "session t-pg-kill" in r["removed"]
    assert_nothing_left("t-pg-kill", pid)
    # A dead borg mount under a running engine: cleanup still removes everything.
    r = run_module(tmp_path, "instant_recovery", dict(common, archive=archive, name="t-pg-mount"))
    pid = r["session"]["pid"]
    archive_mount = r["session"]["archive_mount"]
    for p in Path("/proc").iterdir():
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mount" in cmd and archive_mount.encode() in cmd and b"/usr/bin/borg" in cmd:
            os.kill(int(p.name), signal.SIGKILL)
    time.sleep(0.5)
    r = run_module(tmp_path, "instant_recovery", {"state": "cleanup"}, secrets=[SECRET])
    assert r["changed"] and "session t-pg-mount" in r["removed"]
    assert_nothing_left("t-pg-mount", pid)
    assert not run_module(tmp_path, "instant_recovery", {"state": "cleanup"}, secrets=[SECRET])["changed"]
    assert_repository_untouched(common, archive, before)


@pytest.fixture(scope="module")
def mariadb_archive(test_root):
    root = Path(tempfile.mkdtemp(prefix="ir-my-", dir=test_root))
    root.chmod(0o755)
    db = MariaDB(root / "my").init().start()
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, item VARCHAR(40), qty INT) "
           "ENGINE=InnoDB; INSERT INTO shop.orders SELECT seq, CONCAT('item-', seq), seq % 13 FROM shop.seq_1_to_3000")
    db.crash()
    common = make_repo(root, "mysql")
    backup(common, "mysql-2026-11-25T02:00:00", db.data)
    return common, "mysql-2026-11-25T02:00:00"


def test_mariadb_from_archive_query_write_absent(tmp_path, mariadb_archive):
    common, archive = mariadb_archive
    before = archive_id(common, archive)
    args = dict(common, archive=archive, name="t-my", verify=True,
                query="SELECT COUNT(*), SUM(qty), MAX(item) FROM shop.orders")
    r = run_module(tmp_path, "instant_recovery", args)
    s = r["session"]
    assert r["changed"] and s["engine"] == "mariadb"
    expected_sum = sum(i % 13 for i in range(1, 3001))
    assert r["query_rows"] == [["3000", str(expected_sum), "item-999"]]
    assert r["verify"]["largest_table"] == "shop.orders" and r["verify"]["rows"] == 3000
    print(f"\nMariaDB ready in {r['ready_seconds']} s, layer {s['layer_bytes']} bytes")
    ps = subprocess.run(["ps", "-o", "user=", "-p", str(s["pid"])], capture_output=True, text=True).stdout
    assert ps.strip() == "mysql"
    sock = f"{s['socket_dir']}/mysqld.sock"
    w = subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "--batch",
                        "--skip-column-names", "-e",
                        "INSERT INTO shop.orders VALUES (9999, 'recovered', 1); SELECT COUNT(*) FROM shop.orders"],
                       capture_output=True, text=True)
    assert w.returncode == 0 and w.stdout.strip() == "3001", w.stderr
    # TCP on the chosen address and port answers too.
    assert subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(s["port"]), "-u", "nobody",
                           "-e", "SELECT 1"], capture_output=True, text=True).stderr.find("Access denied") >= 0
    pid = s["pid"]
    r = run_module(tmp_path, "instant_recovery", {"name": "t-my", "state": "absent"}, secrets=[SECRET])
    assert r["changed"]
    assert_nothing_left("t-my", pid)
    assert_repository_untouched(common, archive, before)


def write_inventory(path, common, backup_name):
    repo = Path(common["repository"])
    inv = {"all": {"children": {"clients": {"hosts": {"localhost": {
        "ansible_connection": "local",
        # The controller's venv has no pyfuse3: rowfs must fall back to the system python3.
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "borgfleet_backup_server": "local",
        "borgfleet_local_pool_path": str(repo.parent.parent),
        "borgfleet_borg_base_dir": common["borg_base_dir"],
        # A database backup (docs/contract.md): one database, no paths.
        "borgfleet_backups": [{"name": backup_name, "passphrase": SECRET,
                               "databases": [{"engine": "postgresql", "method": "snapshot"}]}],
    }}}}}}
    path.write_text(json.dumps(inv))
    return path


def test_playbooks_instant_recovery_and_verify(tmp_path, pg_archive, ansible_control_dir):
    from tests.lib.playbook import run_playbook
    common, archive = pg_archive
    before = archive_id(common, archive)
    inv = write_inventory(tmp_path / "inventory.json", common, "pg")
    r = run_playbook("instant_recovery.yml", inv, extra_vars={
        "borgfleet_backup": "pg", "borgfleet_archive": "latest", "borgfleet_recovery_name": "pb-pg",
        "borgfleet_recovery_query": "SELECT owner FROM accounts WHERE id = 100001"})
    assert r.rc == 0, r
    assert SECRET not in r.output
    assert "after-checkpoint" in r.output
    session = json.loads((STATE_DIR / "ir-pb-pg.json").read_text())
    assert session["archive"] == archive
    assert psql(session, "SELECT count(*) FROM accounts").stdout.strip() == str(PG_ROWS + 1)
    r = run_playbook("instant_recovery.yml", inv, extra_vars={"borgfleet_recovery_state": "query"})
    assert r.rc == 0 and "pb-pg" in r.output, r
    r = run_playbook("instant_recovery.yml", inv, extra_vars={
        "borgfleet_recovery_state": "absent", "borgfleet_recovery_name": "pb-pg"})
    assert r.rc == 0, r
    assert_nothing_left("pb-pg", session["engine_proc"]["pid"])
    # A request missing the backup fails at once, naming it.
    r = run_playbook("instant_recovery.yml", inv, extra_vars={"borgfleet_archive": "latest"})
    assert r.rc != 0 and "missing borgfleet_backup" in r.output, r

    r = run_playbook("verify.yml", inv)
    assert r.rc == 0, r
    assert SECRET not in r.output
    report = r.output[r.output.index("borgfleet verify result"):]
    assert "passed: true" in report and f"rows: {PG_ROWS + 1}" in report and "largest_table: postgres:public.accounts" in report, report
    assert_nothing_left("verify-pg")
    assert_repository_untouched(common, archive, before)


def test_verify_reports_a_backup_that_does_not_restore(tmp_path, test_root, ansible_control_dir):
    from tests.lib.playbook import run_playbook
    root = Path(tempfile.mkdtemp(prefix="ir-bad-", dir=test_root))
    root.chmod(0o755)
    common = make_repo(root, "notadb")
    (root / "files").mkdir()
    (root / "files" / "readme.txt").write_text("no database in here\n")
    backup(common, "notadb-2026-11-25T02:00:00", root / "files")
    inv = write_inventory(tmp_path / "inventory.json", common, "notadb")
    r = run_playbook("verify.yml", inv)
    assert r.rc != 0, r
    report = r.output[r.output.index("borgfleet verify result"):]
    assert "passed: false" in report and "no PostgreSQL or MariaDB data directory found" in report, report
    assert "verification failed: notadb" in r.output
    assert_nothing_left("verify-notadb")
