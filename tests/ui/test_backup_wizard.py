"""The backup wizard (/backup-jobs/new): its presets are values the contract and the scheduler's checks
accept; the next runs it shows (GET /api/schedules/next-runs) are the scheduler's own, DST included;
and one walk in Chromium for a local client: Reload capabilities finds this machine's PostgreSQL, a
daily schedule, a retention preset, the generated passphrase; the job is created and its setup runs
by itself, then Run now, and the archive is read back with borg. Screenshots in
tests/output/wizard-backup/."""
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from borgfleet_ui import db as dbm
from borgfleet_ui.contract import ContractError, contract
from borgfleet_ui.fleet import backup_jobs, facts, wizard
from borgfleet_ui.fleet.common import Invalid
from test_browser import CHROMIUM, browser, login, wait_final, web  # noqa: F401 (fixtures)
from tests.lib.borgrepo import BorgRepo
from uilib import wait_for, wait_job

OUT = Path(__file__).resolve().parents[1] / "output" / "wizard-backup"

# A detection as detect_capabilities.yml reports it (docs/contract.md, Facts), trimmed to what
# facts.databases reads.
CAPS = {
    "mysql": {"server_installed": True, "flavor": "mariadb", "server_version": "10.11.6-MariaDB",
              "socket": "/run/mysqld/mysqld.sock", "datadir": "/var/lib/mysql", "running": True,
              "auth": {"socket": False, "debian_cnf": True, "method": "debian_cnf"}, "storage": {"type": "plain"}},
    "postgresql": {"clusters": [
        {"version": "15", "name": "main", "port": 5432, "status": "online", "owner": "postgres",
         "data_directory": "/var/lib/postgresql/15/main", "socket_directory": "/var/run/postgresql",
         "peer_auth": True, "storage": {"type": "lvm", "snapshot_capable": True}},
        {"version": "16", "name": "reports", "port": 5433, "status": "down", "owner": "pgreports",
         "data_directory": "/srv/pg/16/reports", "socket_directory": "/tmp", "peer_auth": None}]},
}


def test_presets_are_values_the_contract_and_the_scheduler_accept():
    for label, paths in wizard.PATH_PRESETS.values():
        assert contract.check_paths(paths, "c", "b", required=True) == paths, label
    for label, patterns in wizard.EXCLUDE_PRESETS.values():
        assert contract.check_exclude(patterns, "c", "b") == patterns, label
    for label, retention in wizard.RETENTION_PRESETS.values():
        # Taken as given: nothing dropped or refused (None: never prune).
        assert contract.check_retention(retention, "c", "b") == retention, label
    assert wizard.RETENTION_PRESETS[wizard.DEFAULT_RETENTION][1] == {"daily": 7, "weekly": 4, "monthly": 6}
    after = datetime(2025, 6, 2, 10, 0, tzinfo=timezone.utc)
    for label, cron in wizard.SCHEDULE_PRESETS.values():
        assert backup_jobs.check_cron(cron, "schedule") == cron, label
        if cron:
            runs = backup_jobs.next_runs(cron, "Europe/Berlin", 5, after)
            assert len(runs) == 5 and runs == sorted(set(runs)) and runs[0] > after.replace(tzinfo=None), label
    assert wizard.SCHEDULE_PRESETS["daily"][1] == "0 2 * * *"
    # Every preset at once, with typed lines, as one backup the contract resolves.
    paths = wizard.with_lines(wizard.chosen(wizard.PATH_PRESETS, list(wizard.PATH_PRESETS)), "/opt/app\n\n/etc\n")
    exclude = wizard.with_lines(wizard.chosen(wizard.EXCLUDE_PRESETS, ["tmp", "nope", "caches"]), "sh:**/*.iso")
    assert paths[-1] == "/opt/app" and paths.count("/etc") == 1
    assert exclude[:3] == wizard.EXCLUDE_PRESETS["caches"][1] and exclude[-1] == "sh:**/*.iso"
    (resolved,) = contract.resolve_backups([{"name": "files", "paths": paths, "exclude": exclude, "passphrase": "x" * 8,
                                             "retention": wizard.RETENTION_PRESETS["standard"][1]}],
                                           "c1", {"c1": {}}, server="local")
    assert resolved["paths"] == paths and resolved["exclude"] == exclude
    with pytest.raises(ContractError):   # a typed line is judged like any other
        contract.check_paths(wizard.with_lines([], "relative/path"), "c", "b", required=True)


