"""Fixtures: one btrfs loop filesystem per session, throwaway MariaDB and PostgreSQL on it,
and a local borg repository per test."""
import contextlib
import shutil
import subprocess

import pytest

from tests.databases.dbs import MOUNT_ROOT, SECRET, Btrfs, MariaDB, Postgres, our_mounts
# plain_mariadb (a MariaDB off btrfs) is shared with tests/hardening: tests/lib/db_fixtures.py.

pytestmark = pytest.mark.skipif(shutil.which("mkfs.btrfs") is None, reason="btrfs-progs not installed")


@contextlib.contextmanager
def running(db):
    """Start an engine and stop it however the block ends (a failed setup included)."""
    try:
        yield db.start()
    finally:
        db.stop()


@pytest.fixture(scope="session")
def btrfs(test_root):
    fs = Btrfs(test_root).start()
    yield fs
    fs.stop()
    if not our_mounts():
        shutil.rmtree(MOUNT_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb(btrfs, test_root):
    db = MariaDB(btrfs.subvolume("mariadb", owner="mysql"), test_root / "mariadb-run").install()
    with running(db):
        _mariadb_schema(db)
        yield db


def _mariadb_schema(db):
    db.sql("CREATE DATABASE app; CREATE TABLE app.load (id INT PRIMARY KEY, payload VARCHAR(64)) ENGINE=InnoDB;"
           "CREATE TABLE app.bulk (id INT AUTO_INCREMENT PRIMARY KEY, payload TEXT) ENGINE=InnoDB;"
           "CREATE TABLE app.notes (id INT PRIMARY KEY, note VARCHAR(64)) ENGINE=Aria;"
           "INSERT INTO app.notes VALUES (1, 'aria rows are flushed by the read lock');"
           "CREATE USER 'backup'@'localhost' IDENTIFIED BY 'Sql-Pass-\"quoted\"-#1';"
           "GRANT ALL ON *.* TO 'backup'@'localhost';")
    # Some bulk so that the datadir is not trivially small.
    db.sql("SET SESSION max_recursive_iterations = 100000; INSERT INTO app.bulk (payload) "
           "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 20000) "
           "SELECT REPEAT(MD5(n), 30) FROM s")


@pytest.fixture(scope="session")
def postgres(btrfs, test_root):
    sv = btrfs.subvolume("postgres", owner="postgres")
    db = Postgres(sv / "data", test_root / "pg-run").install()
    with running(db):
        db.sql("CREATE TABLE load (id int PRIMARY KEY, payload text)")
        db.sql("CREATE TABLE bulk AS SELECT g AS id, repeat(md5(g::text), 30) AS payload "
               "FROM generate_series(1, 20000) g")
        yield db


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "repo"
    subprocess.run(["borg", "init", "--encryption", "repokey-blake2", str(path)], check=True,
                   env={"BORG_PASSPHRASE": SECRET, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                        "BORG_BASE_DIR": str(tmp_path / "borgbase")})
    return path


@pytest.fixture
def borg_args(repo, tmp_path):
    return {"repository": str(repo), "passphrase": SECRET, "borg_base_dir": str(tmp_path / "borgbase")}


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    """Every test ends with no mount of ours; btrfs snapshots are checked when the fs is used."""
    yield
    assert not our_mounts(), "mounts left behind: %s" % our_mounts()
    if "btrfs" in request.fixturenames:
        fs = request.getfixturevalue("btrfs")
        assert not fs.snapshots(), "snapshots left behind: %s" % fs.snapshots()
