"""Lists that sort and filter on the server (fleet/common.py Listing), and forms judged inline by the
dry run of their own operation (forms.py, POST /api/validate/<form>): the helper's pure logic, the
API and pages against the real MariaDB, and one walk in Chromium (screenshots in tests/output/look/)."""
import re
from pathlib import Path

import pytest

from test_browser import browser, login, web  # noqa: F401  (fixtures: Chromium and the web process)

from borgfleet_ui import db as dbm
from borgfleet_ui.fleet.common import Invalid, ListArgs, Listing, list_args, list_query, like_pattern

OUT = Path(__file__).resolve().parents[1] / "output" / "look"

TOY = Listing(source="FROM t", key="t.id", sorts={"name": ("t.name", "asc"), "size": ("COALESCE(t.size, -1)", "desc")},
              search=("t.name", "t.note"), choices={"status": ("t.status", ("ok", "failed")),
                                                    "state": {"none": "t.state IS NULL"}},
              ids={"owner_id": "t.owner_id"})


# --- the helper's logic ---

def test_sort_keys_orders_and_filter_values_are_whitelisted():
    for bad in ({"sort": "name; DROP TABLE t"}, {"sort": "t.name"}, {"order": "up"}, {"status": "gone"},
                {"state": "1=1"}, {"owner_id": "1 OR 1"}, {"q": "x" * 101}):
        with pytest.raises(Invalid) as err:
            list_args(TOY, bad)
        assert err.value.field == next(iter(bad)), bad
    la = list_args(TOY, {"sort": "size", "q": "  a b ", "status": "failed", "owner_id": "7"})
    assert la == ListArgs("size", "desc", "a b", {"status": "failed", "state": "", "owner_id": 7})
    # Every part of the SQL text comes from the Listing; what the request typed is only a parameter.
    evil = list_args(TOY, {"sort": "name", "order": "desc", "q": "x' OR '1'='1", "state": "none"})
    sql, args = list_query(TOY, "t.*", evil, before=42, limit=10)
    assert "OR '1'" not in sql and "x' OR '1'='1" in args[0]
    assert sql == ("SELECT t.* FROM t WHERE 1=1 AND t.state IS NULL AND (t.name LIKE %s ESCAPE '!' OR t.note LIKE"
                   " %s ESCAPE '!') AND (t.name, t.id) < ((SELECT t.name FROM t WHERE t.id=%s), %s)"
                   " ORDER BY t.name DESC, t.id DESC LIMIT %s")
    assert args[2:] == [42, 42, 10]
    # The default order: the key alone, newest first; a cursor is a plain comparison on it.
    sql, args = list_query(TOY, "t.*", list_args(TOY, {}), before=5, limit=3)
    assert sql.endswith("AND t.id < %s ORDER BY t.id DESC LIMIT %s") and args == [5, 3]


def test_search_text_is_literal_in_like():
    assert like_pattern("50%_a!b") == "%50!%!_a!!b%"
    assert like_pattern("plain") == "%plain%"


def test_header_link_and_pager_keep_the_other_arguments():
    la = list_args(TOY, {"sort": "name", "q": "web", "status": "ok"})
    assert la.toggle("name") == {"sort": "name", "order": "desc", "q": "web", "status": "ok"}
    assert la.toggle("size") == {"sort": "size", "q": "web", "status": "ok"}   # its own first order
    assert la.query(before=9) == {"sort": "name", "order": "asc", "q": "web", "status": "ok", "before": 9}


# --- the API and the pages against MariaDB ---