def test_detected_databases_become_contract_entries_for_each_method():
    found = {d["key"]: d for d in facts.databases(CAPS)}
    assert set(found) == {"mariadb", "postgresql-15-main", "postgresql-16-reports"}
    assert found["mariadb"]["entry"] == {"engine": "mariadb", "defaults_file": "/etc/mysql/debian.cnf"}
    assert found["postgresql-16-reports"]["entry"] == {"engine": "postgresql", "login_port": 5433,
                                                       "login_unix_socket": "/tmp", "os_user": "pgreports"}
    for d in found.values():
        for method in contract.DATABASE_METHODS:
            (entry,) = contract.check_databases([wizard.database_entry(d, method)], "c", "b")
            assert entry["method"] == method and entry["engine"] == d["engine"]
        assert wizard.database_entry(d, "bogus")["method"] == "auto"
    assert set(wizard.METHODS) == set(contract.DATABASE_METHODS)
    # Suggested names are backup names, never one the client already has.
    assert wizard.suggest_name(found["postgresql-15-main"], set()) == "postgresql-15-main"
    assert wizard.suggest_name(None, {"files", "files-2"}) == "files-3"
    for d in list(found.values()) + [None]:
        contract.check_backup_name(wizard.suggest_name(d, {"mariadb"}), "c")
    assert len(wizard.generate_passphrase()) >= 32 and wizard.generate_passphrase() != wizard.generate_passphrase()


def test_next_runs_api_is_the_schedulers_computation_across_dst(api):
    viewer = api("viewer")
    # 02:30 in Berlin: the night of 30 March 2025 has no 02:30 (clocks jump from 02:00 to 03:00).
    r = viewer.get("/api/schedules/next-runs?cron=30 2 * * *&timezone=Europe/Berlin&after=2025-03-27T12:00:00Z")
    assert r.status_code == 200, r.json
    t, expected = datetime(2025, 3, 27, 12, 0, tzinfo=timezone.utc), []
    for _ in range(5):   # the scheduler's function, step by step as scheduler.py calls it
        t = backup_jobs.next_run("30 2 * * *", "Europe/Berlin", t).replace(tzinfo=timezone.utc)
        expected.append(t)
    assert [x["utc"] for x in r.json["runs"]] == [x.isoformat().replace("+00:00", "Z") for x in expected]
    offsets = [x["local"][-6:] for x in r.json["runs"]]
    assert offsets[:2] == ["+01:00", "+01:00"] and offsets[-1] == "+02:00"   # CET, then CEST
    assert r.json["runs"][0]["text"] == "Fri 2025-03-28 02:30 CET" and r.json["runs"][-1]["text"].endswith("CEST")
    # Default count 5, zone UTC, from now.
    now = viewer.get("/api/schedules/next-runs?cron=0 * * * *").json
    assert now["timezone"] == "UTC" and len(now["runs"]) == 5
    first = datetime.fromisoformat(now["runs"][0]["utc"].replace("Z", "+00:00"))
    assert 0 < (first - datetime.now(timezone.utc)).total_seconds() <= 3600
    # Refused with the messages a backup job gets for the same values.
    for query, check in (("cron=every day", lambda: backup_jobs.check_cron("every day", "schedule")),
                         ("cron=0 2 * * *&timezone=Mars/Olympus", lambda: backup_jobs.check_timezone("Mars/Olympus"))):
        bad = viewer.get(f"/api/schedules/next-runs?{query}")
        assert bad.status_code == 400
        with pytest.raises(Invalid) as err:
            check()
        assert bad.json["error"] == str(err.value)
    assert viewer.get("/api/schedules/next-runs?cron=0 2 * * *&count=0").status_code == 400
    assert viewer.get("/api/schedules/next-runs").status_code == 400   # no cron: nothing to compute


