"""The restore pages in Chromium, for real: pick the backup job and an archive, walk the archive level
by level (the first browse indexes the archive, an index_archive run the page waits for; every level is
then read from the index), page a large directory, open a file's versions, select two files, dry run (nothing written), restore them into another directory and
compare them with cmp. Screenshots of each step go to tests/output/restore/ for a reviewer."""
import os
import re
import subprocess
from pathlib import Path

import pytest

from restorelib import NEW, OLD, PASS, drop_source, make_source
from test_browser import CHROMIUM, browser, login, wait_final, web  # noqa: F401 (fixtures)

OUT = Path(__file__).resolve().parents[1] / "output" / "restore"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")


def follow(page, target):
    """Click what leads to another page (a selector or a locator) and wait until that page has loaded,
    so that nothing is read from the page before it."""
    with page.expect_navigation(timeout=60_000):
        (page.locator(target) if isinstance(target, str) else target).click()


def listed(page, timeout=120_000):
    """Wait for the listing the page is waiting for (its job ended and the page reloaded)."""
    page.wait_for_selector("#entries, #job-failed", timeout=timeout)
    assert page.locator("#job-failed").count() == 0, page.inner_text("#job-failed")
    return [r.get_attribute("data-path") for r in page.locator("#entries tbody tr[data-path]").all()]


def test_browse_select_dry_run_and_restore(api, db, start_worker, tmp_path, browser, web, users):  # noqa: F811
    start_worker(1)
    s = make_source(api, db, tmp_path, name="rb")
    prefix, data = s["prefix"], s["data"]
    OUT.mkdir(parents=True, exist_ok=True)
    page = login(browser, web, users["operator"])

    # Restore (navigation): the backup job, its archives, Browse on the newest.
    follow(page, "#nav a:has-text('Restore')")
    page.select_option("#backup_job_id", label="rb-src / data")
    follow(page, "#show-archives")
    assert page.locator("#restore-archives tr[data-name]").count() == 2
    page.screenshot(path=str(OUT / "1-pick-archive.png"), full_page=True)
    follow(page, page.locator(f"#restore-archives tr[data-name='{NEW}'] button.browse"))

    # The archive is indexed first (the page waits), then its top, and down level by level (clicking
    # each name: the first two levels; the rest of the way by the page's own address).
    parts = prefix.split("/")
    page.wait_for_selector("#waiting", timeout=30_000)
    page.screenshot(path=str(OUT / "1b-indexing.png"), full_page=True)
    assert listed(page) == [parts[0]]
    follow(page, page.locator(f"#entries tr[data-path='{parts[0]}'] button.open-dir"))
    assert listed(page) == ["/".join(parts[:2])]
    aid = re.search(r"/archives/(\d+)/browse", page.url).group(1)
    page.goto(f"{web}/archives/{aid}/browse?path={prefix}")
    assert listed(page) == [f"{prefix}/{n}" for n in ("many", "sub", "a.txt", "b.txt")]
    row = page.locator(f"#entries tr[data-path='{prefix}/b.txt']")
    assert row.locator("td.size").inner_text() == "10.0 KiB" and row.locator("td.type").inner_text() == "file"
    assert "-rw-r--r--" in row.inner_text() and "root:root" in row.inner_text()
    assert page.locator("#crumbs li").count() == len(prefix.split("/")) + 1
    page.screenshot(path=str(OUT / "2-browse.png"), full_page=True)

    # A large directory is paged (130 entries, 100 a page), and the breadcrumb leads back.
    follow(page, page.locator(f"#entries tr[data-path='{prefix}/many'] button.open-dir"))
    assert len(listed(page)) == 100 and page.locator("#pages li").count() == 2
    follow(page, page.locator("#pages button[value='2']"))
    assert listed(page) == [f"{prefix}/many/f{i:03d}.txt" for i in range(100, 130)]
    page.screenshot(path=str(OUT / "3-paged.png"), full_page=True)
    follow(page, page.locator("#crumbs button", has_text=data.name))
    assert len(listed(page)) == 4

    # A file's versions: the old archive is not indexed yet, so the search playbook reads both archives
    # (and the old one is queued for indexing, ahead of the search); asked again, the index answers.
    for source in ("read by borg", "from the index"):
        follow(page, page.locator(f"#entries tr[data-path='{prefix}/a.txt'] button.versions"))
        page.wait_for_selector(".found, #job-failed, #not-found", timeout=120_000)
        assert source in page.inner_text("#searched")
        changes = page.locator(".found .changes tbody tr")
        assert changes.count() == 2
        assert OLD in changes.nth(0).inner_text() and "added" in changes.nth(0).inner_text()
        assert NEW in changes.nth(1).inner_text() and "modified" in changes.nth(1).inner_text()
        assert page.locator(".found .holding button.restore-version").count() == 2
        page.screenshot(path=str(OUT / f"4-versions-{source.split()[-1]}.png"), full_page=True)
        page.go_back()
        assert len(listed(page)) == 4

    # Select two files, then the wizard: another directory, a dry run first.
    for name in ("a.txt", "b.txt"):
        page.locator(f"#entries tr[data-path='{prefix}/{name}'] input[name=sel]").check()
    assert page.inner_text("#selected-count") == "2 selected"
    follow(page, "#restore-selected")
    assert page.locator("#restore-paths li").count() == 2
    dest = tmp_path / "from-browser"
    page.check("#where-directory")
    page.fill("#target_dir", str(dest))
    page.screenshot(path=str(OUT / "5-wizard.png"), full_page=True)
    follow(page, "#dry-run")
    page.wait_for_selector("#restore-result", timeout=180_000)
    assert page.get_attribute("#restore-result", "data-dry-run") == "yes"
    files = page.inner_text("#restored-files")
    assert f"{dest}/{prefix}/a.txt" in files and f"{dest}/{prefix}/b.txt" in files
    assert not dest.exists()
    page.screenshot(path=str(OUT / "6-dry-run.png"), full_page=True)

    # The dry run's page runs the same restore for real.
    follow(page, "#restore-again #restore-go")
    assert re.search(r"/jobs/[0-9a-f-]{36}$", page.url)
    page.wait_for_selector("#restore-result", timeout=180_000)
    assert wait_final(page) == "succeeded"
    assert page.get_attribute("#restore-result", "data-dry-run") == "no"
    assert "2 item(s) written" in page.inner_text("#restore-summary")
    for name in ("a.txt", "b.txt"):
        assert subprocess.run(["cmp", str(dest / prefix / name), str(data / name)]).returncode == 0, name
    assert sorted(p.name for p in (dest / prefix).iterdir()) == ["a.txt", "b.txt"]
    assert PASS not in page.content()
    page.screenshot(path=str(OUT / "7-restored.png"), full_page=True)

    # A viewer browses too, but has no restore button and may not open the wizard.
    viewer = login(browser, web, users["viewer"])
    viewer.goto(web + "/archives")
    follow(viewer, viewer.locator(f"#archives tr[data-name='{NEW}'] button.browse"))
    assert listed(viewer) and viewer.locator("#restore-selected").count() == 0
    drop_source(api, s)
