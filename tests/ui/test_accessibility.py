"""Every page in English-light and French-dark: a Chromium screenshot of each for a reviewer
(tests/output/a11y/), and axe-core (pinned in ui/package.json, injected by the test: the app never
serves it) reports no serious or critical violation — text contrast (WCAG AA) included — in
either theme."""
import json
import os
from pathlib import Path

import pytest

from test_browser import CHROMIUM, browser, login, web  # noqa: F401 (fixtures)
from uilib import drop_local_backup, make_local_backup, set_up_and_back_up

OUT = Path(__file__).resolve().parents[1] / "output" / "a11y"
AXE = Path(__file__).resolve().parents[2] / "ui" / "node_modules" / "axe-core" / "axe.min.js"
PAGES = ["/", "/servers", "/servers/new", "/backup-jobs", "/backup-jobs/new", "/pools", "/archives", "/restore",
         "/recovery", "/jobs", "/workers", "/notifications", "/settings/notifications"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) or not AXE.exists(),
                                reason="Debian's chromium or axe-core is not installed (make setup, make ui-deps)")


def axe_problems(page):
    """axe-core's serious and critical violations of the page: [(rule, impact, [targets])]."""
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))")
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:5]) for v in json.loads(result)["violations"]
            if v["impact"] in ("serious", "critical")]


def test_every_page_in_english_light_and_french_dark(api, db, start_worker, tmp_path, browser, web, users):  # noqa: F811
    cl, bj = make_local_backup(api, tmp_path, "a11y")
    start_worker(1)
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        job = set_up_and_back_up(api, db, cl, bj)
        extra = [f"/servers/{cl['id']}", f"/backup-jobs/{bj['id']}", f"/jobs/{job['id']}"]
        problems = {}
        for lang, theme in (("en", "light"), ("fr", "dark")):
            assert api("admin").put("/api/me/preferences", json={"language": lang, "theme": theme}).status_code == 200
            # The test injects axe-core itself: its context bypasses the app's CSP (the app is unchanged).
            ctx = browser.new_context(bypass_csp=True, locale="en-GB")
            page = ctx.new_page()
            page.goto(web + "/login")
            page.fill("input[name=username]", users["admin"][0])
            page.fill("input[name=password]", users["admin"][1])
            page.click("#login")
            page.wait_for_url(web + "/")
            for path in PAGES + extra:
                resp = page.goto(web + path)
                assert resp.status == 200, (path, resp.status)
                assert page.get_attribute("html", "lang") == lang and page.get_attribute("html", "data-bs-theme") == theme
                name = path.strip("/").replace("/", "-") or "dashboard"
                page.screenshot(path=str(OUT / f"{name}-{lang}-{theme}.png"), full_page=True)
                found = axe_problems(page)
                if found:
                    problems[f"{path} {lang}-{theme}"] = found
            ctx.close()
        assert not problems, "\n".join(f"{where}: {rule} ({impact}) {targets}" for where, found in problems.items()
                                        for rule, impact, targets in found)
    finally:
        api("admin").put("/api/me/preferences", json={"language": None, "theme": None})
        drop_local_backup(api, cl, bj)
