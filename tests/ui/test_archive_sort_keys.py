"""The archives list sorted by client or by backup server reads copies of those names kept on each
archive row (fleet/archives.py OWNER_KEYS, migration 0961): they are written by the recorders that
write archive rows and follow a backup server's rename, so the order is always the names' order."""
import pytest

from borgfleet_ui import db as dbm, queue as q, results
from borgfleet_ui.fleet.archives import ARCHIVE_JOINS, OWNER_KEYS


def _pages(caller, **params):
    """Every archive of the list in that order, two a page (so every page after the first follows a cursor)."""
    items, before = [], None
    while True:
        cursor = {"before": before} if before else {}
        resp = caller.get("/api/archives", query_string={**params, "limit": 2, **cursor})
        assert resp.status_code == 200, resp.json
        items += resp.json["items"]
        before = resp.json["next_before"]
        if not before:
            return items


def _mine(items, ids):
    return [(a["client_name"], a["backup_name"], a["server_name"], a["name"]) for a in items if a["id"] in ids]


@pytest.fixture()
def fleet(api):
    admin, op = api("admin"), api("operator")
    made = []

    def server(**kw):
        made.append(admin.post("/api/servers", json=kw).json)
        assert "id" in made[-1], made[-1]
        return made[-1]
    bs_m = server(name="srtk-m", role="backup_server", address="192.0.2.31", pools=[{"name": "main", "path": "/srv/m"}])
    bs_z = server(name="srtk-z", role="backup_server", address="192.0.2.32", pools=[{"name": "main", "path": "/srv/z"}])
    c1 = server(name="srtk-c1", role="client", address="192.0.2.33", backup_server_id=bs_z["id"])
    c2 = server(name="srtk-c2", role="client", address="192.0.2.34", backup_server_id=bs_m["id"])
    bjs = [op.post("/api/backup-jobs", json={"client_id": c["id"], "name": n, "paths": ["/etc"],
                                             "passphrase": "p" * 12}).json for c, n in ((c1, "b"), (c2, "a"))]
    assert all("repository_id" in b for b in bjs), bjs
    yield {"bs_m": bs_m, "bs_z": bs_z, "bjs": bjs}
    for b in bjs:
        op.delete(f"/api/backup-jobs/{b['id']}")
    for s in reversed(made):
        op.delete(f"/api/servers/{s['id']}")


def test_client_and_server_sorts_follow_the_names(api, db, fleet):
    bj1, bj2 = fleet["bjs"]
    # Archives written as the service writes them: a backup's report, then a listing that adds one.
    for bj, names in ((bj1, ("b-1", "b-2")), (bj2, ("a-1",))):
        params = {"repository_id": bj["repository_id"], "extravars": {"borgfleet_backup": bj["name"]}}
        job = q.create_job_row(db, "backup", backup_job_id=bj["id"], status="succeeded")
        results.record(db, {"id": job, "kind": "backup"}, params,
                       [{"backup": bj["name"], "archive": {"name": names[0], "start": "2026-01-02T03:04:05.000000",
                                                           "stats": {"nfiles": 3, "original_size": 10}}}])
        results.record(db, {"id": job, "kind": "list_archives"}, params,
                       [{"backup": bj["name"], "archives": [{"name": n} for n in names]}])
    ids = {r["id"] for r in dbm.query(db, "SELECT id FROM archives WHERE repository_id IN (%s, %s)",
                                      (bj1["repository_id"], bj2["repository_id"]))}
    assert len(ids) == 3

    def stored_equal_joined():
        # Each row's copies equal the names read through the joins.
        rows = dbm.query(db, "SELECT " + ", ".join(f"a.{col} = {expr} AS {col}" for col, expr in OWNER_KEYS.items())
                         + f" FROM archives a{ARCHIVE_JOINS} WHERE a.id IN %s", (sorted(ids),))
        return len(rows) == 3 and all(all(r.values()) for r in rows)
    assert stored_equal_joined()

    viewer = api("viewer")
    by_client = _mine(_pages(viewer, sort="client"), ids)
    assert [(c, b) for c, b, _, _ in by_client] == [("srtk-c1", "b")] * 2 + [("srtk-c2", "a")]
    desc = _mine(_pages(viewer, sort="client", order="desc"), ids)
    assert [(c, b) for c, b, _, _ in desc] == [("srtk-c2", "a")] + [("srtk-c1", "b")] * 2
    assert [s for _, _, s, _ in _mine(_pages(viewer, sort="server"), ids)] == ["srtk-m", "srtk-z", "srtk-z"]

    # Renaming a backup server moves its archives in the server order.
    resp = api("admin").put(f"/api/servers/{fleet['bs_m']['id']}", json={"name": "srtk-zz"})
    assert resp.status_code == 200, resp.json
    assert stored_equal_joined()
    assert [s for _, _, s, _ in _mine(_pages(viewer, sort="server"), ids)] == ["srtk-z", "srtk-z", "srtk-zz"]
    # The search path (sorted through the joins' filter) agrees with the indexed one.
    assert [s for _, _, s, _ in _mine(_pages(viewer, sort="server", q="srtk"), ids)] == ["srtk-z", "srtk-z", "srtk-zz"]
