"""Editing a server's connection and role (fleet/servers.py edit_server, PUT/PATCH /api/servers/<id>,
/servers/<id>/edit) against a real sshd on loopback and the real MariaDB: a wrong port is refused by
Test connection with its message and nothing is saved; a new endpoint's host key is pinned only
through Trust this key; the right port is saved, the old endpoint's pin dropped, the backup job kept
and the setup queued. A role changes only when nothing depends on the old one. Then the edit page in
Chromium (Test connection, a refused Save, a saved one landing on the setup job), screenshots in
light and dark in tests/output/server-edit/."""
import os
import re
import secrets
from pathlib import Path

import pytest

from borgfleet_ui import db as dbm
from test_browser import CHROMIUM, browser, login, web  # noqa: F401 (fixtures)
from test_server_wizard import fingerprint, service_vars
from tests.lib.sshd import free_port, keygen

OUT = Path(__file__).resolve().parents[1] / "output" / "server-edit"


@pytest.fixture(scope="module")
def edit_host(sshd_factory):
    return sshd_factory("edit-host")


def setup_jobs(db, sid):
    return [r["id"] for r in dbm.query(db, "SELECT id FROM jobs WHERE kind='setup' AND server_id=%s ORDER BY seq",
                                       (sid,))]


def cancel(api, db, sid):
    """The setup jobs these tests queued never run (no worker here, and none should pick them later)."""
    for job_id in setup_jobs(db, sid):
        api("operator").post(f"/api/jobs/{job_id}/cancel")


def stored(db, sid):
    return dbm.query(db, "SELECT name, role, address, port, ssh_user, connection, backup_server_id, setup_status"
                         " FROM servers WHERE id=%s", (sid,), one=True)


@pytest.fixture()
def moved_client(api, db, controller, edit_host, tmp_path):
    """A client saved at an old endpoint of the loopback host (a closed port, its key pinned in a
    known_hosts of its own), with a backup job; the real endpoint is not pinned there yet."""
    known_hosts = tmp_path / "edit_known_hosts"
    old_port = free_port(edit_host.address)
    stale = keygen(tmp_path / "old_host_key")
    old_line = f"[{edit_host.address}]:{old_port} {' '.join(stale.split()[:2])}"
    known_hosts.write_text(old_line + "\n")
    name = f"edit-cl-{secrets.token_hex(2)}"
    cl = api("admin").post("/api/servers", json={
        "name": name, "role": "client", "address": edit_host.address, "port": old_port,
        "local_pool_path": f"/var/tmp/{name}", "vars": service_vars(controller, known_hosts=known_hosts)}).json
    bj = api("operator").post("/api/backup-jobs", json={"client_id": cl["id"], "name": "etc", "paths": ["/etc"],
                                                        "passphrase": "correct horse battery"}).json
    yield {"server": cl, "job": bj, "known_hosts": known_hosts, "old_line": old_line, "old_port": old_port}
    cancel(api, db, cl["id"])
    api("operator").delete(f"/api/servers/{cl['id']}")


