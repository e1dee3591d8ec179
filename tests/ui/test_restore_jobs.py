"""Restore from the service through its API, for real: browse.yml, search.yml and restore_anywhere.yml
run by a worker (ansible-runner) against local-connection clients and real borg repositories.
Browse level by level, a file's versions, a dry run that writes nothing, two files restored to
another directory and compared with cmp, in place refused on a changed file and then replaced with
a copy kept, onto another client; roles and refused requests."""
import json
import re
import subprocess

from borgfleet_ui import db as dbm
from restorelib import NEW, OLD, PASS, MANY, drop_source, make_source, run_job
from uilib import wait_job


def cmp(a, b):
    return subprocess.run(["cmp", str(a), str(b)], capture_output=True).returncode == 0


def logged_in(app, user):
    """A test client logged in to the pages (session and CSRF token) as a browser without JavaScript."""
    c = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").get_data(as_text=True)).group(1)
    assert c.post("/login", data={"username": user[0], "password": user[1], "csrf_token": csrf}).status_code == 302
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").get_data(as_text=True)).group(1)
    return c, csrf


def test_browse_versions_and_restore_anywhere(api, app, users, db, start_worker, tmp_path):
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
    c, csrf = logged_in(app, users["operator"])
    html = c.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert 'id="conflicts"' in html and "the restore was refused" in html and str(data / "a.txt") in html
    assert r["paths"] == back["paths"] and r["overwrite"] is False   # what was asked, to ask again
    again = re.search(r'<form[^>]*id="restore-again".*?</form>', html, re.S).group(0)
    assert 'name="overwrite" value="1"' in again and "Replace them, keeping a copy" in again
    assert again.count('name="sel"') == 2 and 'name="where" value="original"' in again

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
    html = c.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert "and were replaced" in html and f'<code id="backup-dir">{keep}</code>' in html

    # The pages without JavaScript: the first browse of an archive queues its index job, the page
    # refreshes by itself until the job ends, then lists the level from the index; a selection travels
    # in the URL and the forms.
    resp = c.post(f"/archives/{new}/browse", data={"open": prefix, "sel": [f"{prefix}/b.txt"], "csrf_token": csrf})
    assert resp.status_code == 302
    first = c.get(resp.headers["Location"]).get_data(as_text=True)   # a playbook run takes seconds
    assert 'data-wait-job' in first and '<noscript><meta http-equiv="refresh"' in first
    job_id = re.search(r'data-wait-job="([0-9a-f-]{36})"', first).group(1)
    assert dbm.query(db, "SELECT kind FROM jobs WHERE id=%s", (job_id,), one=True)["kind"] == "index_archive"
    assert wait_job(db, job_id)["status"] == "succeeded"
    html = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert f'data-path="{prefix}/a.txt"' in html and "1 selected" in html
    assert re.search(rf'value="{re.escape(prefix)}/b.txt" aria-label="Select b.txt" checked', html)
    # Then every level and page is answered from the index, no job queued.
    jobs = dbm.query(db, "SELECT COUNT(*) AS n FROM jobs", one=True)["n"]
    resp = c.post(f"/archives/{new}/browse", data={"open": f"{prefix}/many", "csrf_token": csrf})
    html = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert html.count('data-path="') == 100 and "page 1 of 2" in html
    resp = c.post(f"/archives/{new}/browse", data={"cur": f"{prefix}/many", "page": "2", "csrf_token": csrf})
    html = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert html.count('data-path="') == MANY - 100 and f'data-path="{prefix}/many/f129.txt"' in html
    assert dbm.query(db, "SELECT COUNT(*) AS n FROM jobs", one=True)["n"] == jobs
    wizard = c.post(f"/archives/{new}/restore", data={"sel": [f"{prefix}/b.txt", f"{prefix}/a.txt"],
                                                     "csrf_token": csrf}).get_data(as_text=True)
    assert wizard.count('name="sel"') == 2 and 'id="dry-run"' in wizard
    viewer, vcsrf = logged_in(app, users["viewer"])
    assert viewer.post(f"/archives/{new}/restore", data={"sel": [f"{prefix}/b.txt"], "csrf_token": vcsrf}).status_code == 403
    drop_source(api, s)
