"""analyze_pools over real SSH: a backup server and a client, each a loopback sshd, set up by
setup.yml; the client reads its repository through the server's forced `borg serve`, the server
reports the pool with the client's figures."""
import json
import os
import secrets

import pytest

from tests.lib import fleet as fl
from tests.lib.playbook import run_playbook


@pytest.fixture(scope="module")
def ssh_fleet(test_root, controller, sshd_factory, ansible_control_dir):
    base = test_root / "facts-pools"
    base.mkdir(mode=0o755)
    server_dir = base / "server"
    server_dir.mkdir(mode=0o755)
    server = fl.Server(name="poolserver", sshd=sshd_factory("poolserver"), dir=server_dir,
                       user=f"bfp{secrets.token_hex(3)}",
                       pools=[{"name": "main", "path": str(server_dir / "pool")}])
    client_dir = base / "client"
    client_dir.mkdir(mode=0o700)
    (client_dir / "data").mkdir()
    (client_dir / "data" / "blob").write_bytes(os.urandom(512 * 1024))
    client = fl.Client(name="poolclient", sshd=sshd_factory("poolclient"), dir=client_dir, server=server,
                       backups=[{"name": "files", "paths": [str(client_dir / "data")],
                                 "passphrase": fl.passphrase()}])
    inventory = fl.write_inventory(base / "inventory.yml", fl.inventory(controller, [server], [client]))
    setup = run_playbook("setup.yml", inventory, control_dir=ansible_control_dir)
    if setup.rc != 0:
        server.remove_user()
        pytest.fail(f"setup.yml failed:\n{setup}")
    yield {"server": server, "client": client, "inventory": inventory, "controller": controller}
    server.remove_user()


# setup.yml over SSH is most of its ~85 s.
@pytest.mark.slow
def test_pool_of_a_backup_server_with_its_clients_figures(ssh_fleet, ansible_control_dir):
    client, server = ssh_fleet["client"], ssh_fleet["server"]
    repo = client.repo("files", ssh_fleet["controller"])
    for name in ("files-2026-03-01T00:00:00", "files-2026-03-02T00:00:00"):
        repo.run("create", repo.archive(name), str(client.dir / "data"))

    run = run_playbook("analyze_pools.yml", ssh_fleet["inventory"], control_dir=ansible_control_dir)
    assert run.rc == 0, run
    results = {host: res["msg"] for host, res in run.results("borgfleet pools result").items()}
    assert set(results) == {"poolserver"}  # the client holds no pool of its own
    (pool,) = results["poolserver"]["pools"]
    assert pool["name"] == "main" and pool["path"] == server.pools[0]["path"]
    (entry,) = pool["repositories"]
    assert entry["path"] == client.repo_path("files")
    assert entry["client"] == "poolclient" and entry["backup"] == "files"
    info = json.loads(repo.run("info", "--json", repo.url).stdout)["cache"]["stats"]
    assert entry["borg"]["stats"]["original_size"] == info["total_size"]
    assert entry["borg"]["stats"]["deduplicated_size"] == info["unique_csize"]
    assert entry["borg"]["archive_count"] == 2
    assert entry["borg"]["last_archive"]["name"] == "files-2026-03-02T00:00:00"
    assert entry["size_on_disk_bytes"] >= info["unique_csize"]
    assert client.backup("files")["passphrase"] not in run.output