@pytest.fixture()
def fleet_rows(api, db):
    """Backup servers named with _ and %, a client with backup jobs and archives, jobs of each status."""
    from borgfleet_ui import queue as q
    admin, op = api("admin"), api("operator")
    names = ["lst_b", "lst-a", "lstxc", "lst%d"]
    servers = [admin.post("/api/servers", json={"name": n.replace("%", "p"), "role": "backup_server",
                                                "address": f"127.0.1.{i + 1}"}).json for i, n in enumerate(names)]
    cl = admin.post("/api/servers", json={"name": "lst-client", "role": "client", "connection": "local",
                                          "local_pool_path": "/var/tmp/lst"}).json
    bjs = [op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": n, "paths": ["/etc"],
                                             "passphrase": "p" * 12, "schedule": s}).json
           for n, s in (("web", "0 3 * * *"), ("db_x", None), ("mail", "0 1 * * *"))]
    assert all("id" in b for b in bjs), bjs
    sizes = [5, 300, 40, None, 7000, 12]
    with db.cursor() as cur:
        cur.executemany("INSERT INTO archives (repository_id, name, original_size, nfiles) VALUES (%s, %s, %s, %s)",
                        [(bjs[0]["repository_id"], f"web-{i:02d}", s, i) for i, s in enumerate(sizes)])
    jobs = [q.create_job_row(db, "backup", backup_job_id=bjs[1]["id"], status=s, error=e)
            for s, e in (("failed", "disk 100% full"), ("succeeded", None), ("failed", "no_route"))]
    yield {"servers": servers, "client": cl, "bjs": bjs, "jobs": jobs}
    for b in bjs:
        op.delete(f"/api/backup-jobs/{b['id']}")
    for s in servers + [cl]:
        op.delete(f"/api/servers/{s['id']}")


def _all_pages(caller, path, **params):
    """Every item of a paged list, following next_before."""
    items, before = [], None
    while True:
        resp = caller.get(path, query_string={**params, **({"before": before} if before else {})})
        assert resp.status_code == 200, resp.json
        items += resp.json["items"]
        before = resp.json["next_before"]
        if not before:
            return items


def by_name(db, servers):
    """The names in MariaDB's own order (its collation puts _ after the letters, - before them)."""
    return [r["name"] for r in dbm.query(db, "SELECT name FROM servers WHERE id IN %s ORDER BY name",
                                         ([s["id"] for s in servers],))]


def test_api_lists_sort_and_filter_across_pages(api, db, fleet_rows):
    viewer = api("viewer")
    mine = by_name(db, fleet_rows["servers"])
    assert mine == ["lst-a", "lstpd", "lstxc", "lst_b"]
    for order in ("asc", "desc"):
        names = [s["name"] for s in _all_pages(viewer, "/api/servers", sort="name", order=order, limit=2)
                 if s["name"] in mine]
        assert names == (mine if order == "asc" else mine[::-1]), (order, names)
    # _ and % are themselves, not wildcards: "lst_" finds lst_b only (not lst-a, lstxc, lstpd).
    assert [s["name"] for s in viewer.get("/api/servers", query_string={"q": "lst_"}).json["items"]] == ["lst_b"]
    assert viewer.get("/api/servers", query_string={"q": "%"}).json["items"] == []
    assert {s["name"] for s in viewer.get("/api/servers", query_string={"q": "LST", "role": "backup_server"}
                                          ).json["items"]} == set(mine)   # case-insensitive
    for bad in ({"sort": "name desc"}, {"order": "sideways"}, {"role": "admin"}):
        resp = viewer.get("/api/servers", query_string=bad)
        assert resp.status_code == 400 and resp.json["error"], bad

    # Archives by size, largest first, two at a time: unknown sizes last, every archive once.
    bj = fleet_rows["bjs"][0]
    sizes = [a["original_size"] for a in _all_pages(viewer, "/api/archives", backup_job_id=bj["id"],
                                                     sort="original", limit=2)]
    assert sizes == [7000, 300, 40, 12, 5, None]
    names = [a["name"] for a in _all_pages(viewer, "/api/archives", backup_job_id=bj["id"], q="web-0", sort="name",
                                           order="desc", limit=4)]
    assert names == [f"web-{i:02d}" for i in range(5, -1, -1)]

    # Backup jobs: by schedule (none first ascending), filtered by text in a name.
    cl = fleet_rows["client"]["id"]
    assert [b["name"] for b in viewer.get("/api/backup-jobs", query_string={"client_id": cl, "sort": "schedule"}
                                          ).json["items"]] == ["db_x", "mail", "web"]
    assert [b["name"] for b in viewer.get("/api/backup-jobs", query_string={"client_id": cl, "q": "b_"}
                                          ).json["items"]] == ["db_x"]

    # Jobs: by status, filtered by status and by text in the error ("100%" literally).
    bj1 = fleet_rows["bjs"][1]["id"]
    failed, succeeded = fleet_rows["jobs"][0], fleet_rows["jobs"][1]
    items = viewer.get("/api/jobs", query_string={"backup_job_id": bj1, "status": "failed"}).json["items"]
    assert [j["id"] for j in items] == [fleet_rows["jobs"][2], failed]
    items = viewer.get("/api/jobs", query_string={"backup_job_id": bj1, "q": "100%"}).json["items"]
    assert [j["id"] for j in items] == [failed]
    # Status sorts in the order a job lives (queued ... succeeded, failed ...: the column's ENUM), ties in the same order.
    items = viewer.get("/api/jobs", query_string={"backup_job_id": bj1, "sort": "status"}).json["items"]
    assert [j["id"] for j in items] == [succeeded, failed, fleet_rows["jobs"][2]]
    assert viewer.get("/api/jobs", query_string={"kind": "rm -rf"}).status_code == 400


