"""The issue's end-to-end path over real SSH: a backup server and a client, each a real sshd
on loopback (tests/lib harness), added through the API -> setup -> Run now -> archive with
stats -> restore onto another client (through a temporary grant on the backup server) -> delete ->
gone from borg and from the list. Read back with borg over SSH."""
import secrets
import subprocess

import pytest

from uilib import add_ssh_client, add_ssh_pair, wait_job
from tests.lib import fleet as fl
from tests.lib.borgrepo import BorgFailed
from tests.lib.trees import compare_trees, make_tree


@pytest.fixture()
def ssh_fleet(test_root, controller, sshd_factory):
    d = test_root / "ui-server"
    d.mkdir(mode=0o755)
    server = fl.Server(name="ui-server", sshd=sshd_factory("ui-server"), dir=d, user=f"bfu{secrets.token_hex(3)}",
                       pools=[{"name": "main", "path": str(d / "pool")}])
    cd = test_root / "ui-client"
    cd.mkdir(mode=0o700)
    make_tree(cd / "data", seed="ui-client")
    client = fl.Client(name="ui-client", sshd=sshd_factory("ui-client"), dir=cd, server=server,
                       backups=[{"name": "data", "paths": [str(cd / "data")], "exclude": ["*.tmp"],
                                 "passphrase": fl.passphrase()}])
    # Another client of the same server, with a backup of its own: restores land on it.
    od = test_root / "ui-other"
    od.mkdir(mode=0o700)
    (od / "own").mkdir()
    (od / "own" / "note.txt").write_text("ui-other's own files\n")
    other = fl.Client(name="ui-other", sshd=sshd_factory("ui-other"), dir=od, server=server,
                      backups=[{"name": "own", "paths": [str(od / "own")], "passphrase": fl.passphrase()}])
    yield server, client, other
    server.remove_user()


