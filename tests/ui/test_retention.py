"""Retention and checks that really run, from the service: a local client's repository holds archives
with controlled timestamps (borg create --timestamp); a retention typed on the backup job's page is
previewed (prune.yml --check: a real borg prune --dry-run) before it is saved and the table matches
`borg prune --dry-run --list` run directly; Prune now removes exactly what the preview said, compacts
(the repository's segments shrink) and the archives page matches `borg list`; a successful backup is
followed by a prune; Check now passes, and fails with its error class on a corrupted segment.
Screenshots go to tests/output/retention/."""
import json
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from rq import Queue

from borgfleet_ui import db as dbm
from borgfleet_ui import queue as q
from borgfleet_ui.fleet import backup_jobs
from tests.lib.borgrepo import BorgRepo
from test_browser import CHROMIUM, browser, login, wait_final, web  # noqa: F401 (fixtures)
from test_scheduler import scheduled_jobs, schedulers, utcnow  # noqa: F401 (fixture)
from uilib import drop_local_backup, make_local_backup, wait_for, wait_job

OUT = Path(__file__).resolve().parents[1] / "output" / "retention"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")

# Times kept away from midnight so no time zone moves a day (borg create --timestamp is UTC).
STAMPS = ["2025-03-10T14:00:00", "2025-03-10T10:00:00", "2025-03-09T12:00:00", "2025-03-08T12:00:00",
          "2025-03-05T12:00:00", "2025-03-02T12:00:00", "2025-02-15T12:00:00", "2025-01-20T12:00:00"]
RETENTION = {"daily": 2, "weekly": 1, "monthly": 1}
_KEEP = re.compile(r"Keeping archive \(rule: (?P<rule>[^)]*)\):\s+(?P<name>\S+)")
_GONE = re.compile(r"Would prune:\s+(?P<name>\S+)")


def borg_dry_run(repo, retention, backup="data"):
    """{archive: rule or None (pruned)} as borg itself says, run directly."""
    argv = ["prune", "--dry-run", "--list", "--glob-archives", f"{backup}-*"]
    for key, value in retention.items():
        argv += [f"--keep-{key}", str(value)]
    out = {}
    for line in repo.run(*argv, repo.url).stderr.splitlines():
        m = _KEEP.match(line) or _GONE.match(line)
        if m:
            out[m.group("name")] = m.groupdict().get("rule")
    assert out, "borg prune --dry-run listed nothing"
    return out


def repo_with_archives(api, tmp_path, name, **job):
    """A local backup job whose repository (made with borg directly) holds one archive per STAMPS,
    each with data of its own (so pruning one frees space)."""
    cl, bj = make_local_backup(api, tmp_path, name, **job)
    repo = BorgRepo(bj["location"], "local-pass-" + name, base_dir=tmp_path / f"{name}-base")
    Path(bj["location"]).parent.mkdir(parents=True, exist_ok=True)
    repo.run("init", "--encryption", "repokey-blake2", bj["location"])
    for ts in STAMPS:
        src = tmp_path / f"{name}-src" / ts
        src.mkdir(parents=True)
        (src / "blob").write_bytes(os.urandom(256 * 1024))
        repo.create(f"data-{ts}", src, timestamp=ts)
    return cl, bj, repo


def data_bytes(location):
    return sum(f.stat().st_size for f in Path(location, "data").rglob("*") if f.is_file())


