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