def test_ssh_fleet_setup_backup_delete(api, db, start_worker, controller, ssh_fleet, tmp_path):
    server, client, other = ssh_fleet
    op = api("operator")
    bs, cl = add_ssh_pair(api, controller, server, client)
    ot = add_ssh_client(api, controller, other, bs["id"])
    b = client.backups[0]
    bj = op.post("/api/backup-jobs", json={"client_id": cl["id"], **{k: b[k] for k in
                                                                          ("name", "paths", "exclude", "passphrase")}})
    assert bj.status_code == 201, bj.json
    assert bj.json["location"] == client.repo_url("data")
    obj = op.post("/api/backup-jobs", json={"client_id": ot["id"], **other.backups[0]})
    assert obj.status_code == 201, obj.json
    start_worker(1)

    job = wait_job(db, op.post(f"/api/servers/{bs['id']}/setup").json["job_id"])
    assert job["status"] == "succeeded", (job["error"], log(api, job["id"]))
    servers = {s["name"]: s for s in api("viewer").get("/api/servers").json["items"]}
    assert servers["ui-server"]["setup_status"] == servers["ui-client"]["setup_status"] == "ok"

    # Stats of the backup server over SSH, stored per server (server_facts' system dict).
    job = wait_job(db, op.post(f"/api/servers/{bs['id']}/collect-stats").json["job_id"])
    assert job["status"] == "succeeded", (job["error"], log(api, job["id"]))
    stats = api("viewer").get(f"/api/servers/{bs['id']}/stats").json["items"]
    assert len(stats) == 1
    system = stats[0]["data"]
    # The "server" is a loopback sshd on this very machine: its figures are this machine's.
    mem_total = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    assert system["memory"]["total_bytes"] == mem_total
    assert system["cpu"]["cores"] == int(subprocess.run(["nproc", "--all"], capture_output=True, text=True,
                                                         check=True).stdout)
    root = next(fs for fs in system["filesystems"] if fs["mountpoint"] == "/")
    assert root["total_bytes"] == int(subprocess.run(["df", "-B1", "--output=size", "/"], capture_output=True,
                                                     text=True, check=True).stdout.split()[1])

    job = wait_job(db, op.post(f"/api/backup-jobs/{bj.json['id']}/run").json["job_id"])
    text = log(api, job["id"])
    assert job["status"] == "succeeded", (job["error"], text)
    assert b["passphrase"] not in text
    items = api("viewer").get("/api/archives", query_string={"backup_job_id": bj.json["id"]}).json["items"]
    assert len(items) == 1
    a = items[0]
    assert a["server_name"] == "ui-server" and a["client_name"] == "ui-client"
    assert a["nfiles"] > 0 and a["original_size"] > 0 and a["compressed_size"] > 0 and a["duration"] is not None

    repo = client.repo("data", controller)
    assert repo.archive_names() == [a["name"]]
    restored = repo.extract(a["name"], tmp_path / "restore")
    src = client.dir / "data"
    assert compare_trees(src, restored / str(src).lstrip("/"), ignore=["scratch.tmp", "sub/deep/also.tmp"]) == []
    regular = [p for p in src.rglob("*") if p.is_file() and not p.is_symlink() and p.suffix != ".tmp"]
    assert a["nfiles"] == len(regular)

    # Onto the other client: it reads ui-client's repository with its own key, which the backup
    # server accepts for that one repository during the restore only.
    keys_file = server.home / ".ssh" / "authorized_keys"
    keys_before = keys_file.read_text()
    foreign = client.repo("data", controller, ssh_key=other.ssh_key)
    with pytest.raises(BorgFailed, match="PathNotAllowed|not allowed"):
        foreign.run("list", foreign.url)
    sub = src / "sub"
    onto = other.dir / "restored"
    job = wait_job(db, op.post(f"/api/archives/{a['id']}/restore", json={
        "paths": [str(sub)], "client_id": ot["id"], "target": str(onto)}).json["job_id"])
    text = log(api, job["id"])
    assert job["status"] == "succeeded", (job["error"], text)
    assert b["passphrase"] not in text and "Revoke the grant" in text
    assert compare_trees(sub, onto / str(sub).lstrip("/"), ignore=["deep/also.tmp"]) == []
    # The grant is gone: the file is as before and the other client's key is refused again.
    assert keys_file.read_text() == keys_before
    with pytest.raises(BorgFailed, match="PathNotAllowed|not allowed"):
        foreign.run("list", foreign.url)

    # An archive made outside the service appears after a refresh, with the service's own
    # archive keeping the figures recorded at backup time.
    repo.create("data-outside", client.dir / "data" / "README.txt")
    job = wait_job(db, op.post(f"/api/backup-jobs/{bj.json['id']}/refresh-archives").json["job_id"])
    assert job["status"] == "succeeded", (job["error"], log(api, job["id"]))
    listed = {x["name"]: x for x in
              api("viewer").get("/api/archives", query_string={"backup_job_id": bj.json["id"]}).json["items"]}
    assert set(listed) == {a["name"], "data-outside"} and listed[a["name"]]["nfiles"] == a["nfiles"]
    repo.run("delete", repo.archive("data-outside"))

    job = wait_job(db, op.delete(f"/api/archives/{a['id']}").json["job_id"])
    assert job["status"] == "succeeded", (job["error"], log(api, job["id"]))
    assert repo.archive_names() == []
    # The outside deletion is noticed by the next refresh: the list matches borg's again.
    job = wait_job(db, op.post(f"/api/backup-jobs/{bj.json['id']}/refresh-archives").json["job_id"])
    assert job["status"] == "succeeded" and job["result_json"] and '"removed": 1' in job["result_json"]
    assert api("viewer").get("/api/archives", query_string={"backup_job_id": bj.json["id"]}).json["items"] == []

    op.delete(f"/api/backup-jobs/{bj.json['id']}")
    op.delete(f"/api/backup-jobs/{obj.json['id']}")
    op.delete(f"/api/servers/{ot['id']}")
    op.delete(f"/api/servers/{cl['id']}")
    op.delete(f"/api/servers/{bs['id']}")


def log(api, job_id):
    return "\n".join(api("viewer").get(f"/api/jobs/{job_id}/log").json["lines"])
