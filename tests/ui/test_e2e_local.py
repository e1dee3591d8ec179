"""End to end through the service with a real worker: setup -> Run now -> archive with stats ->
delete -> gone, on a client whose repositories are local (borgfleet_backup_server: local).
Results are read back with borg itself."""
import filecmp
import os

from borgfleet_ui import db as dbm
from conftest import wait_job
from tests.lib.borgrepo import BorgRepo

PASS = "e2e $HOME;'\"|& pass"


def test_setup_run_archive_delete_local(api, db, start_worker, tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n" * 1000)
    (data / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    (data / "skip.tmp").write_text("excluded")
    op = api("operator")
    cl = op.post("/api/servers", json={
        "name": "e2e-local", "role": "client", "connection": "local",
        "local_pool_path": str(tmp_path / "repos"),
        "vars": {"borgfleet_borg_base_dir": str(tmp_path / "borgbase")}}).json
    bj = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "data", "paths": [str(data)],
                                           "exclude": ["*.tmp"], "passphrase": PASS}).json
    start_worker(1)

    resp = op.post(f"/api/servers/{cl['id']}/setup")
    assert resp.status_code == 202
    job = wait_job(db, resp.json["job_id"])
    assert job["status"] == "succeeded", (job["error"], log_of(api, job["id"]))

    resp = op.post(f"/api/backup-jobs/{bj['id']}/run")
    assert resp.status_code == 202
    job = wait_job(db, resp.json["job_id"])
    log = log_of(api, job["id"])
    assert job["status"] == "succeeded", (job["error"], log)
    assert "PLAY RECAP" in log and PASS not in log

    archives = api("viewer").get("/api/archives", query_string={"backup_job_id": bj["id"]}).json["items"]
    assert len(archives) == 1
    a = archives[0]
    assert a["name"].startswith("data-") and a["client_name"] == "e2e-local" and a["server_name"] == "local"
    assert a["nfiles"] == 2 and a["original_size"] >= 206_000 and a["deduplicated_size"] > 0

    repo = BorgRepo(bj["location"], PASS, base_dir=tmp_path / "borgbase")
    assert repo.archive_names() == [a["name"]]
    stored = repo.paths(a["name"])
    assert str(data / "a.txt").lstrip("/") in stored and not any(p.endswith("skip.tmp") for p in stored)
    out = repo.extract(a["name"], tmp_path / "restore")
    assert filecmp.cmp(data / "sub" / "b.bin", out / str(data / "sub" / "b.bin").lstrip("/"), shallow=False)

    resp = op.delete(f"/api/archives/{a['id']}")
    assert resp.status_code == 202
    job = wait_job(db, resp.json["job_id"])
    assert job["status"] == "succeeded", (job["error"], log_of(api, job["id"]))
    assert api("viewer").get(f"/api/archives/{a['id']}").status_code == 404
    assert repo.archive_names() == []

    op.delete(f"/api/backup-jobs/{bj['id']}")
    op.delete(f"/api/servers/{cl['id']}")


def log_of(api, job_id):
    return "\n".join(api("viewer").get(f"/api/jobs/{job_id}/log").json["lines"])
