"""Database fixtures more than one tier uses, registered once by the root conftest (a session
fixture defined in two conftests would start two servers in one directory)."""
import pytest


@pytest.fixture(scope="session")
def plain_mariadb(test_root):
    """A throwaway MariaDB (root over its own socket) whose datadir is on the test tree's own
    filesystem (no snapshots possible), with one database `shop`."""
    from tests.databases.dbs import MariaDB  # here: the root conftest must not need the collection's code
    base = test_root / "plain-mariadb"
    base.mkdir()
    db = MariaDB(base / "data", base / "run").install()
    try:
        db.start()
        db.sql("CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20));"
               "INSERT INTO shop.items VALUES (1, 'one'), (2, 'two');")
        yield db
    finally:
        db.stop()