def test_a_new_port_is_tested_pinned_by_a_person_then_saved_with_setup(api, db, edit_host, moved_client):
    cl, known_hosts = moved_client["server"], moved_client["known_hosts"]
    op = api("operator")
    before = stored(db, cl["id"])
    jobs_before = setup_jobs(db, cl["id"])

    # A wrong port: Test connection's own message, nothing saved, no setup queued.
    wrong = free_port(edit_host.address)
    resp = op.put(f"/api/servers/{cl['id']}", json={"port": wrong, "test_connection": True, "setup": True})
    assert resp.status_code == 400, resp.json
    assert resp.json["connection_test"]["verdict"] == "port_closed"
    assert f"port {wrong} on {edit_host.address} is closed (connection refused)" in resp.json["error"]
    assert resp.json["error"].startswith("not saved: the connection test failed (Port closed)")
    assert stored(db, cl["id"]) == before and setup_jobs(db, cl["id"]) == jobs_before

    # The right port: its host key is not pinned in this server's known_hosts, so the test stops
    # there (never learnt by itself) and saving is refused the same way.
    right = {"port": edit_host.port}
    r = op.post(f"/api/servers/{cl['id']}/test-connection", json=right).json
    assert r["verdict"] == "host_key_unknown" and r["known_hosts"] == str(known_hosts), r
    real = fingerprint(edit_host.host_pubkey)
    assert [k["fingerprint"] for k in r["host_keys"]] == [real]
    resp = op.patch(f"/api/servers/{cl['id']}", json={**right, "test_connection": True})
    assert resp.status_code == 400 and resp.json["connection_test"]["verdict"] == "host_key_unknown"
    assert stored(db, cl["id"]) == before
    assert known_hosts.read_text() == moved_client["old_line"] + "\n"

    # Trust this key: the fingerprint the person compared, for the endpoint as edited.
    other = fingerprint(keygen(known_hosts.parent / "not_the_host"))
    bad = op.post(f"/api/servers/{cl['id']}/trust-host-key", json={**right, "fingerprint": other})
    assert bad.status_code == 400 and "does not offer a key with fingerprint" in bad.json["error"]
    pinned = op.post(f"/api/servers/{cl['id']}/trust-host-key", json={**right, "fingerprint": real})
    assert pinned.status_code == 200, pinned.json
    assert known_hosts.read_text() == moved_client["old_line"] + "\n" + edit_host.known_hosts_line + "\n"
    assert stored(db, cl["id"]) == before     # pinning saves nothing either

    # Saved: tested first, then the new port stored, the old endpoint's pin dropped, the backup job
    # and its repository kept, the server marked and its setup queued.
    resp = op.put(f"/api/servers/{cl['id']}", json={**right, "test_connection": True, "setup": True})
    assert resp.status_code == 200, resp.json
    assert resp.json["connection_test"]["verdict"] == "ok" and resp.json["port"] == edit_host.port
    after = stored(db, cl["id"])
    assert after == {**before, "port": edit_host.port, "setup_status": "needs setup"}
    assert known_hosts.read_text() == edit_host.known_hosts_line + "\n"
    job = resp.json["setup_job_id"]
    assert setup_jobs(db, cl["id"]) == jobs_before + [job]
    row = dbm.query(db, "SELECT kind, status, params_json FROM jobs WHERE id=%s", (job,), one=True)
    assert row["kind"] == "setup" and row["status"] == "queued" and cl["name"] in row["params_json"]
    bj = op.get(f"/api/backup-jobs/{moved_client['job']['id']}")
    assert bj.status_code == 200 and bj.json["client_id"] == cl["id"]
    assert bj.json["location"] == moved_client["job"]["location"]

    # Nothing changed in the connection: no test, no setup.
    resp = op.put(f"/api/servers/{cl['id']}", json={"port": edit_host.port, "test_connection": True, "setup": True})
    assert resp.status_code == 200 and resp.json["connection_test"] is None and resp.json["setup_job_id"] is None


def test_role_changes_only_when_nothing_depends_on_the_old_role(api, db):
    op = api("operator")
    tag = secrets.token_hex(2)
    bs = op.post("/api/servers", json={"name": f"role-bs-{tag}", "role": "backup_server", "address": "127.0.0.1",
                                       "pools": [{"name": "main", "path": f"/var/tmp/role-{tag}"}]}).json
    cl = op.post("/api/servers", json={"name": f"role-cl-{tag}", "role": "client", "address": "127.0.0.1",
                                       "backup_server_id": bs["id"]}).json
    bj = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "etc", "paths": ["/etc"],
                                           "passphrase": "correct horse battery"}).json
    try:
        # A client whose backup jobs have repositories named after it: refused, saying what to do first.
        resp = op.patch(f"/api/servers/{cl['id']}", json={"role": "backup_server"})
        assert resp.status_code == 400
        assert resp.json["error"] == (f"client role-cl-{tag} has 1 backup job(s) whose repositories are named after"
                                      " it: it cannot be turned into a backup server while they back it up; delete"
                                      " its backup jobs first (their repositories stay on the backup server), or add"
                                      " the host again as a new server")
        # The page's inline check says the same under the role.
        v = op.post("/api/validate/server_edit", json={"server_id": cl["id"], "values": {
            "name": cl["name"], "address": "127.0.0.1", "role": "backup_server"}}).json
        assert v["errors"]["role"] == resp.json["error"], v
        # Its backup server: a client and that job's repository depend on it.
        resp = op.put(f"/api/servers/{bs['id']}", json={"role": "client", "local_pool_path": "/var/tmp/x"})
        assert resp.status_code == 400
        assert resp.json["error"] == (f"backup server role-bs-{tag} has clients (1): it cannot become a client; move"
                                      " them to another backup server or delete them first, and delete the backup"
                                      " jobs whose 1 repository(ies) its pools hold")
        assert stored(db, bs["id"])["role"] == "backup_server" and stored(db, cl["id"])["role"] == "client"

        # Nothing depends on them any more: both change, and their setup is queued.
        assert op.delete(f"/api/backup-jobs/{bj['id']}").status_code == 204
        resp = op.patch(f"/api/servers/{cl['id']}", json={"role": "backup_server", "setup": True})
        assert resp.status_code == 200, resp.json
        assert (resp.json["role"], resp.json["backup_server_id"], resp.json["setup_status"]) == \
            ("backup_server", None, "needs setup")
        assert resp.json["setup_job_id"] in setup_jobs(db, cl["id"])
        resp = op.put(f"/api/servers/{bs['id']}", json={"role": "client", "local_pool_path": f"/var/tmp/role-{tag}"})
        assert resp.status_code == 200, resp.json
        assert (resp.json["role"], resp.json["local_pool_path"], resp.json["setup_job_id"]) == \
            ("client", f"/var/tmp/role-{tag}", None)
        # Its pools held nothing and a client has none: they went (the directory stays on the host).
        assert op.get(f"/api/storage-pools?server_id={bs['id']}").json["items"] == []
    finally:
        cancel(api, db, cl["id"])
        cancel(api, db, bs["id"])
        op.delete(f"/api/servers/{cl['id']}")
        op.delete(f"/api/servers/{bs['id']}")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")
