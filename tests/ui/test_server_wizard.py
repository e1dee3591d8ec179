"""Add a server, the wizard (/servers/new) and its Test connection (fleet/probe.py, POST
/api/servers/test-connection), against real sshd instances on loopback: a closed port, a key the
host does not accept (the public key to install shown), a changed and an unknown host key, a
non-root user without sudo, and a good connection with pool paths checked on the host (exists,
creatable, or not) and their free space. Then, in Chromium, the whole wizard: a wrong port and its
message, the right port, Save, setup and the capabilities detection queued by themselves.
Screenshots in tests/output/wizard-server/."""
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from borgfleet_ui import db as dbm
from borgfleet_ui.fleet import probe
from test_browser import CHROMIUM, browser, login, wait_final, web  # noqa: F401 (fixtures)
from uilib import wait_for, wait_job
from tests.lib.sshd import free_port, keygen

OUT = Path(__file__).resolve().parents[1] / "output" / "wizard-server"


def service_vars(controller, known_hosts=None, key=None):
    """The extra vars that make the service use the harness's key and pinned known_hosts (as
    tests/lib/fleet.py's inventory does for the CLI)."""
    return {"ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_private_key_file": str(key or controller.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts or controller.known_hosts}"
                                       " -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"}


@pytest.fixture(scope="module")
def wiz_host(sshd_factory):
    return sshd_factory("wiz-host")


def fingerprint(pub_line):
    out = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=pub_line, capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


def test_probe_verdicts_on_a_real_sshd(api, controller, wiz_host, tmp_path):
    admin = api("admin")
    base = {"role": "client", "address": wiz_host.address, "port": wiz_host.port, "ssh_user": "root",
            "vars": service_vars(controller)}

    def probe_(**changes):
        resp = admin.post("/api/servers/test-connection", json={**base, **changes})
        assert resp.status_code == 200, resp.json
        return resp.json

    r = probe_()
    assert r["ok"] is True and r["verdict"] == "ok" and r["uid"] == 0 and r["sudo"] is None, r
    assert r["banner"].startswith("SSH-2.0-OpenSSH")

    closed = free_port(wiz_host.address)
    r = probe_(port=closed)
    assert (r["ok"], r["verdict"]) == (False, "port_closed")
    assert f"port {closed} on {wiz_host.address} is closed (connection refused)" in r["message"]

    # Something else listens there: it answers, but not with SSH's banner.
    with socket.create_server((wiz_host.address, 0)) as other_service:
        threading.Thread(target=lambda: other_service.accept()[0].sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
                         daemon=True).start()
        r = probe_(port=other_service.getsockname()[1])
    assert r["verdict"] == "not_ssh" and "answers, but not as an SSH server ('HTTP/1.1 400 Bad Request')" \
        in r["message"], r

    # A key the host does not accept: refused, and the public key to install is the one offered.
    stranger = tmp_path / "stranger"
    pub = keygen(stranger, comment="wizard's stranger")   # a quote: the install command must quote it
    r = probe_(vars=service_vars(controller, key=stranger))
    assert r["verdict"] == "auth_refused" and "refused the service's key for user root" in r["message"]
    assert r["public_key"] == pub and r["public_key_file"] == f"{stranger}.pub"
    assert r["authorized_keys"] == "~root/.ssh/authorized_keys" and r["copy_id"].startswith("ssh-copy-id -i ")
    assert shlex.split(r["install_command"])[6:8] == ["echo", pub]

    # The pinned key is another one: "changed", with the key the host now shows, never connected to.
    other = tmp_path / "other_host_key"
    other_pub = keygen(other)
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(f"[{wiz_host.address}]:{wiz_host.port} {' '.join(other_pub.split()[:2])}\n")
    r = probe_(vars=service_vars(controller, known_hosts=changed))
    assert r["verdict"] == "host_key_changed" and f"not the key pinned in {changed}" in r["message"]
    real = fingerprint(wiz_host.host_pubkey)
    assert r["fingerprint"] == real and r["offending"] == f"{changed}:1"
    assert [k["fingerprint"] for k in r["host_keys"]] == [real]
    assert r["host_keys"][0]["known_hosts_line"] == wiz_host.known_hosts_line

    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    r = probe_(vars=service_vars(controller, known_hosts=empty))
    assert r["verdict"] == "host_key_unknown" and [k["fingerprint"] for k in r["host_keys"]] == [real]
    assert empty.read_text() == ""          # the probe never pins a key by itself

    # Trust this key: only the fingerprint the person compared, only while none is pinned.
    trust = {**base, "vars": service_vars(controller, known_hosts=empty)}
    wrong = admin.post("/api/servers/trust-host-key", json={**trust, "fingerprint": fingerprint(other_pub)})
    assert wrong.status_code == 400 and "does not offer a key with fingerprint" in wrong.json["error"]
    pinned = admin.post("/api/servers/trust-host-key", json={**trust, "fingerprint": real})
    assert pinned.status_code == 200, pinned.json
    assert empty.read_text() == wiz_host.known_hosts_line + "\n"
    assert probe_(vars=trust["vars"])["verdict"] == "ok"
    again = admin.post("/api/servers/trust-host-key", json={**trust, "fingerprint": real})
    assert again.status_code == 400 and "already pins a key" in again.json["error"]
    replace = admin.post("/api/servers/trust-host-key", json={**base, "vars": service_vars(controller, changed),
                                                              "fingerprint": real})
    assert replace.status_code == 400 and "replaced by hand" in replace.json["error"]
    assert changed.read_text().count("\n") == 1

    # Extra vars name files on the service host: admins only, as when saving.
    assert api("operator").post("/api/servers/test-connection", json=base).status_code == 403
    assert api("viewer").post("/api/servers/test-connection", json=base).status_code == 403
    bad = admin.post("/api/servers/test-connection", json={**base, "address": "-oProxyCommand=x"})
    assert bad.status_code == 400 and "address" in bad.json["error"]


