"""Issue 3's done-when over real SSH, through the pages only, in a real headless Chromium: an
admin created by the CLI logs in, adds a backup server with a storage pool and a client (each a
real sshd on loopback), a backup job, runs setup and Run now, watches the live log until it
ends, sees the archive with its stats, and the archive is read back with borg over SSH."""
import filecmp
import json
import os
import re
import secrets
import subprocess
import sys
import time

import pytest

from test_browser import CHROMIUM, browser, wait_final, web  # noqa: F401 (fixtures)
from tests.lib.borgrepo import BorgFailed
from uilib import REPO, add_ssh_client, worker_env
from tests.lib import fleet as fl
from tests.lib.trees import compare_trees, make_tree

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium is not installed (make ui-deps)")


@pytest.fixture()
def fleet_hosts(test_root, controller, sshd_factory):
    # Names and dirs of their own: test_e2e_ssh.py's hosts share the session's test_root.
    d = test_root / "br-server"
    d.mkdir(mode=0o755)
    server = fl.Server(name="br-server", sshd=sshd_factory("br-server"), dir=d, user=f"bfb{secrets.token_hex(3)}",
                       pools=[{"name": "main", "path": str(d / "pool")}])
    cd = test_root / "br-client"
    cd.mkdir(mode=0o700)
    make_tree(cd / "data", seed="br-client")
    client = fl.Client(name="br-client", sshd=sshd_factory("br-client"), dir=cd, server=server,
                       backups=[{"name": "data", "paths": [str(cd / "data")], "exclude": ["*.tmp"],
                                 "passphrase": fl.passphrase()}])
    # Another client of the same server, with a backup of its own (so setup gives it a key): the
    # browser restores the first client's files onto it.
    od = test_root / "br-other"
    od.mkdir(mode=0o700)
    (od / "own").mkdir()
    (od / "own" / "note.txt").write_text("br-other's own files\n")
    other = fl.Client(name="br-other", sshd=sshd_factory("br-other"), dir=od, server=server,
                      backups=[{"name": "own", "paths": [str(od / "own")], "passphrase": fl.passphrase()}])
    yield server, client, other
    server.remove_user()


def cli_admin():
    """A new admin the way an operator gets one: the CLI prints the password once."""
    name = f"br_admin_{secrets.token_hex(3)}"
    out = subprocess.run([sys.executable, "-m", "borgfleet_ui", "create-admin", "--username", name],
                         env=worker_env(), cwd=str(REPO), capture_output=True, text=True, check=True).stdout
    return name, re.search(r"with password: (\S+)", out).group(1)


def extra_vars(controller, host):
    """Host vars the form has no field for, as JSON for "Extra vars" (the e2e test's split)."""
    common = fl.inventory(controller, [], [])["all"]["vars"]
    hv = {k: v for k, v in host.hostvars().items()
          if k not in ("ansible_host", "ansible_port", "borgfleet_storage_pools", "borgfleet_backups",
                       "borgfleet_backup_server")}
    hv.update({k: v for k, v in common.items() if k != "ansible_user"})
    return json.dumps(hv)


def fill_server(page, name, role, sshd, vars_json):
    page.fill("#add-server input[name=name]", name)
    page.select_option("#add-server select[name=role]", role)
    page.fill("#add-server input[name=address]", sshd.address)
    page.fill("#add-server input[name=port]", str(sshd.port))
    page.fill("#add-server input[name=ssh_user]", "root")
    page.select_option("#add-server select[name=connection]", "ssh")
    page.fill("#add-server textarea[name=vars]", vars_json)


def watch_live(page, timeout=180):
    """Poll the job page (never reloaded) until joblog.js marks it final; returns the final status
    and whether log lines appeared while the job was still unfinished (the log streams live)."""
    seen_live = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        final = page.get_attribute("body", "data-final")
        if final:
            return final, seen_live
        if page.inner_text("#log").strip() and page.inner_text("#status") in ("running", "waiting"):
            seen_live = True
        page.wait_for_timeout(200)
    raise AssertionError(f"job page not final after {timeout}s; log:\n{page.inner_text('#log')}")