def test_api_create_with_setup_queues_the_clients_setup(api, db, tmp_path):
    cl = api("admin").post("/api/servers", json={"name": "wiz-api", "role": "client", "connection": "local",
                                                 "local_pool_path": str(tmp_path / "repos")}).json
    op = api("operator")
    try:
        assert op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "x", "paths": ["/etc"],
                                                 "passphrase": "p" * 10, "setup": "yes"}).status_code == 400
        r = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "etc", "paths": ["/etc"],
                                              "passphrase": "p" * 10, "setup": True})
        assert r.status_code == 201, r.json
        job = dbm.query(db, "SELECT kind, server_id, created_by FROM jobs WHERE id=%s", (r.json["setup_job_id"],),
                        one=True)
        assert job == {"kind": "setup", "server_id": cl["id"], "created_by": "t_operator"}
        op.post(f"/api/jobs/{r.json['setup_job_id']}/cancel")   # no worker here: it never runs
        assert "setup_job_id" not in op.get(f"/api/backup-jobs/{r.json['id']}").json
        op.delete(f"/api/backup-jobs/{r.json['id']}")
    finally:
        op.delete(f"/api/servers/{cl['id']}")


def _logged_in(app, user):
    c = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").get_data(as_text=True)).group(1)
    assert c.post("/login", data={"username": user[0], "password": user[1], "csrf_token": csrf}).status_code == 302
    return c, re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").get_data(as_text=True)).group(1)