def _session(app, user):
    """A logged-in page client (posts as a browser without JavaScript does) and its CSRF token."""
    c = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").get_data(as_text=True)).group(1)
    assert c.post("/login", data={"username": user[0], "password": user[1], "csrf_token": csrf}).status_code == 302
    return c, re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").get_data(as_text=True)).group(1)


def test_pages_sort_and_filter_without_javascript(app, users, fleet_rows):
    c, _ = _session(app, users["viewer"])
    html = c.get("/servers?sort=name&order=desc&q=lst&role=backup_server&limit=2").get_data(as_text=True)
    rows = re.findall(r'<tr data-name="([^"]+)"', html)
    assert rows == ["lst_b", "lstxc"]
    assert re.search(r'aria-sort="descending"><a[^>]+data-sort="name"[^>]*href="/servers\?sort=name&amp;order=asc'
                     r'&amp;q=lst&amp;role=backup_server"', html), "the header link turns the order and keeps the filter"
    assert "▼" in html and 'value="lst"' in html
    nxt = re.search(r'class="btn btn-sm btn-outline-secondary next-page" href="([^"]+)"', html).group(1)
    assert "sort=name" in nxt and "q=lst" in nxt and "role=backup_server" in nxt
    html = c.get(nxt.replace("&amp;", "&") + "&limit=2").get_data(as_text=True)
    assert re.findall(r'<tr data-name="([^"]+)"', html) == ["lstpd", "lst-a"]
    assert "Nothing matches these filters." in c.get("/jobs?q=no-such-thing-anywhere").get_data(as_text=True)
    assert c.get("/archives?sort=nope").status_code == 400


# --- inline validation: the same verdict as the operation ---

