"""What an operator may set on a server (issue 10): extra vars are an allowlist of documented names,
each checked, set by admins only; host names never reach a tool as an option; a client with
repositories is never renamed or moved away from them."""
import re
import uuid
from pathlib import Path

import pytest

from borgfleet_ui import openapi
from borgfleet_ui.contract import contract
from borgfleet_ui.db import execute, query
from tests.lib import fleet as fl

SHADOW_HOST = "-f/etc/shadow"

# (role, var, value, what the 400 must say besides the var's name)
REFUSED = [
    # A shell on the worker host through ssh's own command options.
    ("client", "ansible_ssh_common_args", "-o ProxyCommand=sh -c 'touch /tmp/pwn'", "only -o"),
    ("client", "ansible_ssh_common_args", "-o proxycommand=/tmp/x", "only -o"),
    ("client", "ansible_ssh_common_args", "-oProxyCommand=/tmp/x", "pairs"),
    ("client", "ansible_ssh_common_args", "-o UserKnownHostsFile=/k -o LocalCommand=id", "only -o"),
    ("client", "ansible_ssh_common_args", "-o PermitLocalCommand=yes", "only -o"),
    ("client", "ansible_ssh_common_args", "-o Include=/etc/shadow", "only -o"),
    ("client", "ansible_ssh_common_args", "-o StrictHostKeyChecking=no", "must be yes"),
    ("client", "ansible_ssh_common_args", "-o UserKnownHostsFile=/k;id", "absolute path"),
    ("client", "ansible_ssh_common_args", "-F /tmp/evil_config", "pairs"),
    ("client", "ansible_ssh_common_args", ["-o", "ProxyCommand=x"], "pairs"),
    ("client", "ansible_ssh_extra_args", "-o ProxyCommand=/tmp/x", "changes how Ansible connects"),
    ("client", "ansible_ssh_args", "-o ProxyCommand=/tmp/x", "changes how Ansible connects"),
    ("client", "ansible_ssh_executable", "/tmp/evil", "changes how Ansible connects"),
    ("client", "ansible_scp_extra_args", "-S /tmp/evil", "changes how Ansible connects"),
    ("client", "ansible_become", True, "changes how Ansible connects"),
    ("client", "ansible_become_method", "su", "changes how Ansible connects"),
    ("client", "ansible_become_exe", "/tmp/evil", "changes how Ansible connects"),
    ("client", "ansible_shell_executable", "/tmp/evil", "changes how Ansible connects"),
    ("client", "ansible_private_key_file", "/etc/shadow", "changes how Ansible connects"),
    ("client", "ansible_python_interpreter", "python3 -c 'import os'", "absolute path"),
    ("client", "ansible_python_interpreter", "/usr/bin/python3;id", "absolute path"),
    ("client", "ansible_python_interpreter", "{{ lookup('pipe', 'id') }}", "absolute path"),
    # The service's own settings: a second source would replace backups, passphrases or pools.
    ("client", "borgfleet_backups", [{"name": "etc", "paths": ["/"], "passphrase": "clear"}], "backup jobs"),
    ("backup_server", "borgfleet_storage_pools", [{"name": "main", "path": "/"}], "storage pools"),
    ("client", "borgfleet_backup_server", "local", "backup_server_id"),
    ("client", "borgfleet_local_pool_path", "/", "local_pool_path"),
    ("client", "ansible_connection", "local", "connection"),
    ("client", "ansible_host", "127.0.0.1", "address"),
    ("client", "ansible_port", 22, "port"),
    ("client", "ansible_user", "root", "ssh_user"),
    # Secrets would be kept in clear.
    ("client", "ansible_password", "hunter22", "vars cannot hold secrets"),
    ("client", "ansible_become_password", "hunter22", "vars cannot hold secrets"),
    ("client", "borgfleet_db_password", "hunter22", "vars cannot hold secrets"),
    # Not documented for the service: code on the host, or unknown.
    ("client", "borgfleet_borg_binary", "/tmp/evil", "accepted names are"),
    ("client", "borgfleet_remote_path", "/tmp/evil", "accepted names are"),
    ("client", "borgfleet_borg_package", "netcat-traditional", "accepted names are"),
    ("client", "PATH", "/x", "accepted names are"),
    ("client", "borgfleet_backup", "etc", "accepted names are"),
    # Documented names with a bad value.
    ("backup_server", "borgfleet_server_ssh_host", SHADOW_HOST, "is not a host name"),
    ("backup_server", "borgfleet_server_ssh_host", "host name", "is not a host name"),
    ("backup_server", "borgfleet_server_ssh_host", "{{ lookup('pipe','id') }}", "is not a host name"),
    ("backup_server", "borgfleet_server_ssh_port", "22; id", "must be a number"),
    ("backup_server", "borgfleet_server_ssh_port", 0, "between 1 and 65535"),
    ("backup_server", "borgfleet_server_ssh_port", True, "must be a number"),
    ("backup_server", "borgfleet_server_user", "root;id", "is not valid"),
    ("backup_server", "borgfleet_server_user", "-oProxyCommand", "is not valid"),
    ("backup_server", "borgfleet_server_user_home", "var/lib/borg", "absolute path"),
    ("backup_server", "borgfleet_server_user_home", "/var/lib/../../etc", "absolute path"),
    ("client", "borgfleet_ssh_key", "/root/.ssh/{{ x }}", "absolute path"),
    ("client", "borgfleet_ssh_key", "~/.ssh/id", "absolute path"),
    ("client", "borgfleet_known_hosts", ["/a"], "absolute path"),
    ("client", "borgfleet_borg_base_dir", {"a": "/b"}, "absolute path"),
    ("client", "borgfleet_borg_base_dir", "/tmp/a b", "absolute path"),
    ("client", "borgfleet_lock_wait", "600", "must be a number"),
    ("client", "borgfleet_lock_wait", -1, "between 1 and 86400"),
    # A name on the wrong kind of server.
    ("backup_server", "borgfleet_ssh_key", "/k/id", "clients only"),
    ("client", "borgfleet_server_ssh_host", "backup.example.org", "backup servers only"),
]