def test_prune_and_check_routes_roles_and_validation(api, db, redis, tmp_path):
    cl, bj = make_local_backup(api, tmp_path, "retval")
    op, viewer = api("operator"), api("viewer")
    try:
        # Hard-coded: viewers read, operators act.
        for path in ("prune", "prune-preview", "check"):
            assert viewer.post(f"/api/backup-jobs/{bj['id']}/{path}", json={}).status_code == 403
        assert viewer.get(f"/api/backup-jobs/{bj['id']}").status_code == 200
        assert viewer.put(f"/api/backup-jobs/{bj['id']}", json={"retention": {"daily": 1}}).status_code == 403
        doc = viewer.get("/api/openapi.json").json["paths"]
        for path in ("prune", "prune-preview", "check"):
            assert "operator" in doc[f"/api/backup-jobs/{{id}}/{path}"]["post"]["description"]

        # Nothing to prune without a retention; a prune schedule needs one too.
        got = op.post(f"/api/backup-jobs/{bj['id']}/prune")
        assert got.status_code == 400 and "no retention" in got.json["error"]
        got = op.put(f"/api/backup-jobs/{bj['id']}", json={"prune_schedule": "0 3 * * *"})
        assert got.status_code == 400 and "prune_schedule needs a retention" in got.json["error"]
        # A preview of a bad retention is refused with the collection's own message, before any job.
        got = op.post(f"/api/backup-jobs/{bj['id']}/prune-preview", json={"retention": {"within": "30S"}})
        assert got.status_code == 400 and "retention.within must look like 2d" in got.json["error"], got.json
        got = op.post(f"/api/backup-jobs/{bj['id']}/prune-preview", json={})
        assert got.status_code == 400 and "give a retention to preview" in got.json["error"]
        got = op.post(f"/api/backup-jobs/{bj['id']}/check", json={"scope": "everything"})
        assert got.status_code == 400 and "check_scope must be one of all, repository, archives" in got.json["error"]
        got = op.post(f"/api/backup-jobs/{bj['id']}/check", json={"scope": "repository", "verify_data": True})
        assert got.status_code == 400 and "check the archives too" in got.json["error"]
        assert not viewer.get(f"/api/jobs?backup_job_id={bj['id']}").json["items"]

        # Schedules: saved with their next due time; a prune schedule replaces pruning after each backup.
        got = op.put(f"/api/backup-jobs/{bj['id']}", json={
            "retention": {"daily": 3}, "prune_schedule": "30 3 * * *", "check_schedule": "0 4 * * 0",
            "check_scope": "archives", "check_verify_data": True})
        assert got.status_code == 200, got.json
        assert got.json["prune_next_run_at"] and got.json["check_next_run_at"]
        assert (got.json["check_scope"], got.json["check_verify_data"]) == ("archives", True)
        assert backup_jobs.follow_up(db, redis, "prune", bj["id"]) is None
        got = op.put(f"/api/backup-jobs/{bj['id']}", json={"prune_schedule": "", "check_schedule": ""})
        assert got.json["prune_schedule"] is None and got.json["check_next_run_at"] is None
        # After each backup then; a prune still waiting to start covers the next backup too.
        first = backup_jobs.follow_up(db, redis, "prune", bj["id"])
        assert first and backup_jobs.follow_up(db, redis, "prune", bj["id"]) is None
        assert op.post(f"/api/jobs/{first}/cancel").status_code == 202
        second = backup_jobs.follow_up(db, redis, "prune", bj["id"])
        assert second not in (None, first)
        assert op.post(f"/api/jobs/{second}/cancel").status_code == 202
    finally:
        drop_local_backup(api, cl, bj)