def test_probe_finds_a_user_without_sudo(api, controller, wiz_host):
    """A real non-root account (key accepted by the loopback sshd's <dir>/%u_keys): no sudoers entry,
    then passwordless sudo (a sudoers.d file of its own, removed after)."""
    name = f"bfz{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", name],
                   check=True, capture_output=True)
    keys = wiz_host.dir / f"{name}_keys"
    sudoers = Path(f"/etc/sudoers.d/borgfleet-test-{name}")
    body = {"role": "client", "address": wiz_host.address, "port": wiz_host.port, "ssh_user": name,
            "vars": service_vars(controller)}
    try:
        keys.write_text(controller.key.with_suffix(".pub").read_text())
        keys.chmod(0o644)     # sshd reads it as the user; StrictModes wants it owned by root or the user
        r = api("admin").post("/api/servers/test-connection", json=body).json
        assert r["verdict"] == "sudo_missing" and r["sudo"] is False and r["uid"] > 0, r
        assert f"user {name} has no passwordless sudo" in r["message"] and "password is required" in r["message"]
        # With sudo it still cannot work: the playbooks run as the SSH user (no become).
        sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
        subprocess.run(["visudo", "-cf", str(sudoers)], check=True, capture_output=True)
        r = api("admin").post("/api/servers/test-connection", json=body).json
        assert r["verdict"] == "root_needed" and r["sudo"] is True and not r["ok"], r
        assert "without become" in r["message"] and "connect as root" in r["message"]
    finally:
        sudoers.unlink(missing_ok=True)
        keys.unlink(missing_ok=True)
        subprocess.run(["userdel", name], capture_output=True)


