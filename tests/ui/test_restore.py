"""Restore from the service through its API, for real: browse.yml, search.yml and restore_anywhere.yml
run by a worker (ansible-runner) against local-connection clients and real borg repositories.
Browse level by level, a file's versions, a dry run that writes nothing, two files restored to
another directory and compared with cmp, in place refused on a changed file and then replaced with
a copy kept, onto another client; roles and refused requests."""
import json
import subprocess

from borgfleet_ui import db as dbm
from restorelib import NEW, OLD, PASS, MANY, drop_source, make_source, run_job


def cmp(a, b):
    return subprocess.run(["cmp", str(a), str(b)], capture_output=True).returncode == 0


def test_browse_versions_and_restore_anywhere(api, db, start_worker, tmp_path):
    start_worker(1)
    s = make_source(api, db, tmp_path)
    new, old, prefix, data = s["archives"][NEW], s["archives"][OLD], s["prefix"], s["data"]

    # Browse: the top of the archive, then the backed-up directory (directories first), as a viewer.
    top = run_job(api, db, "viewer", f"/api/archives/{new}/browse", {"path": ""})["result"]
    assert top["archive"] == NEW and [e["name"] for e in top["entries"]] == [prefix.split("/")[0]]
    assert top["entries"][0]["type"] == "d"
    level = run_job(api, db, "viewer", f"/api/archives/{new}/browse", {"path": "/" + prefix})["result"]
    assert [e["name"] for e in level["entries"]] == ["many", "sub", "a.txt", "b.txt"] and not level["truncated"]
    b = level["entries"][3]
    assert b["path"] == f"{prefix}/b.txt" and b["type"] == "-" and b["size"] == 256 * 40
    assert b["mode"] == "-rw-r--r--" and b["user"] == "root" and b["mtime"].startswith("20")
    many = run_job(api, db, "viewer", f"/api/archives/{new}/browse", {"path": f"{prefix}/many"})["result"]
    assert len(many["entries"]) == MANY

    # Versions of a.txt: in both archives, added in the old one, modified in the new one.
    found = run_job(api, db, "viewer", f"/api/backup-jobs/{s['bj']['id']}/search",
                    {"path": f"{prefix}/a.txt"})["result"]
    assert found["archives_searched"] == 2 and len(found["found"]) == 1
    changes = found["found"][0]["changes"]
    assert [(c["archive"], c["change"]) for c in changes] == [(OLD, "added"), (NEW, "modified")]
    assert [v["size"] for v in found["found"][0]["archives"]] == [4, 16]

    # A viewer browses but does not restore; bad requests are refused before anything is queued.
    two = {"paths": [f"{prefix}/a.txt", f"{prefix}/b.txt"]}
    assert api("viewer").post(f"/api/archives/{new}/restore", json=two).status_code == 403
    for bad in ({"paths": []}, {"paths": ["../etc/passwd"]}, {"paths": [f"{prefix}/a.txt"], "target": "rel/dir"},
                {"paths": [f"{prefix}/a.txt\n"]}, {"paths": [f"{prefix}/a.txt"], "client_id": s["bj"]["id"] + 10**6},
                {"paths": [f"{prefix}/a.txt"], "overwrite": "yes"}):
        resp = api("operator").post(f"/api/archives/{new}/restore", json=bad)
        assert resp.status_code == 400, (bad, resp.json)

    # Dry run into another directory: lists the two files, writes nothing.
    dest = tmp_path / "restored"
    dry = run_job(api, db, "operator", f"/api/archives/{new}/restore", dict(two, target=str(dest), dry_run=True))
    r = dry["result"]
    assert r["dry_run"] is True and r["nfiles"] == 2 and r["host"] == "rs-src" and r["refused"] is False
    assert sorted(r["files"]) == [f"{dest}/{prefix}/a.txt", f"{dest}/{prefix}/b.txt"]
    assert not dest.exists()

    # For real: the two files, byte for byte (cmp) against the source, nothing else.
    job = run_job(api, db, "operator", f"/api/archives/{new}/restore", dict(two, target=str(dest)))
    assert job["result"]["dry_run"] is False and job["result"]["nfiles"] == 2
    for name in ("a.txt", "b.txt"):
        assert cmp(dest / prefix / name, data / name), name
    assert sorted(p.name for p in (dest / prefix).iterdir()) == ["a.txt", "b.txt"]
    row = dbm.query(db, "SELECT params_json FROM jobs WHERE id=%s", (job["id"],), one=True)
    assert json.loads(row["params_json"])["lock"] == "rs-src/data"   # under the repository's lock
    log = "\n".join(api("viewer").get(f"/api/jobs/{job['id']}/log").json["lines"])
    assert "borgfleet restore_anywhere result" in log and PASS not in log

    # Onto the other client: it reads rs-src's repository itself (its own borg base dir).
    elsewhere = tmp_path / "on-other"
    job = run_job(api, db, "operator", f"/api/archives/{new}/restore",
                  {"paths": [f"{prefix}/a.txt", f"{prefix}/sub"], "target": str(elsewhere),
                   "client_id": s["other"]["id"]})
    assert job["result"]["host"] == "rs-other" and job["server_name"] == "rs-other"
    assert cmp(elsewhere / prefix / "a.txt", data / "a.txt")
    assert cmp(elsewhere / prefix / "sub" / "c.txt", data / "sub" / "c.txt")
    assert (tmp_path / "rs-other-base").is_dir()

    # In place, from the old archive: a.txt changed since, so the restore is refused and nothing written.
    back = {"paths": [f"{prefix}/a.txt", f"{prefix}/b.txt"], "target": "/"}
    job = run_job(api, db, "operator", f"/api/archives/{old}/restore", back, status="failed")
    r = job["result"]
    assert r["refused"] is True and r["conflicts"] == [str(data / "a.txt")] and r["skipped"] == 1, r
    assert "differ from archive" in job["error"]
    assert (data / "a.txt").read_text() == "two, and longer\n"

    # With overwrite: a.txt is the old one again, the replaced one kept under backup_dir; b.txt untouched.
    keep = tmp_path / "kept"
    job = run_job(api, db, "operator", f"/api/archives/{old}/restore",
                  dict(back, overwrite=True, backup_dir=str(keep)))
    r = job["result"]
    assert r["replaced"] == [str(data / "a.txt")] and r["backup_dir"] == str(keep) and r["skipped"] == 1
    assert (data / "a.txt").read_text() == "one\n"
    assert (keep / prefix / "a.txt").read_text() == "two, and longer\n"
    s["repo"].extract(OLD, tmp_path / "raw", f"{prefix}/a.txt")
    assert cmp(tmp_path / "raw" / prefix / "a.txt", data / "a.txt")
    drop_source(api, s)