def test_preview_prune_and_check_in_the_browser(api, db, users, start_worker, tmp_path, browser, web):  # noqa: F811
    cl, bj, repo = repo_with_archives(api, tmp_path, "ret", retention={"daily": 7})
    OUT.mkdir(parents=True, exist_ok=True)
    op = api("operator")
    start_worker(1)
    try:
        # The backup job page; the service learns the archives (and their times) from borg.
        before = repo.archive_names()
        page = login(browser, web, users["operator"])
        page.goto(web + "/backup-jobs")
        page.locator("#backup-jobs tr[data-name='ret/data'] a").first.click()
        page.wait_for_url(f"{web}/backup-jobs/{bj['id']}")
        assert page.inner_text("#archives-count") == "0"
        page.click("button.refresh-archives")
        page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
        assert wait_final(page) == "succeeded", page.inner_text("#log")
        page.goto(f"{web}/backup-jobs/{bj['id']}")
        assert page.inner_text("#archives-count") == str(len(STAMPS))

        # A retention typed (not saved) and previewed.
        assert "after each successful backup" in page.inner_text("#schedules tr[data-kind=prune]")
        for key in ("daily", "weekly", "monthly"):
            page.fill(f"#r-{key}", str(RETENTION[key]))
        page.click("#preview-btn")
        page.wait_for_selector("#preview-table", timeout=180_000)
        expected = borg_dry_run(repo, RETENTION)
        shown = {r.get_attribute("data-name"): (r.locator("td.rule").inner_text().strip() or None)
                 if "kept" in r.get_attribute("class").split() else None
                 for r in page.locator("#preview-table tbody tr[data-name]").all()}
        assert shown == expected, (shown, expected)
        # And borg's rules as docs/contract.md states them (one per period, newest first, no double count).
        assert sorted(n for n, rule in expected.items() if rule is None) == [
            "data-2025-01-20T12:00:00", "data-2025-03-05T12:00:00", "data-2025-03-08T12:00:00", "data-2025-03-10T10:00:00"]
        assert "Nothing has been changed" in page.inner_text("#preview-summary")
        page.screenshot(path=str(OUT / "preview.png"), full_page=True)
        assert repo.archive_names() == before                           # a dry run
        assert op.get(f"/api/backup-jobs/{bj['id']}").json["retention"] == {"daily": 7}   # nothing saved
        # The form still holds what was previewed: save it.
        assert page.input_value("#r-weekly") == "1"
        page.click("#retention-save")
        page.wait_for_url(f"{web}/backup-jobs/{bj['id']}#retention")
        assert op.get(f"/api/backup-jobs/{bj['id']}").json["retention"] == RETENTION

        # Prune now (confirmed in the modal): exactly what the preview said goes, and the space is freed.
        size_before = data_bytes(bj["location"])
        page.click("#prune-now button")
        page.click("#confirm-yes")
        page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
        assert wait_final(page) == "succeeded", page.inner_text("#log")
        page.reload()
        assert "space compacted" in page.inner_text("#prune-summary")
        page.screenshot(path=str(OUT / "prune-job.png"), full_page=True)
        result = api("viewer").get(f"/api/jobs/{page.url.rsplit('/', 1)[1]}").json["result"]
        assert sorted(result["pruned"]) == sorted(n for n, rule in expected.items() if rule is None)
        assert result["compacted"] is True
        assert sorted(repo.archive_names()) == sorted(n for n, rule in expected.items() if rule)
        # borg 1.2 frees space only on compact: four archives of 256 KiB of their own are gone from disk.
        assert data_bytes(bj["location"]) < size_before - 3 * 200 * 1024, (size_before, data_bytes(bj["location"]))
        page.goto(f"{web}/archives?backup_job_id={bj['id']}")
        listed = [r.get_attribute("data-name") for r in page.locator("#archives tbody tr[data-name]").all()]
        assert sorted(listed) == sorted(repo.archive_names())
        page.screenshot(path=str(OUT / "archives-after-prune.png"), full_page=True)

        # Check now, with its options, on a sound repository: passes, with borg's duration.
        page.goto(f"{web}/backup-jobs/{bj['id']}")
        page.select_option("#c-scope", "all")
        page.check("#c-verify")
        page.fill("#c-sched", "0 4 * * 0")
        page.click("#check-save")
        page.wait_for_url(f"{web}/backup-jobs/{bj['id']}#checks")
        saved = op.get(f"/api/backup-jobs/{bj['id']}").json
        assert (saved["check_schedule"], saved["check_scope"], saved["check_verify_data"]) == ("0 4 * * 0", "all", True)
        assert saved["check_next_run_at"] and "0 4 * * 0" in page.inner_text("#schedules tr[data-kind=check]")
        assert page.is_checked("#c-verify")
        page.click("#check-now")
        page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
        assert wait_final(page) == "succeeded", page.inner_text("#log")
        check = api("viewer").get(f"/api/jobs/{page.url.rsplit('/', 1)[1]}").json["result"]
        assert check["ok"] is True and check["verify_data"] is True and check["backups"][0]["duration"] >= 0
        page.goto(f"{web}/backup-jobs/{bj['id']}")
        assert "no problems found" in page.inner_text("#last-check-result")
        assert "verify data" in page.inner_text("#last-check-result")
        assert page.locator("#last-prune .status-badge").inner_text() == "succeeded"
        page.screenshot(path=str(OUT / "backup-job.png"), full_page=True)

        # A corrupted segment: the check fails, and says why (its error class) on the page.
        segment = max((f for f in Path(bj["location"], "data").rglob("*") if f.name.isdigit()),
                      key=lambda f: f.stat().st_size)
        with open(segment, "r+b") as f:
            f.seek(segment.stat().st_size // 2)
            chunk = f.read(64)
            f.seek(segment.stat().st_size // 2)
            f.write(bytes(b ^ 0xFF for b in chunk))
        job = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/check", json={"scope": "repository", "verify_data": False}).json["job_id"])
        assert job["status"] == "failed", job
        failed = api("viewer").get(f"/api/jobs/{job['id']}").json["result"]["failed"]
        assert [(f["backup"], f["error_kind"]) for f in failed] == [("data", "check_failed")], failed
        assert repo.run("check", "--repository-only", repo.url, check=False).returncode != 0   # borg agrees
        page.goto(f"{web}/backup-jobs/{bj['id']}")
        assert page.inner_text("#last-check-result .error-kind") == "check failed"
        assert page.inner_text("#last-check .error-kind") == "check failed"
        page.screenshot(path=str(OUT / "backup-job-check-failed.png"), full_page=True)
        assert "local-pass-ret" not in page.content()
        page.click("#theme-toggle")
        page.screenshot(path=str(OUT / "backup-job-dark.png"), full_page=True)

        # A viewer reads the page and acts on nothing.
        seen = login(browser, web, users["viewer"])
        seen.goto(f"{web}/backup-jobs/{bj['id']}")
        assert seen.inner_text("#archives-count") == str(len(repo.archive_names()))
        assert "daily 2" in seen.inner_text("#retention")
        for action in ("#retention-form", "#prune-now", "#check-form", "button.run-now"):
            assert seen.locator(action).count() == 0, action
    finally:
        drop_local_backup(api, cl, bj)


def test_a_successful_backup_is_followed_by_its_prune(api, db, start_worker, tmp_path):
    cl, bj, repo = repo_with_archives(api, tmp_path, "retfollow", retention=RETENTION)
    op = api("operator")
    start_worker(1)
    try:
        backup = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
        assert backup["status"] == "succeeded", backup["error"]
        newest = [n for n in repo.archive_names() if n.removeprefix("data-") not in STAMPS]
        assert len(newest) == 1
        # What borg would do now, asked before the prune the worker queued runs (it waits for the lock).
        prunes = wait_for(lambda: [j for j in api("viewer").get(f"/api/jobs?backup_job_id={bj['id']}").json["items"]
                                   if j["kind"] == "prune"], timeout=60, what="the prune queued after the backup")
        assert len(prunes) == 1 and prunes[0]["created_by"] is None
        prune = wait_job(db, prunes[0]["id"])
        assert prune["status"] == "succeeded", prune["error"]
        result = api("viewer").get(f"/api/jobs/{prune['id']}").json["result"]
        kept = {a["name"]: a["rule"] for a in result["kept"]}
        assert sorted(kept) == sorted(repo.archive_names()) and newest[0] in kept
        assert kept[newest[0]] == "daily #1" and result["pruned"] and result["compacted"] is True
        assert not set(result["pruned"]) & set(repo.archive_names())
        archives = api("viewer").get(f"/api/archives?backup_job_id={bj['id']}").json["items"]
        assert sorted(a["name"] for a in archives) == sorted(repo.archive_names())
        assert "prune queued as job" in "\n".join(api("viewer").get(f"/api/jobs/{backup['id']}/log").json["lines"])
    finally:
        drop_local_backup(api, cl, bj)


def test_due_prune_and_check_fire_on_their_own_schedules(api, db, redis, schedulers, tmp_path):  # noqa: F811
    cl, bj = make_local_backup(api, tmp_path, "retsched", retention={"daily": 3}, schedule="0 2 * * *",
                               prune_schedule="30 3 * * *", check_schedule="0 4 * * 0", check_scope="archives",
                               check_verify_data=True)
    try:
        schedulers()
        due = (utcnow() + timedelta(seconds=2)).replace(microsecond=0)
        dbm.execute(db, "UPDATE backup_jobs SET prune_next_run_at=%s, check_next_run_at=%s WHERE id=%s",
                    (due, due, bj["id"]))
        q.wake_scheduler(redis)
        wait_for(lambda: len(scheduled_jobs(db, bj["id"])) >= 2, timeout=30, what="the due prune and check")
        rows = {r["kind"]: r for r in scheduled_jobs(db, bj["id"])}
        assert sorted(rows) == ["check", "prune"]   # the backup is not due
        assert json.loads(rows["prune"]["params_json"])["extravars"] == {"borgfleet_backup": "data"}
        assert json.loads(rows["check"]["params_json"])["extravars"] == {
            "borgfleet_backup": "data", "borgfleet_check_scope": "archives", "borgfleet_check_verify_data": True}
        after = api("viewer").get(f"/api/backup-jobs/{bj['id']}").json
        assert after["prune_last_run_at"] and after["check_last_run_at"] and after["last_run_at"] is None
        for kind in ("prune", "check"):
            assert rows[kind]["id"] in Queue(q.queue_name(kind), connection=redis, serializer=q.SERIALIZER).job_ids
    finally:
        for row in scheduled_jobs(db, bj["id"]):
            if row["status"] == "queued":
                api("operator").post(f"/api/jobs/{row['id']}/cancel")
        drop_local_backup(api, cl, bj)
