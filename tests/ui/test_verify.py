"""Verification from the service, for real: "Verify now" (in Chromium) on a database backup queues verify.yml, a
worker runs it through ansible-runner on a local client whose newest archive holds a crashed
PostgreSQL (what a snapshot holds), and the report - restored, rows of the largest table, timings -
is the job's result and its page. A backup that does not restore fails its job with the reason and
keeps the report. Nothing is left mounted or running, and the repository checks clean."""
import os
import re
import tempfile
from pathlib import Path

import pytest

from tests.lib.borgrepo import BorgRepo
from tests.recovery.dbs import PG_ROWS, crashed_postgres
from test_browser import CHROMIUM, browser, login, wait_final, web  # noqa: F401 (fixtures)
from uilib import wait_job

MOUNTS = "/run/borgfleet/mounts/ir-verify-"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")


def test_verify_now_proves_the_newest_database_archive_restores(api, users, db, start_worker, test_root,
                                                                 browser, web):
    root = Path(tempfile.mkdtemp(prefix="ui-verify-", dir=test_root))
    root.chmod(0o755)
    pgdata = crashed_postgres(root / "pg")
    (root / "files").mkdir()
    (root / "files" / "readme.txt").write_text("no database in here\n")
    op = api("operator")
    cl = api("admin").post("/api/servers", json={"name": "verify-cl", "role": "client", "connection": "local",
                                       "local_pool_path": str(root / "repos"),
                                       "vars": {"borgfleet_borg_base_dir": str(root / "base")}}).json
    jobs = {}
    for name, source in (("pg", pgdata), ("nodb", root / "files")):
        bj = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": name, "passphrase": f"{name}-pass-123",
                                               "databases": [{"engine": "postgresql", "method": "snapshot"}]})
        assert bj.status_code == 201, bj.json
        repo = BorgRepo(bj.json["location"], f"{name}-pass-123", base_dir=root / "base")
        Path(bj.json["location"]).parent.mkdir(parents=True, exist_ok=True)
        repo.run("init", "--encryption", "repokey-blake2", bj.json["location"])
        repo.create(f"{name}-2026-11-24T02:00:00", str(root / "files"))   # older: not the one verified
        repo.create(f"{name}-2026-11-25T02:00:00", str(source))
        jobs[name] = (bj.json, repo)
    files = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "files", "passphrase": "files-pass-1",
                                              "paths": [str(root / "files")]}).json
    start_worker(1)

    # In the browser: the database backup's row, Verify now, the live job page with the report.
    page = login(browser, web, users["operator"])
    page.goto(web + "/backup-jobs")
    row = page.locator("#backup-jobs tr[data-name='verify-cl/pg']")
    assert "postgresql database (snapshot)" in row.inner_text()
    row.locator("button.verify-now").click()
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    assert wait_final(page, timeout=300_000) == "succeeded", page.inner_text("#log")
    job = page.url.rsplit("/", 1)[1]
    row = wait_job(db, job, timeout=60)
    got = api("viewer").get(f"/api/jobs/{job}").json
    assert row["status"] == "succeeded", (row["error"], got["result"])
    report = got["result"]
    assert report["passed"] is True and len(report["backups"]) == 1, report
    entry = report["backups"][0]
    assert entry["backup"] == "pg" and entry["archive"] == "pg-2026-11-25T02:00:00" and entry["passed"] is True
    assert entry["engine"] == "postgresql" and entry["rows"] == PG_ROWS + 1
    assert entry["largest_table"] == "postgres:public.accounts" and "postgres" in entry["databases"]
    assert 0 < entry["ready_seconds"] <= entry["total_seconds"]
    page.reload()
    report_row = page.locator("#verify-report tr.passed")
    assert report_row.count() == 1 and "pg-2026-11-25T02:00:00" in report_row.inner_text()
    assert str(PG_ROWS + 1) in report_row.inner_text() and "pg-pass-123" not in page.content()
    # The report links to the archive: its row in the backup job's archive list.
    assert report_row.locator("a.archive-link").get_attribute("href") == \
        f"/archives?backup_job_id={jobs['pg'][0]['id']}#archive-pg-2026-11-25T02:00:00"
    assert "pg-pass-123" not in "\n".join(api("viewer").get(f"/api/jobs/{job}/log").json["lines"])

    bj_bad, repo_bad = jobs["nodb"]
    job = op.post(f"/api/backup-jobs/{bj_bad['id']}/verify").json["job_id"]
    row = wait_job(db, job, timeout=300)
    got = api("viewer").get(f"/api/jobs/{job}").json
    assert row["status"] == "failed" and "verification failed: nodb" in row["error"], row["error"]
    entry = got["result"]["backups"][0]
    assert got["result"]["passed"] is False and entry["passed"] is False
    assert "no PostgreSQL or MariaDB data directory found" in entry["msg"], entry
    page.goto(web + f"/jobs/{job}")
    assert "no PostgreSQL or MariaDB data directory found" in page.locator("#verify-report tr.failed").inner_text()
    # A file backup has no Verify now button.
    page.goto(web + "/backup-jobs")
    assert page.locator("#backup-jobs tr[data-name='verify-cl/files'] button.verify-now").count() == 0

    assert MOUNTS not in open("/proc/self/mountinfo").read()
    assert not list(Path("/var/lib/borgfleet/recovery").glob("ir-verify-*"))
    for bj, repo in jobs.values():
        repo.run("check", bj["location"])
        assert repo.archive_names() == [f"{bj['name']}-2026-11-24T02:00:00", f"{bj['name']}-2026-11-25T02:00:00"]
    for bj in [files] + [bj for bj, _ in jobs.values()]:
        assert op.delete(f"/api/backup-jobs/{bj['id']}").status_code == 204
    assert op.delete(f"/api/servers/{cl['id']}").status_code == 204