def test_browser_ssh_fleet(browser, web, start_worker, controller, fleet_hosts, tmp_path, api):  # noqa: F811
    server, client, other = fleet_hosts
    b = client.backups[0]
    start_worker(1)
    admin = cli_admin()

    page = browser.new_context().new_page()
    page.goto(web + "/")
    assert "/login" in page.url
    page.fill("input[name=username]", admin[0])
    page.fill("input[name=password]", admin[1])
    page.click("#login")
    page.wait_for_url(web + "/")
    assert page.inner_text("h1") == "Dashboard"

    # Backup server with its storage pool, then the client pointing at it.
    page.goto(web + "/servers")
    fill_server(page, server.name, "backup_server", server.sshd, extra_vars(controller, server))
    page.fill("#add-server input[name=pool_name]", server.pools[0]["name"])
    page.fill("#add-server input[name=pool_path]", server.pools[0]["path"])
    page.click("#add-server-btn")
    page.wait_for_url(web + "/servers")
    row = page.locator(f"#servers tr[data-name={server.name}]")
    assert f"{server.pools[0]['name']}: {server.pools[0]['path']}" in row.inner_text(), page.content()
    fill_server(page, client.name, "client", client.sshd, extra_vars(controller, client))
    page.select_option("#add-server select[name=backup_server_id]", label=server.name)
    page.click("#add-server-btn")
    page.wait_for_url(web + "/servers")
    row = page.locator(f"#servers tr[data-name={client.name}]")
    assert server.name in row.inner_text() and "not set up" in row.inner_text(), page.content()

    page.goto(web + "/backup-jobs")
    page.select_option("#add-backup select[name=client_id]", label=client.name)
    page.fill("#add-backup input[name=name]", b["name"])
    page.fill("#add-backup textarea[name=paths]", "\n".join(b["paths"]))
    page.fill("#add-backup textarea[name=exclude]", "\n".join(b["exclude"]))
    page.fill("#add-backup input[name=passphrase]", b["passphrase"])
    page.click("#add-backup-btn")
    page.wait_for_url(web + "/backup-jobs")
    bj_row = page.locator(f"#backup-jobs tr[data-name='{client.name}/{b['name']}']")
    assert client.repo_url(b["name"]) in bj_row.inner_text(), page.content()

    # The other client (through the API: the page's own steps were just shown) with its own backup.
    bs_id = next(x["id"] for x in api("viewer").get("/api/servers").json["items"] if x["name"] == server.name)
    ot = add_ssh_client(api, controller, other, bs_id)
    assert api("operator").post("/api/backup-jobs", json={"client_id": ot["id"], **other.backups[0]}).status_code == 201

    # Setup from the backup server's row covers its clients too.
    page.goto(web + "/servers")
    page.locator(f"#servers tr[data-name={server.name}] button.setup-btn").click()
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    assert wait_final(page) == "succeeded", (page.inner_text("#error"), page.inner_text("#log"))
    assert "PLAY RECAP" in page.inner_text("#log")
    page.goto(web + "/servers")
    for name in (server.name, client.name):
        assert page.locator(f"#servers tr[data-name={name}] td.setup").inner_text() == "ok"

    page.goto(web + "/backup-jobs")
    page.locator(f"#backup-jobs tr[data-name='{client.name}/{b['name']}'] button.run-now").click()
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
    job_url = page.url
    final, seen_live = watch_live(page)
    log = page.inner_text("#log")
    assert final == "succeeded", (page.inner_text("#error"), log)
    assert seen_live, "no log line was shown while the backup was still running"
    assert page.url == job_url and "borgfleet backup result" in log and "PLAY RECAP" in log
    assert b["passphrase"] not in page.content()

    page.goto(web + "/archives")
    rows = page.locator("#archives tr[data-name]")
    assert rows.count() == 1, page.inner_text("#archives")
    row = rows.first
    name = row.get_attribute("data-name")
    cells = row.locator("td")
    assert cells.nth(1).inner_text() == f"{client.name} / {b['name']}" and cells.nth(2).inner_text() == server.name
    # Sizes read as "1.2 MiB"; the exact bytes are in the cells' data-bytes.
    nfiles = int(cells.nth(4).inner_text())
    original, dedup = (int(cells.nth(i).get_attribute("data-bytes")) for i in (5, 6))
    assert cells.nth(5).inner_text().endswith(("B", "KiB", "MiB", "GiB"))

    # Read back with borg over SSH (client key, harness known_hosts): same name, same figures.
    repo = client.repo(b["name"], controller)
    assert repo.archive_names() == [name]
    stats = json.loads(repo.run("info", "--json", repo.archive(name)).stdout)["archives"][0]["stats"]
    src = client.dir / "data"
    regular = [p for p in src.rglob("*") if p.is_file() and not p.is_symlink() and p.suffix != ".tmp"]
    content = sum(p.stat().st_size for p in regular)
    assert nfiles == stats["nfiles"] == len(regular) and stats["original_size"] == content
    # The page shows borg create's figures, which also count the archive's item metadata stream.
    assert content <= original <= content + 4096 and 0 < dedup <= original, (original, content)
    one = src / "bin" / "random.dat"
    restored = repo.extract(name, tmp_path / "one", str(one).lstrip("/"))
    assert filecmp.cmp(one, restored / str(one).lstrip("/"), shallow=False)
    whole = repo.extract(name, tmp_path / "whole")
    assert compare_trees(src, whole / str(src).lstrip("/"), ignore=["scratch.tmp", "sub/deep/also.tmp"]) == []

    # Restore onto the other client, through the pages: browse the archive down to the tree, pick two
    # files, the wizard's "another client" with a directory there. br-other reads br-client's
    # repository with its own key, through a temporary grant on the backup server (docs/security.md).
    page.goto(web + "/archives")
    with page.expect_navigation():
        page.locator(f"#archives tr[data-name='{name}'] button.browse").click()
    prefix = str(src).lstrip("/")
    aid = re.search(r"/archives/(\d+)/browse", page.url).group(1)
    page.goto(f"{web}/archives/{aid}/browse?path={prefix}")
    if page.locator("#list").count():
        with page.expect_navigation():
            page.click("#list")
    page.wait_for_selector("#entries, #job-failed", timeout=180_000)
    picked = sorted(p for p in src.iterdir() if p.is_file() and not p.is_symlink() and p.suffix != ".tmp")[:2]
    assert len(picked) == 2
    for p in picked:
        page.locator(f"#entries tr[data-path='{prefix}/{p.name}'] input[name=sel]").check()
    with page.expect_navigation():
        page.click("#restore-selected")
    page.select_option("#client_id", label=other.name)
    page.check("#where-directory")
    onto = other.dir / "from-br-client"
    page.fill("#target_dir", str(onto))
    with page.expect_navigation():
        page.click("#restore-go")
    assert wait_final(page) == "succeeded", (page.inner_text("#error"), page.inner_text("#log"))
    for p in picked:
        assert filecmp.cmp(p, onto / prefix / p.name, shallow=False), p
    page.screenshot(path=str(tmp_path / "restored-onto-other.png"), full_page=True)
    # The grant is gone: the other client's key is refused on br-client's repository again.
    foreign = client.repo(b["name"], controller, ssh_key=other.ssh_key)
    with pytest.raises(BorgFailed, match="not allowed|PathNotAllowed|Permission denied"):
        foreign.run("list", foreign.url)

    ids = {s["name"]: s["id"] for s in api("viewer").get("/api/servers").json["items"]}
    for cname in (client.name, other.name):
        for bj in api("viewer").get("/api/backup-jobs", query_string={"client_id": ids[cname]}).json["items"]:
            api("operator").delete(f"/api/backup-jobs/{bj['id']}")
        api("operator").delete(f"/api/servers/{ids[cname]}")
    api("operator").delete(f"/api/servers/{ids[server.name]}")
