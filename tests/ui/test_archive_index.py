"""The archive index, for real: archives written with raw borg, indexed by the service's index_archive
job (borg list on the client into a compressed file fetched by the worker, loaded into MariaDB), then
compared item by item with `borg list --json-lines` run directly; levels and versions answered from the
index through the API; the index removed with its archives (delete, prune, refresh-archives); and a
backup through the service indexing its new archive as a follow-up."""
import json
import os
from pathlib import Path

from borgfleet_ui import db as dbm
from restorelib import run_job
from tests.lib.borgrepo import BorgRepo
from uilib import drop_local_backup, make_local_backup, set_up_and_back_up, wait_for, wait_job

PASS = "index-pass-123"
A1, A2, A3 = "data-2026-11-23T02:00:00", "data-2026-11-24T02:00:00", "data-2026-11-25T02:00:00"
ODD = ["résumé Ωmega.txt", "100% done_ok and more.txt", "50%_off dir"]


def make_tree(data):
    """Nested directories, symlinks (one dangling), a hard link, a FIFO, an empty directory, another
    owner and mode, and names with non-ASCII letters, '%', '_' and spaces."""
    (data / "deep" / "er" / "est").mkdir(parents=True)
    (data / "deep" / "er" / "est" / "leaf.txt").write_text("leaf\n")
    (data / "deep" / "top.txt").write_text("top\n")
    (data / "empty").mkdir()
    (data / "a.txt").write_text("one\n")
    (data / ODD[0]).write_text("accents\n")
    (data / ODD[1]).write_text("percent and underscore\n")
    (data / ODD[2]).mkdir()
    (data / ODD[2] / "x_%y z.txt").write_text("inside\n")
    (data / "link").symlink_to("a.txt")
    (data / "dangling").symlink_to("/nonexistent/target")
    os.link(data / "deep" / "top.txt", data / "hard.txt")
    os.mkfifo(data / "fifo")
    other = data / "theirs.txt"
    other.write_text("owned by nobody\n")
    os.chown(other, 65534, 65534)
    other.chmod(0o640)


def borg_items(repo, archive):
    """{path: (type, size, mode, user, group, mtime, linktarget)} as borg lists them."""
    out = repo.run("list", "--json-lines", repo.archive(archive)).stdout
    items = {}
    for line in out.splitlines():
        i = json.loads(line)
        items[i["path"]] = (i["type"], i["size"], i["mode"], str(i["user"]), str(i["group"]), i["mtime"],
                            i["linktarget"])
    return items


def index_items(viewer, aid):
    """Every entry of the indexed archive, walked level by level through GET /api/archives/{id}/tree:
    ({path: the same tuple}, {paths of implied parents})."""
    items, implied, todo = {}, set(), [""]
    while todo:
        path = todo.pop()
        page, pages = 1, 1
        while page <= pages:
            resp = viewer.get(f"/api/archives/{aid}/tree", query_string={"path": path, "page": page, "per_page": 1000})
            assert resp.status_code == 200, resp.json
            level = resp.json
            for e in level["entries"]:
                if e["mode"] is None:
                    implied.add(e["path"])
                else:
                    items[e["path"]] = (e["type"], e["size"], e["mode"], e["user"], e["group"], e["mtime"],
                                        e["linktarget"])
                if e["type"] == "d":
                    todo.append(e["path"])
            page, pages = page + 1, level["pages"]
    return items, implied


def repo_rows(db, bj_id):
    """(archives indexed, index listings) of the backup job's repository."""
    r = dbm.query(db, "SELECT id FROM repositories WHERE backup_job_id=%s", (bj_id,), one=True)["id"]
    ix = dbm.query(db, "SELECT COUNT(*) AS n FROM index_archives i JOIN archives a ON a.id=i.archive_id"
                       " WHERE a.repository_id=%s", (r,), one=True)["n"]
    return ix, dbm.query(db, "SELECT COUNT(*) AS n FROM index_listings WHERE repository_id=%s", (r,), one=True)["n"]


