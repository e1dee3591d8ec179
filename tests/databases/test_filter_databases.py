"""resolve_backups with `databases:` (pure inventory logic, plugins/filter/backups.py)."""
import pytest
from ansible.errors import AnsibleFilterError

from plugins.filter import backups as f

SERVERS = {"bk1": {"borgfleet_storage_pools": [{"name": "main", "path": "/srv/borg"}]}}


def resolve(*backups):
    hv = dict(SERVERS, db1={"borgfleet_backups": list(backups)})
    return f.resolve_backups(hv["db1"]["borgfleet_backups"], "db1", hv, ["bk1"])


def test_database_backup_resolves_with_method_auto_by_default():
    [b] = resolve({"name": "maria", "passphrase": "p",
                   "databases": [{"engine": "mariadb", "login_password": "dbpw", "freeze_timeout": 5}]})
    assert b["paths"] == []
    assert b["databases"] == [{"engine": "mariadb", "method": "auto", "login_password": "dbpw",
                               "freeze_timeout": 5}]
    assert b["archive_name"] == "maria-{now:%Y-%m-%dT%H:%M:%S}"
    # public_backups (logged loops) drops the database settings along with the passphrase
    [pub] = f.public_backups([b])
    assert "passphrase" not in pub and "databases" not in pub and "dbpw" not in repr(pub)


def test_file_backups_have_no_databases():
    [b] = resolve({"name": "etc", "paths": ["/etc"], "passphrase": "p"})
    assert b["databases"] == []


@pytest.mark.parametrize("databases, message", [
    ([{"engine": "oracle"}], "engine"),
    ([{"engine": "mariadb", "method": "copy"}], "method"),
    ([{"engine": "mariadb", "pasword": "x"}], "unknown key"),
    ([{"engine": "mariadb"}, {"engine": "postgresql"}], "its own backup"),
    (["mariadb"], "mapping"),
])
def test_bad_database_entries_are_refused(databases, message):
    with pytest.raises(AnsibleFilterError, match=message):
        resolve({"name": "db", "passphrase": "p", "databases": databases})


def test_database_backup_takes_no_paths():
    with pytest.raises(AnsibleFilterError, match="no paths"):
        resolve({"name": "db", "passphrase": "p", "paths": ["/etc"], "databases": [{"engine": "mariadb"}]})


@pytest.mark.parametrize("key, value", [
    ("database", "--result-file=/tmp/x"), ("database", "a/b"), ("database", "app\n"), ("database", "-"),
    ("login_user", "-uroot"), ("login_user", "root\x00"), ("login_host", "-oProxyCommand=x"),
    ("login_host", "db host"), ("login_unix_socket", "run/mysqld.sock"), ("login_unix_socket", "/run/\n"),
    ("defaults_file", "--no-defaults"), ("os_user", "--help"), ("os_user", "post gres"), ("login_port", 0),
    ("login_port", "5432; id"), ("datadir", "var/lib/mysql"), ("freeze_timeout", -1),
    ("postgresql_mode", "fast"), ("lvm_snapshot_size", "-L1G"), ("extra_paths", ["rel"]),
])
def test_database_settings_that_could_become_options_are_refused(key, value):
    """Each reaches a client's argv: never as an option, never on two lines (issue 10)."""
    with pytest.raises(AnsibleFilterError, match=r"client 'db1', backup 'db': databases %s .*is not valid" % key):
        resolve({"name": "db", "passphrase": "p", "databases": [{"engine": "mariadb", key: value}]})


def test_database_password_with_a_newline_is_refused_without_echoing_it():
    with pytest.raises(AnsibleFilterError, match="login_password must be text on one line") as err:
        resolve({"name": "db", "passphrase": "p",
                 "databases": [{"engine": "mariadb", "login_password": "pw\nplugin-dir=/tmp"}]})
    assert "plugin-dir" not in str(err.value)


def test_database_settings_accepted():
    [b] = resolve({"name": "db", "passphrase": "p", "databases": [{
        "engine": "postgresql", "database": "app_2$x", "login_user": "backup@azure", "login_host": "2001:db8::1",
        "login_port": "5432", "login_unix_socket": "/var/run/postgresql", "os_user": "postgres",
        "datadir": "/var/lib/postgresql/15/main", "extra_paths": ["/srv/wal"], "freeze_timeout": 10,
        "postgresql_mode": "backup", "lvm_snapshot_size": "20%ORIGIN", "login_password": "p w'\"$"}]})
    assert b["databases"][0]["database"] == "app_2$x"


@pytest.mark.parametrize("entry", ["s3cret-db-pw", ["s3cret-db-pw"], 12345])
def test_a_mistyped_database_entry_is_never_echoed(entry):
    with pytest.raises(AnsibleFilterError) as e:
        resolve({"name": "maria", "passphrase": "p", "databases": [entry]})
    assert "must be a mapping" in str(e.value) and "s3cret" not in str(e.value) and "12345" not in str(e.value)


def test_verifiable_backups_are_database_backups_not_taken_by_dump():
    backups = resolve({"name": "etc", "paths": ["/etc"], "passphrase": "p"},
                      {"name": "auto", "passphrase": "p", "databases": [{"engine": "postgresql"}]},
                      {"name": "snap", "passphrase": "p", "databases": [{"engine": "mariadb", "method": "snapshot"}]},
                      {"name": "dump", "passphrase": "p", "databases": [{"engine": "mariadb", "method": "dump"}]})
    assert [b["name"] for b in f.verifiable_backups(backups)] == ["auto", "snap"]
    # Unresolved inventory entries too (a backup without `databases`, or with an empty list).
    assert [b["name"] for b in f.verifiable_backups([{"name": "x"}, {"name": "y", "databases": []},
                                                     {"name": "z", "databases": [{"engine": "mariadb"}]}])] == ["z"]
    assert f.verifiable_backups(None) == []