def test_edit_page_tests_the_connection_before_saving(browser, web, users, api, db, edit_host,  # noqa: F811
                                                      moved_client):
    OUT.mkdir(parents=True, exist_ok=True)
    cl = moved_client["server"]
    before = stored(db, cl["id"])
    page = login(browser, web, users["operator"])
    try:
        page.goto(f"{web}/servers/{cl['id']}")
        page.click("#edit-server")
        page.wait_for_url(f"{web}/servers/{cl['id']}/edit")
        # The role is locked while the client has a backup job, and the page says why.
        assert page.is_disabled("#e-role-backup-server")
        assert "has 1 backup job(s)" in page.inner_text("#role-locked")

        wrong = free_port(edit_host.address)
        page.fill("#e-port", str(wrong))
        page.click("#test-connection")
        page.wait_for_selector("#probe-result[data-verdict=port_closed]")
        assert f"port {wrong} on {edit_host.address} is closed" in page.inner_text("#probe-result .verdict-message")
        assert page.input_value("#e-port") == str(wrong)          # the typed value stays
        page.click("#server-save")
        page.wait_for_selector("#error")
        assert "Not saved: the connection test failed" in page.inner_text("#error")
        assert page.get_attribute("#probe-result", "data-verdict") == "port_closed"
        assert stored(db, cl["id"]) == before

        # The right port: not pinned yet; Trust this key pins the one shown, and the test runs again.
        page.fill("#e-port", str(edit_host.port))
        page.click("#test-connection")
        page.wait_for_selector("#probe-result[data-verdict=host_key_unknown]")
        real = fingerprint(edit_host.host_pubkey)
        page.screenshot(path=str(OUT / "1-host-key-unknown-light.png"), full_page=True)
        page.click(f"#host-key-table li[data-fingerprint='{real}'] button.trust-key")
        page.wait_for_selector("#pinned")
        assert page.get_attribute("#probe-result", "data-verdict") == "ok"
        assert f"connected to {edit_host.address} port {edit_host.port} as root" in page.inner_text("#probe-result")
        page.screenshot(path=str(OUT / "2-connected-light.png"), full_page=True)
        page.click("#theme-toggle")
        page.screenshot(path=str(OUT / "2-connected-dark.png"), full_page=True)
        page.click("#theme-toggle")

        page.click("#server-save")
        page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
        job_id = page.url.rsplit("/", 1)[1]
        assert setup_jobs(db, cl["id"])[-1] == job_id
        assert stored(db, cl["id"]) == {**before, "port": edit_host.port, "setup_status": "needs setup"}
        assert moved_client["known_hosts"].read_text() == edit_host.known_hosts_line + "\n"
    finally:
        page.context.close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make ui-deps)")
def test_edit_page_changes_a_role_nothing_depends_on(browser, web, users, api, db):  # noqa: F811
    name = f"role-page-{secrets.token_hex(2)}"
    cl = api("operator").post("/api/servers", json={"name": name, "role": "client", "address": "127.0.0.1",
                                                    "local_pool_path": f"/var/tmp/{name}"}).json
    page = login(browser, web, users["operator"])
    try:
        page.goto(f"{web}/servers/{cl['id']}/edit")
        assert page.locator("#role-locked").count() == 0 and page.is_enabled("#e-role-backup-server")
        page.check("#e-role-backup-server")
        assert page.is_hidden("#e-lpp")                # a client's own field hides with the role
        page.click("#server-save")
        page.wait_for_url(re.compile(r".*/jobs/[0-9a-f-]{36}$"))
        assert setup_jobs(db, cl["id"]) == [page.url.rsplit("/", 1)[1]]
        assert stored(db, cl["id"])["role"] == "backup_server"
    finally:
        page.context.close()
        cancel(api, db, cl["id"])
        api("operator").delete(f"/api/servers/{cl['id']}")