def test_index_equals_borg_list_answers_and_goes_with_its_archives(api, db, start_worker, tmp_path, ui_env):
    start_worker(1)
    data = tmp_path / "ix-data"
    data.mkdir()
    make_tree(data)
    prefix = str(data).lstrip("/")
    cl = api("admin").post("/api/servers", json={
        "name": "ix-src", "role": "client", "connection": "local", "local_pool_path": str(tmp_path / "ix-repos"),
        "vars": {"borgfleet_borg_base_dir": str(tmp_path / "ix-base")}}).json
    bj = api("operator").post("/api/backup-jobs", json={"client_id": cl["id"], "name": "data", "paths": [str(data)],
                                                        "passphrase": PASS}).json
    repo = BorgRepo(bj["location"], PASS, base_dir=tmp_path / "ix-base")
    Path(bj["location"]).parent.mkdir(parents=True)
    repo.run("init", "--encryption", "repokey-blake2", bj["location"])
    repo.create(A1, data, timestamp="2026-11-23T02:00:00")
    (data / "a.txt").write_text("two, and longer\n")
    repo.create(A2, data, timestamp="2026-11-24T02:00:00")
    (data / "deep" / "er" / "est" / "new.txt").write_text("new\n")
    repo.create(A3, data, timestamp="2026-11-25T02:00:00")
    run_job(api, db, "operator", f"/api/backup-jobs/{bj['id']}/refresh-archives")
    ids = {a["name"]: a["id"] for a in api("viewer").get("/api/archives", query_string={"backup_job_id": bj["id"]}).json["items"]}
    viewer = api("viewer")

    # Not indexed yet: the tree says so (409); a viewer queues the index job; once indexed, 200 at once.
    assert viewer.get(f"/api/archives/{ids[A3]}/tree").status_code == 409
    for name in (A1, A2, A3):
        job = run_job(api, db, "viewer", f"/api/archives/{ids[name]}/index")
        assert job["result"]["items"] == len(borg_items(repo, name)), job["result"]
    again = viewer.post(f"/api/archives/{ids[A3]}/index")
    assert again.status_code == 200 and again.json["indexed"] is True
    # The items file was loaded, then deleted; nothing of it is left in the worker's run directory.
    assert not [p for p in Path(ui_env["RUN_DIR"]).rglob("items.jsonl.gz")]

    # The index equals borg list: every path with its type, size, mode, owner, mtime and link target;
    # the parents of the backed-up directory (no item in borg) are implied directories.
    for name in (A1, A3):
        items, implied = index_items(viewer, ids[name])
        assert items == borg_items(repo, name), name
        parts = prefix.split("/")
        assert implied == {"/".join(parts[:i]) for i in range(1, len(parts))}
    listed = borg_items(repo, A3)
    assert listed[f"{prefix}/link"][6] == "a.txt" and listed[f"{prefix}/fifo"][0] == "p"
    assert listed[f"{prefix}/theirs.txt"][2:5] == ("-rw-r-----", "nobody", "nogroup")

    # A level: directories first, then files, by name; paged.
    level = viewer.get(f"/api/archives/{ids[A3]}/tree", query_string={"path": "/" + prefix}).json
    names = [e["name"] for e in level["entries"]]
    assert names == ["50%_off dir", "deep", "empty", "100% done_ok and more.txt", "a.txt", "dangling", "fifo",
                     "hard.txt", "link", "résumé Ωmega.txt", "theirs.txt"], names
    assert level["total"] == 11 and level["pages"] == 1
    two = viewer.get(f"/api/archives/{ids[A3]}/tree", query_string={"path": prefix, "page": 2, "per_page": 4}).json
    assert [e["name"] for e in two["entries"]] == names[4:8] and two["pages"] == 3
    odd = viewer.get(f"/api/archives/{ids[A3]}/tree", query_string={"path": f"{prefix}/{ODD[2]}"}).json
    assert [e["path"] for e in odd["entries"]] == [f"{prefix}/{ODD[2]}/x_%y z.txt"]
    assert viewer.get(f"/api/archives/{ids[A3]}/tree", query_string={"path": f"{prefix}/a.txt"}).status_code == 404

    # Versions from the index: a.txt added, then modified; new.txt only in the newest archive; a glob with
    # '%' and '_' in it matches those characters only (no SQL wildcard).
    v = viewer.get(f"/api/backup-jobs/{bj['id']}/versions", query_string={"path": f"{prefix}/a.txt"}).json
    assert v["archives_searched"] == 3 and v["archives_not_indexed"] == 0 and len(v["found"]) == 1
    assert [(c["archive"], c["change"]) for c in v["found"][0]["changes"]] == [(A1, "added"), (A2, "modified")]
    assert [(x["archive"], x["size"]) for x in v["found"][0]["archives"]] == [(A1, 4), (A2, 16), (A3, 16)]
    v = viewer.get(f"/api/backup-jobs/{bj['id']}/versions", query_string={"path": f"{prefix}/deep/er/est/new.txt"}).json
    assert [(c["archive"], c["change"]) for c in v["found"][0]["changes"]] == [(A3, "added")]
    v = viewer.get(f"/api/backup-jobs/{bj['id']}/versions", query_string={"path": f"{prefix}/*%_*"}).json
    assert [f["path"] for f in v["found"]] == [f"{prefix}/{ODD[2]}", f"{prefix}/{ODD[2]}/x_%y z.txt"]
    v = viewer.get(f"/api/backup-jobs/{bj['id']}/versions", query_string={"path": f"{prefix}/*% *"}).json
    assert [f["path"] for f in v["found"]] == [f"{prefix}/{ODD[1]}"] and len(v["found"][0]["archives"]) == 3
    v = viewer.get(f"/api/backup-jobs/{bj['id']}/versions", query_string={"path": f"{prefix}/{ODD[0]}"}).json
    assert [x["size"] for x in v["found"][0]["archives"]] == [len("accents\n".encode())] * 3
    v = viewer.get(f"/api/backup-jobs/{bj['id']}/versions", query_string={"path": f"{prefix}/d%"}).json
    assert v["found"] == []

    # Unchanged directories are stored once: A2 added only the listings of a.txt's parents, A3 those of
    # new.txt's (deep/er/est, deep/er, deep, and the parents).
    added = {r["archive_id"]: r["new_listings"] for r in dbm.query(db, "SELECT * FROM index_archives")}
    depth = len(prefix.split("/"))
    assert added[ids[A2]] == depth + 1 and added[ids[A3]] == depth + 4, (added, depth)

    # Deleted through the service: its index goes, and the listings only it reached.
    resp = api("operator").delete(f"/api/archives/{ids[A3]}")
    assert resp.status_code == 202 and wait_job(db, resp.json["job_id"])["status"] == "succeeded"
    assert repo_rows(db, bj["id"]) == (2, added[ids[A1]] + added[ids[A2]])
    # Pruned (keep one daily: A1 goes): only A2's listings are left, each reached.
    assert api("operator").put(f"/api/backup-jobs/{bj['id']}", json={"retention": {"daily": 1}}).status_code == 200
    run_job(api, db, "operator", f"/api/backup-jobs/{bj['id']}/prune")
    assert repo.archive_names() == [A2]
    a2_dirs = dbm.query(db, "SELECT dirs FROM index_archives WHERE archive_id=%s", (ids[A2],), one=True)["dirs"]
    assert repo_rows(db, bj["id"]) == (1, a2_dirs)
    assert viewer.get(f"/api/archives/{ids[A2]}/tree", query_string={"path": prefix}).json["total"] == 11
    # Gone from borg behind the service's back: refresh-archives drops the row, and the index with it.
    repo.run("delete", repo.archive(A2))
    run_job(api, db, "operator", f"/api/backup-jobs/{bj['id']}/refresh-archives")
    assert repo_rows(db, bj["id"]) == (0, 0)
    drop_local_backup(api, cl, bj)