def test_wizard_steps_without_javascript_refuse_as_the_api_does(app, api, db, users, tmp_path):
    cl = api("admin").post("/api/servers", json={"name": "wiz-nojs", "role": "client", "connection": "local",
                                                 "local_pool_path": str(tmp_path / "repos")}).json
    c, csrf = _logged_in(app, users["operator"])
    op, bid = api("operator"), None

    def post(step, **form):
        return c.post(f"/backup-jobs/new/{step}", data={"csrf_token": csrf, **form})

    def error(resp):
        assert resp.status_code == 400
        return re.search(r'id="error">([^<]*)<', resp.get_data(as_text=True)).group(1)
    try:
        assert c.get("/backup-jobs/new/keep").headers["Location"].endswith("/backup-jobs/new/client")
        assert c.get(f"/backup-jobs/new?client_id={cl['id']}").headers["Location"].endswith("/backup-jobs/new/what")
        # The step's message is the one the API gives for the same backup (created, or only checked).
        refused = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "files", "paths": ["etc"],
                                                    "passphrase": "p" * 10}).json["error"]
        draft = op.post("/api/backup-jobs/check-draft", json={"client_id": cl["id"], "name": "files", "paths": ["etc"]})
        assert draft.status_code == 400 and draft.json["error"] == refused
        draft = op.post("/api/backup-jobs/check-draft", json={"client_id": cl["id"], "name": "files", "paths": ["/etc"]})
        assert draft.status_code == 200 and draft.json["repository"] == str(tmp_path / "repos" / "wiz-nojs" / "files")
        assert error(post("what", kind="paths", paths="etc")) == refused.replace("'", "&#39;")
        assert post("what", kind="paths", path_preset="config", exclude_preset="tmp",
                    paths="/opt/app\n").status_code == 302
        assert post("where").headers["Location"].endswith("/backup-jobs/new/when")
        # "Show next runs" renders the runs of what was typed and keeps nothing.
        shown = post("when", schedule_preset="custom", cron="30 2 * * *", timezone="Europe/Berlin", action="preview")
        assert shown.status_code == 200 and shown.get_data(as_text=True).count("<time datetime=") == 5
        assert c.get("/backup-jobs/new/keep").headers["Location"].endswith("/backup-jobs/new/when")
        assert error(post("when", schedule_preset="custom", cron="every night", timezone="UTC")) == \
            "schedule &#39;every night&#39; is not a cron expression"
        assert post("when", schedule_preset="custom", cron="30 2 * * *", timezone="Europe/Berlin").status_code == 302
        assert "retention keeps nothing" in error(post("keep", retention_preset="custom", daily="0"))
        assert post("keep", retention_preset="short").headers["Location"].endswith("/backup-jobs/new/passphrase")
        page = c.get("/backup-jobs/new/passphrase").get_data(as_text=True)
        generated = re.search(r'id="generated" name="generated" value="([^"]+)"', page).group(1)
        assert c.get("/backup-jobs/new/passphrase").get_data(as_text=True).count(generated) == 0   # shown once

        def create(**form):
            return c.post("/backup-jobs/new/create", data={"csrf_token": csrf, "generated": generated, **form})
        unticked = create(mode="generated")
        assert "I have stored" in error(unticked) and generated in unticked.get_data(as_text=True)
        assert error(create(mode="own", own="abcdefghij", own2="abcdefghiX", stored="1")) == \
            "the two passphrases typed differ"
        assert error(create(mode="own", own="short", own2="short", stored="1")) == \
            "passphrase is required (8 to 1024 characters)"
        done = create(mode="generated", stored="1")
        assert done.status_code == 302 and generated not in done.headers["Location"]
        setup_id = done.headers["Location"].rsplit("/", 1)[1]
        (bj,) = op.get(f"/api/backup-jobs?client_id={cl['id']}").json["items"]
        bid = bj["id"]
        assert (bj["name"], bj["paths"], bj["exclude"]) == \
            ("files", ["/etc", "/opt/app"], wizard.EXCLUDE_PRESETS["tmp"][1])
        assert (bj["schedule"], bj["timezone"], bj["retention"]) == ("30 2 * * *", "Europe/Berlin", {"daily": 14})
        assert dbm.query(db, "SELECT kind, server_id FROM jobs WHERE id=%s", (setup_id,), one=True) == \
            {"kind": "setup", "server_id": cl["id"]}
        op.post(f"/api/jobs/{setup_id}/cancel")   # no worker in this test
        # The wizard is over: a new one starts at the client.
        assert c.get("/backup-jobs/new/passphrase").headers["Location"].endswith("/backup-jobs/new/client")
    finally:
        if bid:
            op.delete(f"/api/backup-jobs/{bid}")
        op.delete(f"/api/servers/{cl['id']}")


def test_wizard_where_offers_the_pools_of_the_clients_backup_server(app, api, users):
    admin, op = api("admin"), api("operator")
    bs = admin.post("/api/servers", json={"name": "wiz-bs", "role": "backup_server", "address": "192.0.2.7",
                                          "pools": [{"name": "main", "path": "/srv/borg"},
                                                    {"name": "big", "path": "/srv/big"}]}).json
    other = admin.post("/api/servers", json={"name": "wiz-bs2", "role": "backup_server", "address": "192.0.2.8",
                                             "pools": [{"name": "main", "path": "/srv/borg"}]}).json
    cl = admin.post("/api/servers", json={"name": "wiz-remote", "role": "client", "address": "192.0.2.9",
                                          "backup_server_id": bs["id"]}).json
    pools = {p["name"]: p["id"] for p in op.get(f"/api/storage-pools?server_id={bs['id']}").json["items"]}
    (foreign,) = op.get(f"/api/storage-pools?server_id={other['id']}").json["items"]
    c, csrf = _logged_in(app, users["operator"])
    try:
        c.get(f"/backup-jobs/new?client_id={cl['id']}")
        assert c.post("/backup-jobs/new/what", data={"csrf_token": csrf, "kind": "paths",
                                                     "path_preset": "home"}).status_code == 302
        page = c.get("/backup-jobs/new/where").get_data(as_text=True)
        assert re.findall(r'data-name="(\w+)"', page) == ["main", "big"] and "wiz-bs" in page
        refused = c.post("/backup-jobs/new/where", data={"csrf_token": csrf, "pool_id": foreign["id"]})
        assert refused.status_code == 400 and "pool_id must be a pool of the client&#39;s backup server" in \
            refused.get_data(as_text=True)
        assert c.post("/backup-jobs/new/where", data={"csrf_token": csrf, "pool_id": pools["big"]}).status_code == 302
        page = c.get("/backup-jobs/new/where").get_data(as_text=True)
        assert "ssh://borg@192.0.2.7:22/srv/big/wiz-remote/files</code>" in page
    finally:
        for sid in (cl["id"], bs["id"], other["id"]):
            op.delete(f"/api/servers/{sid}")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")