def test_probe_checks_pool_paths_on_the_host(api, controller, wiz_host, test_root):
    d = test_root / f"wiz-pools-{secrets.token_hex(3)}"
    (d / "existing").mkdir(parents=True)
    (d / "a-file").write_text("not a directory\n")
    pools = [{"name": "main", "path": str(d / "existing")}, {"name": "new", "path": str(d / "new" / "deeper")},
             {"name": "bad", "path": str(d / "a-file" / "pool")}]
    body = {"role": "backup_server", "name": "wiz-bs", "address": wiz_host.address, "port": wiz_host.port,
            "vars": service_vars(controller), "pools": pools}
    r = api("admin").post("/api/servers/test-connection", json=body).json
    assert r["verdict"] == "ok" and r["ok"] is False and "pool bad: cannot be created" in r["message"]
    by_name = {p["name"]: p for p in r["pools"]}
    assert (by_name["main"]["state"], by_name["main"]["usable"]) == ("exists", True)
    assert (by_name["new"]["state"], by_name["new"]["usable"]) == ("creatable", True)
    assert f"under {d}" in by_name["new"]["message"]
    assert (by_name["bad"]["state"], by_name["bad"]["usable"]) == ("not_creatable", False)
    assert f"{d / 'a-file'} is a regular file" in by_name["bad"]["message"]
    # The host is this machine: the figures are its filesystem's (free space moves with other tests).
    fs = os.statvfs(d)
    for p in by_name.values():
        assert p["total_bytes"] == fs.f_blocks * fs.f_frsize
        assert abs(p["free_bytes"] - fs.f_bavail * fs.f_frsize) < 0.02 * p["total_bytes"]
    assert not (d / "new").exists()        # checked, not created

    # The contract's pool rules first: nothing reaches the host for a refused path.
    for bad_pools, words in (([{"name": "x", "path": "/srv/a b"}], "must be absolute"),
                             ([{"name": "a", "path": "/srv/p"}, {"name": "b", "path": "/srv/p/q"}], "inside pool")):
        resp = api("admin").post("/api/servers/test-connection", json={**body, "pools": bad_pools})
        assert resp.status_code == 400 and words in resp.json["error"], resp.json


@pytest.mark.parametrize("stderr, verdict", [
    ("ssh: connect to host 10.0.0.9 port 22: Connection timed out\r\n", "timeout"),
    ("ssh: connect to host 10.0.0.9 port 22: No route to host\r\n", "unreachable"),
    ("ssh: Could not resolve hostname nowhere.invalid: Name or service not known\r\n", "unknown_host"),
    ("kex_exchange_identification: read: Connection reset by peer\r\n", "ssh_failed"),
    ("bob@10.0.0.9: Permission denied (publickey,password).\r\n", "auth_refused"),
])
def test_classify_ssh_errors_not_produced_on_loopback(stderr, verdict):
    """ssh's words for failures the loopback hosts cannot produce (a dropped or unroutable packet):
    pure parsing, the same function that classifies the real ones above."""
    assert probe.classify_ssh_error(stderr)[0] == verdict


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")
def test_wizard_adds_a_backup_server_and_sets_it_up(browser, web, users, api, db, start_worker,  # noqa: F811
                                                   controller,
                                                   wiz_host, test_root):
    OUT.mkdir(parents=True, exist_ok=True)
    d = test_root / f"wiz-bs-{secrets.token_hex(3)}"
    (d / "pool-a").mkdir(parents=True)
    borg_user = f"bfw{secrets.token_hex(3)}"
    host_vars = {**service_vars(controller), "borgfleet_server_user": borg_user,
                 "borgfleet_server_user_home": str(d / "home")}
    name = f"wiz-bs-{secrets.token_hex(2)}"
    admin = api("admin")
    assert admin.put("/api/settings", json={"detect_after_setup": "1"}).status_code == 200
    start_worker(1)
    page = login(browser, web, users["admin"])
    try:
        page.goto(web + "/servers")
        page.click("#add-server-wizard")
        page.wait_for_url(web + "/servers/new")
        page.check("#role-backup-server")
        assert page.is_hidden("#w-bs") or page.locator("#no-backup-server").is_hidden()   # the client's step hides
        page.fill("#w-name", name)
        page.fill("#w-address", wiz_host.address)
        page.fill("#w-port", str(free_port(wiz_host.address)))
        page.fill("#w-vars", json.dumps(host_vars))
        page.fill("#pools input[name=pool_path]", str(d / "pool-a"))
        page.click("#add-pool")                      # a form post: the second row comes back from the server
        page.locator("#pools input[name=pool_name]").nth(1).fill("second")
        page.locator("#pools input[name=pool_path]").nth(1).fill(str(d / "pool-b"))
        page.click("#test-connection")
        page.wait_for_selector("#probe-result")
        assert page.get_attribute("#probe-result", "data-verdict") == "port_closed"
        assert "is closed (connection refused)" in page.inner_text("#probe-result .verdict-message")
        page.screenshot(path=str(OUT / "1-port-closed.png"), full_page=True)

        # Saving while the test fails is refused unless asked for.
        page.click("#save-server")
        assert "Not saved: the test failed" in page.inner_text("#error")
        assert name not in [s["name"] for s in api("viewer").get("/api/servers").json["items"]]

        page.fill("#w-port", str(wiz_host.port))
        page.click("#test-connection")
        page.wait_for_selector("#probe-result[data-verdict=ok]")
        assert f"connected to {wiz_host.address} port {wiz_host.port} as root" in page.inner_text("#probe-result")
        rows = page.locator("#pools .pool-row")
        assert rows.nth(0).locator(".pool-state").inner_text() == "exists"
        assert rows.nth(1).locator(".pool-state").inner_text() == "creatable"
        assert re.search(r"[\d.]+ [KMGT]?i?B free of [\d.]+ [KMGT]?i?B on /", rows.nth(0).inner_text())
        page.screenshot(path=str(OUT / "2-connected-pools.png"), full_page=True)

        page.click("#save-server")
        page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
        job_id = page.url.rsplit("/", 1)[1]
        assert wait_final(page) == "succeeded", (page.inner_text("#error"), page.inner_text("#log"))
        page.screenshot(path=str(OUT / "3-setup-job.png"), full_page=True)
        server = next(s for s in api("viewer").get("/api/servers").json["items"] if s["name"] == name)
        assert server["setup_status"] == "ok" and server["vars"] == host_vars
        assert [p["path"] for p in api("viewer").get(f"/api/storage-pools?server_id={server['id']}").json["items"]] \
            == [str(d / "pool-a"), str(d / "pool-b")]
        assert (d / "pool-b").is_dir()               # created by the setup the wizard queued
        row = dbm.query(db, "SELECT kind, server_id FROM jobs WHERE id=%s", (job_id,), one=True)
        assert row == {"kind": "setup", "server_id": server["id"]}
        detect = wait_for(lambda: dbm.query(db, "SELECT id FROM jobs WHERE kind='detect_capabilities'"
                                                " AND server_id=%s", (server["id"],), one=True),
                          timeout=60, what="the capabilities detection queued after setup")
        assert wait_job(db, detect["id"])["status"] == "succeeded"
        page.goto(f"{web}/servers/{server['id']}")
        page.screenshot(path=str(OUT / "4-server-page.png"), full_page=True)
        api("operator").delete(f"/api/servers/{server['id']}")
    finally:
        admin.put("/api/settings", json={"detect_after_setup": "0"})
        subprocess.run(["userdel", borg_user], capture_output=True)
        page.context.close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")