def test_backup_indexes_its_archive(api, db, start_worker, tmp_path):
    """After a backup through the service, its archive is indexed as a follow-up; a backup job's deletion
    takes its whole index along."""
    start_worker(1, env={"BORGFLEET_INDEX_AFTER_BACKUP": "1"})
    cl, bj = make_local_backup(api, tmp_path, "ixb", files={"f.txt": b"x" * 1000, "g h%_.txt": b"y"})
    try:
        job = set_up_and_back_up(api, db, cl, bj)
        follow = wait_for(lambda: dbm.query(db, "SELECT id FROM jobs WHERE kind='index_archive' AND archive_id=%s",
                                            (job["archive_id"],), one=True), what="the index job after the backup")
        assert wait_job(db, follow["id"])["status"] == "succeeded"
        prefix = str(tmp_path / "ixb-data").lstrip("/")
        level = api("viewer").get(f"/api/archives/{job['archive_id']}/tree", query_string={"path": prefix}).json
        assert [(e["name"], e["size"]) for e in level["entries"]] == [("f.txt", 1000), ("g h%_.txt", 1)]
        assert repo_rows(db, bj["id"])[0] == 1
    finally:
        drop_local_backup(api, cl, bj)
    assert dbm.query(db, "SELECT COUNT(*) AS n FROM index_archives WHERE archive_id=%s", (job["archive_id"],),
                     one=True)["n"] == 0