def test_wizard_backs_up_the_detected_postgresql(browser, web, users, api, db, start_worker, tmp_path):  # noqa: F811
    OUT.mkdir(parents=True, exist_ok=True)
    cl = api("admin").post("/api/servers", json={
        "name": "wiz-client", "role": "client", "connection": "local", "local_pool_path": str(tmp_path / "repos"),
        "vars": {"borgfleet_borg_base_dir": str(tmp_path / "base")}}).json
    start_worker(1)
    page = login(browser, web, users["operator"])
    page.set_viewport_size({"width": 1280, "height": 900})
    bid = None
    try:
        page.goto(web + "/backup-jobs")
        page.click("#add-backup-wizard")
        page.wait_for_url(web + "/backup-jobs/new/client")
        page.check("#clients label[data-name=wiz-client] input")
        page.screenshot(path=str(OUT / "1-client.png"), full_page=True)
        page.click("#wizard-next")

        # What: nothing detected yet; Reload capabilities comes back to this step once detection ends.
        page.wait_for_url(web + "/backup-jobs/new/what")
        assert "No capabilities detected" in page.inner_text("#caps-date")
        page.check("#pp-config")   # typed before the reload: kept across it
        page.click("#reload-capabilities")
        page.wait_for_selector("#detecting")
        page.screenshot(path=str(OUT / "2-what-detecting.png"), full_page=True)
        page.wait_for_selector("#detected-databases tr[data-engine=postgresql]", timeout=180_000)
        assert page.url.startswith(web + "/backup-jobs/new/what") and page.is_checked("#pp-config")
        row = page.locator("#detected-databases tr[data-engine=postgresql]").first
        key = row.get_attribute("data-key")
        assert re.fullmatch(r"postgresql-\d+-\w+", key)
        page.check("#kind-database")
        page.check(f"#db-{key}")
        assert page.is_checked("#method-auto")
        page.screenshot(path=str(OUT / "2-what.png"), full_page=True)
        page.click("#wizard-next")

        page.wait_for_url(web + "/backup-jobs/new/where")
        repo_path = tmp_path / "repos" / "wiz-client" / key
        assert page.inner_text("#repository") == str(repo_path)
        page.screenshot(path=str(OUT / "3-where.png"), full_page=True)
        page.click("#wizard-next")

        # When: daily at 02:00 preset; its five runs are the scheduler's; another preset updates them.
        page.wait_for_url(web + "/backup-jobs/new/when")
        assert page.is_checked("#sp-daily")
        runs = page.locator("#runs-list time")
        assert runs.count() == 5
        first = datetime.fromisoformat(runs.first.get_attribute("datetime").replace("Z", "+00:00"))
        assert first.replace(tzinfo=None) == backup_jobs.next_run("0 2 * * *", "UTC")
        page.check("#sp-hourly")
        wait_for(lambda: page.locator("#runs-list time").first.get_attribute("datetime").endswith(":00:00Z")
                 and page.locator("#runs-list time").nth(1).get_attribute("datetime")[11:13]
                 != page.locator("#runs-list time").nth(2).get_attribute("datetime")[11:13], timeout=10,
                 what="the hourly runs")
        page.check("#sp-daily")
        page.fill("#w-tz", "Europe/Berlin")
        wait_for(lambda: page.locator("#runs-list time").first.inner_text().endswith(("CET", "CEST")), timeout=10,
                 what="the runs in Berlin time")
        page.screenshot(path=str(OUT / "4-when.png"), full_page=True)
        page.click("#wizard-next")

        page.wait_for_url(web + "/backup-jobs/new/keep")
        page.check("#rp-standard")
        assert "no archives yet" in page.inner_text("#no-archives")
        page.screenshot(path=str(OUT / "5-keep.png"), full_page=True)
        page.click("#wizard-next")

        page.wait_for_url(web + "/backup-jobs/new/passphrase")
        passphrase = page.input_value("#generated")
        assert len(passphrase) >= 32
        assert "the backups are lost" in page.inner_text("#passphrase-warning")
        assert page.is_checked("#mode-generated") and not page.is_checked("#stored")
        page.screenshot(path=str(OUT / "6-passphrase.png"), full_page=True)
        page.click("#theme-toggle")
        assert page.get_attribute("html", "data-bs-theme") == "dark"
        page.screenshot(path=str(OUT / "6-passphrase-dark.png"), full_page=True)
        page.click("#theme-toggle")
        page.check("#stored")
        page.click("#wizard-create")

        # Created, and its setup (the repository) follows by itself: the page is that job.
        page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
        assert page.url.split("?")[0] != web + "/backup-jobs/new/create" and passphrase not in page.url
        setup_id = page.url.rsplit("/", 1)[1]
        assert wait_final(page) == "succeeded", page.inner_text("#log")
        assert dbm.query(db, "SELECT kind FROM jobs WHERE id=%s", (setup_id,), one=True)["kind"] == "setup"
        page.screenshot(path=str(OUT / "7-setup-job.png"), full_page=True)
        assert passphrase not in page.content()
        (bj,) = api("viewer").get(f"/api/backup-jobs?client_id={cl['id']}").json["items"]
        bid = bj["id"]
        assert bj["name"] == key and bj["paths"] == [] and bj["schedule"] == "0 2 * * *"
        assert bj["timezone"] == "Europe/Berlin" and bj["retention"] == {"daily": 7, "weekly": 4, "monthly": 6}
        (entry,) = bj["databases"]
        assert entry["engine"] == "postgresql" and entry["method"] == "auto" and entry["os_user"] == "postgres"

        page.goto(f"{web}/backup-jobs/{bid}")
        page.click("button.run-now")
        page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
        assert wait_final(page) == "succeeded", page.inner_text("#log")
        # Read back with borg, with the passphrase the wizard showed once: one archive holding the dump.
        repo = BorgRepo(str(repo_path), passphrase, base_dir=tmp_path / "base")
        (name,) = repo.archive_names()
        assert name.startswith(key + "-")
        assert any(p.endswith(".sql") or p.endswith(".pgdump") for p in repo.paths(name)), repo.paths(name)
        # The retention preset is the job's: the prune after the backup keeps that archive by its daily rule.
        prune = wait_for(lambda: dbm.query(db, "SELECT id FROM jobs WHERE kind='prune' AND backup_job_id=%s",
                                           (bid,), one=True), timeout=30, what="the prune after the backup")
        done = wait_job(db, prune["id"])
        assert done["status"] == "succeeded", done["error"]
    finally:
        if bid:
            api("operator").delete(f"/api/backup-jobs/{bid}")
        api("operator").delete(f"/api/servers/{cl['id']}")
