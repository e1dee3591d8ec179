"""Database names, users and sockets never reach a dump tool as an option (issue 10).

`database: --result-file=/tmp/x` once went to mariadb-dump's argv, which wrote a root-owned file
on the client. The modules now check every connection setting with the collection's contract
before anything runs; these tests run the real modules through ansible-playbook against a real
MariaDB, and prove with a positive control that the same setup dumps a valid database.
"""
import uuid
from pathlib import Path

import pytest

from plugins.module_utils.borg import Borg, BorgSettings
from tests.databases.conftest import borg_args, repo  # noqa: F401 (fixtures)
from tests.lib.playbook import run_module


def _marker():
    return Path("/tmp") / ("borgfleet-contract-%s" % uuid.uuid4().hex)


def test_db_dump_refuses_an_option_as_database_name(plain_mariadb, borg_args, tmp_path):  # noqa: F811
    marker = _marker()
    result = run_module(tmp_path, "db_dump", dict(
        borg_args, archive_name="db-{now:%Y-%m-%dT%H:%M:%S}", engine="mariadb",
        login_unix_socket=str(plain_mariadb.socket), database="--result-file=%s" % marker),
        expect_failure=True)
    assert result["msg"].startswith("database '--result-file=%s' is not valid" % marker), result["msg"]
    assert not marker.exists(), "mariadb-dump took the database name for an option"
    assert Borg(BorgSettings(**borg_args)).list_archives() == []   # nothing was archived either
    # Positive control: the same module, server and repository dump a database with a plain name.
    ok = run_module(tmp_path, "db_dump", dict(
        borg_args, archive_name="db-{now:%Y-%m-%dT%H:%M:%S}", engine="mariadb",
        login_unix_socket=str(plain_mariadb.socket), database="shop"))
    assert ok["dump"]["file"] == "mariadb-shop.sql" and ok["archive"]["stats"]["original_size"] > 0
    assert [a["name"] for a in Borg(BorgSettings(**borg_args)).list_archives()] == [ok["archive"]["name"]]


@pytest.mark.parametrize("module, engine, key, value", [
    ("db_dump", "postgresql", "database", "--file=/tmp/borgfleet-contract-pg"),
    ("db_dump", "mariadb", "login_user", "--result-file=/tmp/borgfleet-contract-user"),
    ("db_dump", "mongodb", "login_host", "-oProxyCommand=touch /tmp/borgfleet-contract-host"),
    ("db_dump", "mariadb", "login_unix_socket", "relative.sock"),
    ("snapshot", "mariadb", "database", "app\n--result-file=/tmp/borgfleet-contract-nl"),
    ("snapshot", "postgresql", "os_user", "-postgres"),
])
def test_modules_refuse_bad_connection_settings_before_running_anything(tmp_path, borg_args, module,  # noqa: F811
                                                                         engine, key, value):
    args = dict(borg_args, engine=engine, archive_name="db-{now:%Y-%m-%dT%H:%M:%S}", **{key: value})
    if module == "snapshot":
        args["name"] = "contract"
    result = run_module(tmp_path, module, args, expect_failure=True)
    assert result["msg"].startswith("%s %r is not valid" % (key, value)), result["msg"]
    assert "cmd" not in result or not result["cmd"], "a command ran: %s" % result.get("cmd")
    for leftover in Path("/tmp").glob("borgfleet-contract-*"):
        pytest.fail("a tool took a setting for an option and wrote %s" % leftover)


def test_dump_argv_never_takes_a_value_for_an_option():
    """Pure logic, a second line behind the contract: an engine built directly (no contract check)
    still refuses an option-like database name, and mongodump gets name=value options."""
    from plugins.module_utils.databases import DatabaseError, engine_for
    from plugins.module_utils.engines.mariadb import MariaDB as MariaDBEngine
    from plugins.module_utils.engines.mongodb import MongoDB
    with pytest.raises(DatabaseError, match="is not valid"):
        MariaDBEngine(database="--result-file=/tmp/x").dump_command()
    with pytest.raises(DatabaseError, match=r"^database '--result-file=/tmp/x' is not valid"):
        engine_for("mariadb", database="--result-file=/tmp/x")
    argv = MongoDB(login_host="db1", login_port=27017, database="app").dump_command()
    assert argv[-3:] == ["--host=db1", "--port=27017", "--db=app"]
    assert MariaDBEngine(database="shop").dump_command()[-2:] == ["--databases", "shop"]