def test_validate_gives_the_create_routes_verdict_per_field(api, db, fleet_rows):
    op = api("operator")
    cl = fleet_rows["client"]["id"]
    good = {"client_id": str(cl), "name": "new-one", "passphrase": "long-enough-1", "paths": "/etc\n/srv",
            "timezone": "UTC"}
    assert op.post("/api/validate/backup_job", json={"values": good}).json == {"valid": True, "errors": {}}
    count = dbm.query(db, "SELECT COUNT(*) AS n FROM backup_jobs", one=True)["n"]
    bad = {"schedule": ("61 * * * *", {"schedule": "61 * * * *"}),
           "retention": ('{"forever": 1}', {"retention": {"forever": 1}}),
           "paths": ("relative", {"paths": ["relative"]}),
           "name": ("x y", {"name": "x y"}),
           "timezone": ("Mars/Base", {"timezone": "Mars/Base"})}
    body = {"client_id": cl, "name": "new-one", "passphrase": "long-enough-1", "paths": ["/etc"]}
    for field, (typed, as_json) in bad.items():
        created = op.post("/api/backup-jobs", json={**body, **as_json})
        assert created.status_code == 400
        verdict = op.post("/api/validate/backup_job", json={"values": {**good, field: typed}}).json
        assert verdict == {"valid": False, "errors": {field: created.json["error"]}}, (field, verdict)
    # Several refused fields at once: each gets its own message.
    every = op.post("/api/validate/backup_job", json={"values": {**good, **{f: t for f, (t, _) in bad.items()}}}).json
    assert set(every["errors"]) == set(bad), every
    assert "schedule '61 * * * *' is not a cron expression" == every["errors"]["schedule"]
    assert dbm.query(db, "SELECT COUNT(*) AS n FROM backup_jobs", one=True)["n"] == count   # nothing saved

    # Servers: a port out of range, and what only an admin may do (the API's 403 message).
    verdict = op.post("/api/validate/server", json={"values": {"name": "v-srv", "role": "backup_server",
                                                               "port": "70000", "pool_path": "/srv/../x"}}).json
    created = op.post("/api/servers", json={"name": "v-srv", "role": "backup_server", "port": 70000})
    assert verdict["errors"]["port"] == created.json["error"] and "pool_path" in verdict["errors"]
    local = {"name": "v-local", "role": "client", "connection": "local", "local_pool_path": "/var/tmp/v"}
    forbidden = op.post("/api/servers", json=local)
    assert forbidden.status_code == 403
    assert op.post("/api/validate/server", json={"values": local}).json["errors"] == {"connection": forbidden.json["error"]}
    assert api("admin").post("/api/validate/server", json={"values": local}).json["valid"] is True

    # A backup job's retention and prune schedule (its page's form): the verdict of PUT.
    bid = fleet_rows["bjs"][0]["id"]
    put = op.put(f"/api/backup-jobs/{bid}", json={"retention": {"daily": 7, "within": "2x"}})
    verdict = op.post("/api/validate/retention", json={"backup_job_id": bid, "values": {"daily": "7", "within": "2x",
                                                                                         "prune_schedule": "every day"}}).json
    assert verdict["errors"]["retention"] == put.json["error"] and "cron" in verdict["errors"]["prune_schedule"]
    assert op.post("/api/validate/retention", json={"backup_job_id": bid, "values": {"daily": "7"}}).json["valid"]
    assert op.post("/api/validate/check", json={"backup_job_id": bid, "values": {
        "check_scope": "repository", "verify_data": "1"}}).json["errors"].keys() == {"verify_data"}

    # The restore wizard's target: the restore route's verdict.
    with db.cursor() as cur:
        cur.execute("SELECT id FROM archives WHERE repository_id=%s LIMIT 1", (fleet_rows["bjs"][0]["repository_id"],))
        aid = cur.fetchone()["id"]
    restored = op.post(f"/api/archives/{aid}/restore", json={"paths": ["etc/hosts"], "target": "srv/x"})
    verdict = op.post("/api/validate/restore", json={"archive_id": aid, "values": {
        "sel": ["etc/hosts"], "where": "directory", "target_dir": "srv/x", "backup_dir": "rel"}}).json
    assert verdict["errors"] == {"target_dir": restored.json["error"], "backup_dir": "backup_dir must be an absolute path"}
    assert op.post("/api/validate/nope", json={"values": {}}).status_code == 404
    assert op.post("/api/validate/server", json={"values": {"name": 5}}).status_code == 400


