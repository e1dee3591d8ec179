"""Dumps streamed into borg (no temporary file), restored into fresh instances and compared."""
import os
import stat
import subprocess

from plugins.module_utils.borg import Borg, BorgSettings
from plugins.module_utils.engines.mariadb import MariaDB as MariaDBEngine
from plugins.module_utils.engines.postgresql import PostgreSQL as PgEngine
from tests.databases.dbs import MariaDB, Postgres, stale_secret_dirs
from tests.databases.test_snapshot import DB_PASSWORD
from tests.lib.playbook import run_module

CHECKSUM_MARIADB = "SELECT COUNT(*), SUM(CRC32(payload)) FROM app.bulk"
CHECKSUM_PG = "SELECT count(*), sum(hashtext(payload)) FROM bulk"


def extracted_file(borg_args, archive, name, target):
    """The one file the dump archive holds, extracted with borg."""
    target.mkdir()
    files, _ = Borg(BorgSettings(**borg_args)).extract(archive, str(target))
    assert files == [name], files  # the archive is the dump alone: no temporary path went in
    return target / name


def no_secret_files_left():
    return not stale_secret_dirs()


def test_mariadb_dump_restores_into_a_fresh_instance(mariadb, borg_args, tmp_path, test_root):
    result = run_module(tmp_path, "db_dump", dict(
        borg_args, archive_name="mariadb-dump-{now:%Y-%m-%dT%H:%M:%S}", engine="mariadb",
        login_unix_socket=str(mariadb.socket), login_user="backup", login_password=DB_PASSWORD))
    assert result["dump"]["file"] == "mariadb-all.sql"
    assert DB_PASSWORD not in " ".join(result["dump"]["command"])
    assert "--single-transaction" in result["dump"]["command"]
    assert result["archive"]["stats"]["original_size"] > 1_000_000
    assert no_secret_files_left()

    dump = extracted_file(borg_args, result["archive"]["name"], "mariadb-all.sql", tmp_path / "x")
    fresh = MariaDB(test_root / "fresh-mariadb" / "data", test_root / "fresh-mariadb" / "run")
    (test_root / "fresh-mariadb").mkdir()
    fresh.install()
    try:
        fresh.start()
        with open(dump) as f:
            subprocess.run(fresh.client(), stdin=f, check=True)
        assert fresh.sql(CHECKSUM_MARIADB).split() == mariadb.sql(CHECKSUM_MARIADB).split()
        assert fresh.sql("SELECT note FROM app.notes WHERE id = 1") == mariadb.sql(
            "SELECT note FROM app.notes WHERE id = 1")
        assert int(fresh.sql(CHECKSUM_MARIADB).split()[0]) == 20000
    finally:
        fresh.stop()


def test_postgres_dump_of_one_database_and_of_the_cluster(postgres, borg_args, tmp_path, test_root):
    postgres.sql("CREATE DATABASE shop")
    postgres.sql("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 5000) g",
                 db="shop")
    base = dict(borg_args, engine="postgresql", login_unix_socket=str(postgres.rundir), login_port=postgres.port)
    one = run_module(tmp_path, "db_dump", dict(base, archive_name="pg-shop-{now:%Y-%m-%dT%H:%M:%S}",
                                                database="shop"))
    assert one["dump"]["file"] == "postgresql-shop.pgdump"
    everything = run_module(tmp_path, "db_dump", dict(base, archive_name="pg-all-{now:%Y-%m-%dT%H:%M:%S}"))
    assert everything["dump"]["file"] == "postgresql-all.sql"

    shop = extracted_file(borg_args, one["archive"]["name"], "postgresql-shop.pgdump", tmp_path / "one")
    full = extracted_file(borg_args, everything["archive"]["name"], "postgresql-all.sql", tmp_path / "all")
    (test_root / "fresh-pg").mkdir()
    subprocess.run(["chown", "postgres", str(test_root / "fresh-pg")], check=True)
    fresh = Postgres(test_root / "fresh-pg" / "data", test_root / "fresh-pg" / "run").install()
    try:
        fresh.start()
        # The cluster dump brings every database (and roles) back; "role postgres already
        # exists" is its one expected complaint, so no ON_ERROR_STOP: the data checks decide.
        # Dumps go in on stdin: the postgres user cannot read root's test directory.
        psql = fresh.client()[:5] + ["-h", str(fresh.rundir), "-p", str(fresh.port), "-d", "postgres"]
        with open(full) as f:
            subprocess.run(psql, stdin=f, check=True, stdout=subprocess.DEVNULL)
        assert fresh.sql(CHECKSUM_PG) == postgres.sql(CHECKSUM_PG)
        assert fresh.sql(CHECKSUM_PG, db="shop") == postgres.sql(CHECKSUM_PG, db="shop")
        # ...and the custom-format dump of one database restores on its own under another name.
        fresh.sql("CREATE DATABASE shop_copy")
        with open(shop, "rb") as f:
            subprocess.run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_restore", "-h",
                            str(fresh.rundir), "-p", str(fresh.port), "-d", "shop_copy", "--exit-on-error"],
                           stdin=f, check=True)
        assert fresh.sql(CHECKSUM_PG, db="shop_copy") == postgres.sql(CHECKSUM_PG, db="shop")
    finally:
        fresh.stop()
        postgres.sql("DROP DATABASE shop")


def test_failing_dump_fails_the_archive(mariadb, borg_args, tmp_path):
    result = run_module(tmp_path, "db_dump", dict(
        borg_args, archive_name="broken-{now:%Y-%m-%dT%H:%M:%S}", engine="mariadb",
        login_unix_socket=str(mariadb.socket), login_user="backup", login_password="wrong"),
        expect_failure=True)
    assert "wrong" not in result["msg"]
    archives = Borg(BorgSettings(**borg_args)).list_archives()
    assert archives == []  # borg refused to keep a broken dump as a backup
    assert no_secret_files_left()


def test_passwords_never_reach_argv(tmp_path):
    """Pure logic: the password is in a 0600 file named on argv, never on argv itself."""
    secret = "S3cret:with'quote\\and\"more"
    with MariaDBEngine(login_user="u", login_password=secret, login_unix_socket="/s") as db:
        argv = db.dump_command()
        assert secret not in " ".join(argv)
        path = argv[1].split("=", 1)[1]
        assert argv[1].startswith("--defaults-extra-file=")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert not os.path.exists(path)
    with PgEngine(login_user="u", login_password=secret, login_host="h", database="d") as db:
        argv = db.dump_command()
        assert secret not in " ".join(argv)
        assert "passfile=" in " ".join(argv)