def test_wizard_shows_the_key_to_install(browser, web, users, controller, wiz_host, tmp_path):  # noqa: F811
    """A first connection: the host key is not pinned, Trust this key pins the one compared; then
    authentication refused, with the service's public key ready to copy (in the dark theme)."""
    stranger = tmp_path / "wizard_key"
    pub = keygen(stranger, comment="wizard-page-key")
    known_hosts = tmp_path / "wizard_known_hosts"      # nothing pinned yet: a first connection
    page = login(browser, web, users["admin"])
    try:
        page.goto(web + "/servers/new")
        page.fill("#w-name", "refused-host")
        page.fill("#w-address", wiz_host.address)
        page.fill("#w-port", str(wiz_host.port))
        page.fill("#w-vars", json.dumps(service_vars(controller, known_hosts=known_hosts, key=stranger)))
        page.click("#test-connection")
        page.wait_for_selector("#probe-result[data-verdict=host_key_unknown]")
        real = fingerprint(wiz_host.host_pubkey)
        assert page.locator("#host-key-table li[data-fingerprint]").get_attribute("data-fingerprint") == real
        page.screenshot(path=str(OUT / "5-host-key-unknown.png"), full_page=True)
        page.click(f"#host-key-table li[data-fingerprint='{real}'] button.trust-key")
        page.wait_for_selector("#pinned")
        assert known_hosts.read_text() == wiz_host.known_hosts_line + "\n"
        # Tested again at once: the host key is accepted now, the key is not.
        assert page.get_attribute("#probe-result", "data-verdict") == "auth_refused"
        assert page.input_value("#public-key") == pub
        assert page.input_value("#append-key") == f"mkdir -p -m 700 ~/.ssh && echo '{pub}' >> ~/.ssh/authorized_keys"
        assert page.is_visible("#w-bs") or page.is_visible("#no-backup-server")   # client chosen: its step 2
        page.click("#theme-toggle")
        page.screenshot(path=str(OUT / "6-auth-refused-dark.png"), full_page=True)
    finally:
        page.context.close()