def test_refused_submit_shows_the_message_under_the_field(app, users, fleet_rows):
    c, csrf = _session(app, users["operator"])
    cl = fleet_rows["client"]["id"]
    resp = c.post("/backup-jobs", data={"csrf_token": csrf, "client_id": cl, "name": "typed-name", "paths": "/etc",
                                        "passphrase": "long-enough-1", "schedule": "61 * * * *", "timezone": "Mars/Base",
                                        "retention": "{not json"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert re.search(r'name="schedule" value="61 \* \* \* \*"[^>]*>\s*<div class="invalid-feedback d-block" '
                     r'data-feedback-for="schedule">schedule &#39;61 \* \* \* \*&#39; is not a cron expression</div>', html)
    assert 'data-feedback-for="timezone">unknown time zone' in html and 'value="typed-name"' in html
    assert 'data-feedback-for="retention">retention must be JSON' in html and 'value="{not json"' in html
    assert "long-enough-1" not in html   # the passphrase is never sent back
    bid = fleet_rows["bjs"][0]["id"]
    resp = c.post(f"/backup-jobs/{bid}/retention", data={"csrf_token": csrf, "form": "retention", "daily": "3",
                                                          "within": "2x", "action": "save"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400 and 'data-feedback-for="retention">client' in html and "retention.within" in html
    assert re.search(r'name="within" data-field="retention" value="2x"', html)


def test_browser_sorts_filters_and_judges_fields_inline(browser, web, users, api, fleet_rows):  # noqa: F811
    OUT.mkdir(parents=True, exist_ok=True)
    page = login(browser, web, users["operator"])
    page.goto(web + "/servers?q=lst&role=backup_server")
    page.click("#servers th a[data-sort=name]")
    assert "sort=name" in page.url
    assert page.locator("#servers tbody tr").evaluate_all("rs => rs.map(r => r.dataset.name)") == \
        ["lst-a", "lstpd", "lstxc", "lst_b"]
    page.click("#servers th a[data-sort=name]")
    assert page.locator("#servers th[aria-sort=descending]").inner_text().strip().endswith("▼")
    assert page.locator("#servers tbody tr").first.get_attribute("data-name") == "lst_b"
    page.fill(".list-filter input[name=q]", "lst_")
    page.click(".list-filter .filter-btn")
    assert page.locator("#servers tbody tr").evaluate_all("rs => rs.map(r => r.dataset.name)") == ["lst_b"]
    assert "order=desc" in page.url   # the order stays while filtering
    page.screenshot(path=str(OUT / "servers-sorted-filtered.png"), full_page=True)

    # The retention form: a bad keep-within and a bad cron expression show the contract's and the
    # service's messages under their fields as they are left; fixed, the messages go and Save is back.
    bid = fleet_rows["bjs"][0]["id"]
    page.goto(web + f"/backup-jobs/{bid}")
    within, sched = page.locator("#r-within"), page.locator("#r-sched")
    within.fill("2x")
    page.locator("#r-daily").fill("7")
    retention_msg = page.locator("#retention-form [data-feedback-for=retention]")
    retention_msg.wait_for(state="visible")
    assert "retention.within must look like 2d" in retention_msg.inner_text()
    assert "is-invalid" in within.get_attribute("class") and page.locator("#retention-save").is_disabled()
    sched.fill("61 * * * *")
    sched.press("Tab")
    sched_msg = page.locator("#retention-form [data-feedback-for=prune_schedule]")
    sched_msg.wait_for(state="visible")
    assert sched_msg.inner_text() == "prune_schedule '61 * * * *' is not a cron expression"
    page.screenshot(path=str(OUT / "retention-inline-errors.png"), full_page=True)
    within.fill("2d")   # fixed while typing: judged again after the pause
    retention_msg.wait_for(state="hidden")
    sched.fill("30 3 * * *")
    sched_msg.wait_for(state="hidden")
    assert "is-invalid" not in within.get_attribute("class") and page.locator("#retention-save").is_enabled()
    page.screenshot(path=str(OUT / "retention-inline-fixed.png"), full_page=True)
    page.click("#retention-save")
    page.wait_for_url(re.compile(rf".*/backup-jobs/{bid}(#retention)?$"))
    saved = api("viewer").get(f"/api/backup-jobs/{bid}").json
    assert saved["retention"] == {"daily": 7, "within": "2d"} and saved["prune_schedule"] == "30 3 * * *"
