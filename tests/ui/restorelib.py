"""A source client with two archives of a small tree, and a second client, for the restore tests
(tests/ui/test_restore*.py): local-connection clients whose repositories are written with raw borg,
then read into the service by its own list_archives run."""
from pathlib import Path

from tests.lib.borgrepo import BorgRepo
from uilib import wait_job

OLD, NEW = "data-2026-11-24T02:00:00", "data-2026-11-25T02:00:00"
PASS = "restore-pass-123"
MANY = 130   # more entries than a browse page shows (views_restore.PER_PAGE)


def run_job(api, db, role, url, body=None, status="succeeded", timeout=300):
    """POST url (202), wait for the job; returns it as GET /api/jobs/{id} shows it."""
    resp = api(role).post(url, json=body if body is not None else {})
    assert resp.status_code == 202, resp.json
    row = wait_job(db, resp.json["job_id"], timeout=timeout)
    job = api("viewer").get(f"/api/jobs/{row['id']}").json
    assert row["status"] == status, (row["error"], job["result"],
                                     "\n".join(api("viewer").get(f"/api/jobs/{row['id']}/log").json["lines"][-30:]))
    return job


def make_source(api, db, root, name="rs"):
    """Clients <name>-src (backed up) and <name>-other; archives OLD (a.txt "one") and NEW (a.txt changed),
    both known to the service. Returns dict(src, other, bj, data, prefix, archives {name: id}, repo)."""
    data = Path(root) / f"{name}-data"
    (data / "sub").mkdir(parents=True)
    (data / "many").mkdir()
    (data / "a.txt").write_text("one\n")
    (data / "b.txt").write_bytes(bytes(range(256)) * 40)
    (data / "sub" / "c.txt").write_text("in a subdirectory\n")
    for i in range(MANY):
        (data / "many" / f"f{i:03d}.txt").write_text(f"file {i}\n")
    admin = api("admin")
    clients = {}
    for role in ("src", "other"):
        resp = admin.post("/api/servers", json={
            "name": f"{name}-{role}", "role": "client", "connection": "local",
            "local_pool_path": str(Path(root) / f"{name}-{role}-repos"),
            "vars": {"borgfleet_borg_base_dir": str(Path(root) / f"{name}-{role}-base")}})
        assert resp.status_code == 201, resp.json
        clients[role] = resp.json
    bj = api("operator").post("/api/backup-jobs", json={"client_id": clients["src"]["id"], "name": "data",
                                                        "paths": [str(data)], "passphrase": PASS})
    assert bj.status_code == 201, bj.json
    repo = BorgRepo(bj.json["location"], PASS, base_dir=Path(root) / f"{name}-src-base")
    Path(bj.json["location"]).parent.mkdir(parents=True)
    repo.run("init", "--encryption", "repokey-blake2", bj.json["location"])
    repo.create(OLD, data, timestamp="2026-11-24T02:00:00")
    (data / "a.txt").write_text("two, and longer\n")
    repo.create(NEW, data, timestamp="2026-11-25T02:00:00")
    run_job(api, db, "operator", f"/api/backup-jobs/{bj.json['id']}/refresh-archives")
    items = api("viewer").get("/api/archives", query_string={"backup_job_id": bj.json["id"]}).json["items"]
    archives = {a["name"]: a["id"] for a in items}
    assert sorted(archives) == [OLD, NEW]
    return dict(src=clients["src"], other=clients["other"], bj=bj.json, data=data,
                prefix=str(data).lstrip("/"), archives=archives, repo=repo)


def drop_source(api, s):
    api("operator").delete(f"/api/backup-jobs/{s['bj']['id']}")
    for role in ("src", "other"):
        api("operator").delete(f"/api/servers/{s[role]['id']}")
