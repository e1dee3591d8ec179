"""The class of a failure (wrong passphrase, locked repository ...) reaches the role's report, the
job's result and the job's page, not only its message (docs/contract.md: error_kind)."""
import json
import os
import re
import subprocess
from pathlib import Path

from test_browser import browser, login, web  # noqa: F401  (fixtures: Chromium and the web process)
from uilib import REPO, drop_local_backup, make_local_backup, set_up_and_back_up, wait_for, wait_job


def _page(app, users, job_id):
    c = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").get_data(as_text=True)).group(1)
    name, password, _ = users["viewer"]
    assert c.post("/login", data={"username": name, "password": password, "csrf_token": csrf}).status_code == 302
    return c.get(f"/jobs/{job_id}").get_data(as_text=True)


def test_wrong_passphrase_and_locked_repository_are_named(api, app, users, db, start_worker, tmp_path,
                                                           browser, web):  # noqa: F811
    cl, bj = make_local_backup(api, tmp_path, "errkind")
    # A short lock wait, so a held repository fails the run at once (an admin sets extra vars).
    assert api("admin").put(f"/api/servers/{cl['id']}",
                            json={"vars": {"borgfleet_borg_base_dir": str(tmp_path / "errkind-base"),
                                           "borgfleet_lock_wait": 1}}).status_code == 200
    start_worker(1)
    op = api("operator")
    try:
        set_up_and_back_up(api, db, cl, bj)

        # The repository held by another borg (a lock that is not stale: its process lives).
        repo = tmp_path / "errkind-repos" / "errkind" / "data"
        env = dict(os.environ, BORG_PASSPHRASE="local-pass-errkind", BORG_BASE_DIR=str(tmp_path / "errkind-base"))
        holder = subprocess.Popen(["borg", "with-lock", str(repo), "sleep", "120"], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: list(repo.glob("lock.exclusive")) or None, timeout=30, what="borg's repository lock")
            locked = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
        finally:
            holder.terminate()
            holder.wait(timeout=30)
        assert locked["status"] == "failed"
        assert [(f["backup"], f["error_kind"]) for f in json.loads(locked["result_json"])["failed"]] == [("data", "locked")], locked

        # Then the passphrase the job holds stops opening the repository.
        assert op.put(f"/api/backup-jobs/{bj['id']}", json={"passphrase": "not-the-passphrase"}).status_code == 200
        wrong = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
        assert wrong["status"] == "failed"
        assert [(f["backup"], f["error_kind"]) for f in json.loads(wrong["result_json"])["failed"]] == [("data", "wrong_passphrase")]
        api_view = api("viewer").get(f"/api/jobs/{wrong['id']}").json
        assert api_view["result"]["failed"][0]["error_kind"] == "wrong_passphrase"
        page = _page(app, users, wrong["id"])
        assert re.search(r'<td class="error-kind">wrong passphrase</td>', page), page
        assert "not-the-passphrase" not in page and "not-the-passphrase" not in str(api_view)
        # As a person sees it: the page in Chromium, kept for a reviewer under tests/output/.
        shown = login(browser, web, users["viewer"])
        shown.goto(f"{web}/jobs/{wrong['id']}")
        assert shown.inner_text("#failures .error-kind") == "wrong passphrase"
        out = Path(REPO) / "tests" / "output"
        out.mkdir(exist_ok=True)
        shown.screenshot(path=str(out / "job-failed-error-class.png"), full_page=True)
        # Nothing was lost: the first archive is still the only one, and it opens.
        listed = subprocess.run(["borg", "list", "--short", str(repo)], env=env, capture_output=True, text=True)
        assert listed.returncode == 0 and len(listed.stdout.split()) == 1 and listed.stdout.startswith("data-")
    finally:
        drop_local_backup(api, cl, bj)