ACCEPTED = {
    "client": {"borgfleet_ssh_key": "/root/.ssh/borgfleet_ed25519", "borgfleet_known_hosts": "/root/.ssh/kh",
               "borgfleet_borg_base_dir": "/var/lib/borgfleet/base", "borgfleet_lock_wait": 300,
               "ansible_python_interpreter": "/usr/bin/python3",
               "ansible_ssh_private_key_file": "/etc/borgfleet/id_ed25519",
               "ansible_ssh_common_args": "-o UserKnownHostsFile=/etc/borgfleet/known_hosts"
                                          " -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o ConnectTimeout=10"},
    "backup_server": {"borgfleet_server_user": "borgx", "borgfleet_server_user_home": "/srv/borgx",
                      "borgfleet_server_ssh_host": "backup1.example.org", "borgfleet_server_ssh_port": 2222},
}


def _name(prefix="op"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _body(role, name, **kw):
    body = {"name": name, "role": role, "address": "127.0.0.1"}
    if role == "client":
        body.update(connection="ssh", local_pool_path="/var/tmp/op-repos")
    return {**body, **kw}


def _stored(db, name):
    return query(db, "SELECT * FROM servers WHERE name=%s", (name,), one=True)


def test_every_refused_var_gets_400_naming_it_and_nothing_is_stored(api, db):
    admin = api("admin")
    # The same checks on change: an existing server keeps its vars when a change is refused.
    keep = {"client": admin.post("/api/servers", json=_body("client", _name(), vars=ACCEPTED["client"])).json,
            "backup_server": admin.post("/api/servers", json=_body("backup_server", _name(),
                                                                   vars=ACCEPTED["backup_server"])).json}
    for role, var, value, why in REFUSED:
        name = _name()
        resp = admin.post("/api/servers", json=_body(role, name, vars={var: value}))
        assert resp.status_code == 400, (var, value, resp.json)
        assert var in resp.json["error"] and why in resp.json["error"], (var, value, resp.json)
        assert _stored(db, name) is None, var
        resp = admin.put(f"/api/servers/{keep[role]['id']}", json={"vars": {**ACCEPTED[role], var: value}})
        assert resp.status_code == 400 and var in resp.json["error"], (var, value, resp.json)
    for role, s in keep.items():
        assert admin.get(f"/api/servers/{s['id']}").json["vars"] == ACCEPTED[role]
        assert admin.delete(f"/api/servers/{s['id']}").status_code == 204


def test_python_interpreter_is_refused_for_a_local_connection(api, db):
    # A local host runs modules on the worker host itself with the service's Python.
    name = _name()
    resp = api("admin").post("/api/servers", json=_body("client", name, connection="local",
                                                        vars={"ansible_python_interpreter": "/tmp/evil"}))
    assert resp.status_code == 400 and "ansible_python_interpreter" in resp.json["error"], resp.json
    assert _stored(db, name) is None


def test_documented_vars_are_accepted_and_stored_as_given(api):
    admin = api("admin")
    for role, vars_ in ACCEPTED.items():
        resp = admin.post("/api/servers", json=_body(role, _name(), vars=vars_))
        assert resp.status_code == 201, resp.json
        assert admin.get(f"/api/servers/{resp.json['id']}").json["vars"] == vars_
        admin.delete(f"/api/servers/{resp.json['id']}")


def test_openapi_lists_exactly_the_accepted_vars():
    props = openapi.SCHEMAS["Server"]["properties"]["vars"]
    assert set(props["properties"]) == set(contract.HOST_VARS) and props["additionalProperties"] is False


def test_only_admins_set_or_change_vars(api, db):
    op, admin = api("operator"), api("admin")
    name = _name()
    vars_ = {"borgfleet_borg_base_dir": "/var/tmp/op-base"}
    resp = op.post("/api/servers", json=_body("client", name, vars=vars_))
    assert resp.status_code == 403 and "only an admin can set or change a server's extra vars" in resp.json["error"]
    assert _stored(db, name) is None
    # Without vars (or with the same empty map) an operator adds and edits servers as before.
    made = op.post("/api/servers", json=_body("client", name, vars={}))
    assert made.status_code == 201, made.json
    sid = made.json["id"]
    assert op.put(f"/api/servers/{sid}", json={"port": 2222}).status_code == 200
    resp = op.put(f"/api/servers/{sid}", json={"vars": vars_})
    assert resp.status_code == 403 and "admin" in resp.json["error"]
    assert _stored(db, name)["vars_json"] == "{}"
    assert admin.put(f"/api/servers/{sid}", json={"vars": vars_}).status_code == 200
    # The server as read back (vars unchanged) can be sent back by an operator.
    cur = op.get(f"/api/servers/{sid}").json
    assert op.put(f"/api/servers/{sid}", json={**{k: cur[k] for k in ("name", "address", "vars")},
                                                "port": 2200}).status_code == 200
    for change in ({}, {"borgfleet_borg_base_dir": "/var/tmp/other"}):
        resp = op.put(f"/api/servers/{sid}", json={"vars": change})
        assert resp.status_code == 403, change
    assert admin.get(f"/api/servers/{sid}").json["vars"] == vars_
    assert op.delete(f"/api/servers/{sid}").status_code == 204


def test_only_admins_add_a_local_server(api, db):
    """connection local is the worker host itself: backing it up reads any file there (the
    service's key file included), so only an admin adds one or turns a server into one."""
    op, admin = api("operator"), api("admin")
    name = _name()
    local = {"name": name, "role": "client", "connection": "local", "local_pool_path": "/var/tmp/" + name}
    resp = op.post("/api/servers", json=local)
    assert resp.status_code == 403 and "only an admin can add a local server" in resp.json["error"]
    assert _stored(db, name) is None
    made = op.post("/api/servers", json=_body("client", name, vars={}))
    assert made.status_code == 201, made.json
    resp = op.put(f"/api/servers/{made.json['id']}", json={"connection": "local"})
    assert resp.status_code == 403 and _stored(db, name)["connection"] == "ssh"
    assert op.delete(f"/api/servers/{made.json['id']}").status_code == 204
    made = admin.post("/api/servers", json=local)
    assert made.status_code == 201, made.json
    # Once added by an admin, an operator edits it as any other server.
    assert op.put(f"/api/servers/{made.json['id']}", json={"port": 2200}).status_code == 200
    assert op.delete(f"/api/servers/{made.json['id']}").status_code == 204


def _page_login(app, user):
    c = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").get_data(as_text=True)).group(1)
    assert c.post("/login", data={"username": user[0], "password": user[1], "csrf_token": csrf}).status_code == 302
    page = c.get("/servers").get_data(as_text=True)
    return c, page, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_servers_page_refuses_vars_from_an_operator(app, users, db):
    c, page, csrf = _page_login(app, users["operator"])
    assert 'name="vars"' not in page          # the field is shown to admins only
    name = _name()
    form = {"csrf_token": csrf, "name": name, "role": "client", "connection": "local",
            "local_pool_path": "/var/tmp/op-repos", "vars": '{"borgfleet_borg_base_dir": "/var/tmp/x"}'}
    resp = c.post("/servers", data=form)
    assert resp.status_code == 403 and "only an admin" in resp.get_data(as_text=True)
    assert _stored(db, name) is None
    c, page, csrf = _page_login(app, users["admin"])
    assert 'name="vars"' in page
    form["csrf_token"] = csrf
    resp = c.post("/servers", data={**form, "vars": '{"ansible_ssh_common_args": "-o ProxyCommand=/tmp/x"}'})
    assert resp.status_code == 400 and "ansible_ssh_common_args" in resp.get_data(as_text=True)
    assert _stored(db, name) is None
    assert c.post("/servers", data=form).status_code == 302
    assert _stored(db, name)["vars_json"] == '{"borgfleet_borg_base_dir": "/var/tmp/x"}'
    execute(db, "DELETE FROM servers WHERE name=%s", (name,))


def test_option_like_host_names_are_refused(api, db):
    for role in ("client", "backup_server"):
        name = _name()
        resp = api("operator").post("/api/servers", json=_body(role, name, address=SHADOW_HOST))
        assert resp.status_code == 400 and f"address {SHADOW_HOST!r} is not a host name" in resp.json["error"], resp.json
        assert _stored(db, name) is None
    name = _name()
    resp = api("admin").post("/api/servers", json=_body("backup_server", name,
                                                        vars={"borgfleet_server_ssh_host": SHADOW_HOST}))
    assert resp.status_code == 400 and "borgfleet_server_ssh_host" in resp.json["error"], resp.json
    assert _stored(db, name) is None


def test_a_client_with_repositories_is_never_renamed_or_moved(api, db):
    op, admin = api("operator"), api("admin")
    bs1 = op.post("/api/servers", json=_body("backup_server", _name("bs"), address="127.0.0.21",
                                             pools=[{"name": "main", "path": "/srv/op-a"}])).json
    bs2 = op.post("/api/servers", json=_body("backup_server", _name("bs"), address="127.0.0.22",
                                             pools=[{"name": "main", "path": "/srv/op-b"}])).json
    cname, lname = _name("cl"), _name("lo")
    cl = op.post("/api/servers", json={"name": cname, "role": "client", "address": "127.0.0.23",
                                       "backup_server_id": bs1["id"]}).json
    lo = api("admin").post("/api/servers", json={"name": lname, "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/op-l1"}).json
    # No backup job yet: renaming and moving are free.
    for sid, change in ((cl["id"], {"name": cname + "-x"}), (cl["id"], {"backup_server_id": bs2["id"]}),
                        (cl["id"], {"backup_server_id": bs1["id"]}), (cl["id"], {"name": cname}),
                        (lo["id"], {"local_pool_path": "/var/tmp/op-l2"}),
                        (lo["id"], {"local_pool_path": "/var/tmp/op-l1"})):
        resp = op.put(f"/api/servers/{sid}", json=change)
        assert resp.status_code == 200, (change, resp.json)
    jobs = {}
    for s in (cl, lo):
        bj = op.post("/api/backup-jobs", json={"client_id": s["id"], "name": "etc", "paths": ["/etc"],
                                               "passphrase": "op-pass-12345"})
        assert bj.status_code == 201, bj.json
        jobs[s["name"]] = bj.json
    location = f"ssh://borg@127.0.0.21:22/srv/op-a/{cname}/etc"
    assert jobs[cname]["location"] == location and jobs[lname]["location"] == f"/var/tmp/op-l1/{lname}/etc"
    before = {n: _stored(db, n) for n in (cname, lname)}
    for s, change, what in ((cl, {"name": cname + "-x"}, "renamed"),
                            (cl, {"backup_server_id": bs2["id"]}, "moved to another backup server"),
                            (cl, {"role": "backup_server"}, "turned into a backup server"),
                            (lo, {"name": lname + "-x"}, "renamed"),
                            (lo, {"backup_server_id": bs1["id"]}, "moved to another backup server"),
                            (lo, {"local_pool_path": "/var/tmp/op-l2"}, "moved to another place")):
        resp = op.put(f"/api/servers/{s['id']}", json=change)
        assert resp.status_code == 400, (change, resp.json)
        assert f"client {s['name']} has 1 backup job(s)" in resp.json["error"] and what in resp.json["error"], resp.json
    assert {n: _stored(db, n) for n in (cname, lname)} == before
    assert op.get(f"/api/backup-jobs/{jobs[cname]['id']}").json["location"] == location
    # Other changes of that client pass.
    assert op.put(f"/api/servers/{cl['id']}", json={"port": 2201}).status_code == 200

    # Its backup server: the name is not part of a repository's location, so it may change; a new
    # address changes how clients reach the same repositories, and the shown location follows.
    assert op.put(f"/api/servers/{bs1['id']}", json={"name": bs1["name"] + "-r"}).status_code == 200
    assert op.get(f"/api/backup-jobs/{jobs[cname]['id']}").json["location"] == location
    assert op.put(f"/api/servers/{bs1['id']}", json={"address": "127.0.0.31"}).status_code == 200
    assert op.get(f"/api/backup-jobs/{jobs[cname]['id']}").json["location"] == location.replace("127.0.0.21",
                                                                                                "127.0.0.31")
    # ... but not the account that owns them, nor its role while a client uses it.
    resp = admin.put(f"/api/servers/{bs1['id']}", json={"vars": {"borgfleet_server_user": "other"}})
    assert resp.status_code == 400 and "borgfleet_server_user cannot change" in resp.json["error"], resp.json
    resp = op.put(f"/api/servers/{bs1['id']}", json={"role": "client", "local_pool_path": "/var/tmp/x"})
    assert resp.status_code == 400 and "has clients" in resp.json["error"], resp.json

    # Without backup jobs the clients move again.
    for s in (cl, lo):
        assert op.delete(f"/api/backup-jobs/{jobs[s['name']]['id']}").status_code == 204
    resp = op.put(f"/api/servers/{cl['id']}", json={"name": cname + "-y", "backup_server_id": bs2["id"]})
    assert resp.status_code == 200, resp.json
    assert op.put(f"/api/servers/{lo['id']}", json={"backup_server_id": bs2["id"]}).status_code == 200
    for s in (cl["id"], lo["id"], bs1["id"], bs2["id"]):
        assert op.delete(f"/api/servers/{s}").status_code == 204


def _shadow_lines():
    return [line for line in Path("/etc/shadow").read_text().splitlines() if line.strip()]


@pytest.mark.skipif(not Path("/etc/shadow").exists(), reason="needs /etc/shadow (run as root)")
def test_setup_never_reads_an_option_like_server_host(fleet, tmp_path):
    """The real role against a real sshd: a backup server whose borgfleet_server_ssh_host is
    `-f/etc/shadow` (an inventory from the CLI or AWX, which the service would refuse) fails setup
    clearly; ssh-keyscan takes it as a host name, so no line of /etc/shadow reaches the output."""
    client = fleet.clients["client1"]
    inv = fl.inventory(fleet.controller, [fleet.server], [client])
    inv["all"]["children"]["backup_servers"]["hosts"][fleet.server.name]["borgfleet_server_ssh_host"] = SHADOW_HOST
    path = fl.write_inventory(tmp_path / "inventory.yml", inv)
    result = fleet.play("setup.yml", inventory=path, limit=f"{client.name},{fleet.server.name}")
    assert result.rc != 0, result
    assert SHADOW_HOST in result.failures(), result
    leaked = [line for line in _shadow_lines() if line in result.output]
    # Counted, never printed: a failing run must not copy the file into the test log either.
    assert not leaked, f"{len(leaked)} line(s) of /etc/shadow (the first for user {leaked[0].split(':')[0]})" \
                       " in the setup.yml output"
