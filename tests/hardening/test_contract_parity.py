"""One set of rules (issues 10 and 11): the service's API and the collection give every backup
definition the same verdict and the same message.

One corpus of valid and invalid definitions runs through POST /api/backup-jobs (and
/api/storage-pools) with the operator's token, and through the collection: the filter called
in-process, and the role borg_common in a real ansible-playbook run (its typed argument spec,
then the action resolve_backups), exactly as every client-side role runs it. A definition the API accepted must also resolve to the same repository.
Before this, the API accepted `within: 30S`, `daily: 0`, `{}`, pools with spaces, nested pools and
`database: --result-file=/tmp/x`, each of which then broke (or endangered) every run of that client.
"""
import json
import subprocess
import uuid

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.borgfleet.backup.plugins.filter import backups as collection_filter

from tests.lib.playbook import ANSIBLE_PLAYBOOK, REPO

SERVER = {"name": "bs-parity", "role": "backup_server", "address": "127.0.0.5", "port": 2222, "ssh_user": "root"}
POOLS = [{"name": "main", "path": "/srv/borg"}, {"name": "fast", "path": "/ssd/borg"}]
CLIENT = "cl-parity"
PASSPHRASE = "parity-passphrase-1"

OK = None
# (backup job body without client_id/passphrase, "ok" or a substring the message must hold)
BACKUPS = [
    ({"name": "etc", "paths": ["/etc"]}, OK),
    ({"name": "A" + "b.-_" * 15 + "xyz", "paths": ["/etc"]}, OK),
    ({"name": "spaces", "paths": ["/srv/my files", "/home"]}, OK),
    ({"name": "excl", "paths": ["/"], "exclude": ["*.tmp", "re:^/var/cache/.*\\.bin$", "sh:/home/*/.cache"]}, OK),
    ({"name": "ret1", "paths": ["/etc"], "retention": {"within": "2d", "daily": 7}}, OK),
    ({"name": "ret2", "paths": ["/etc"], "retention": {"daily": 0, "weekly": 4}}, OK),
    ({"name": "ret3", "paths": ["/etc"], "retention": {"secondly": 10, "minutely": "60", "yearly": 1}}, OK),
    ({"name": "zstd", "paths": ["/etc"], "compression": "zstd,10"}, OK),
    ({"name": "autolzma", "paths": ["/etc"], "compression": "auto,lzma,6"}, OK),
    ({"name": "nocomp", "paths": ["/etc"], "compression": "none"}, OK),
    ({"name": "fastpool", "paths": ["/etc"], "pool": "fast"}, OK),
    ({"name": "maria", "databases": [{"engine": "mariadb", "database": "shop", "login_user": "backup",
                                      "login_unix_socket": "/run/mysqld/mysqld.sock"}]}, OK),
    ({"name": "pg", "databases": [{"engine": "postgresql", "method": "dump", "database": "app$1",
                                   "login_host": "2001:db8::7", "login_port": 5432, "os_user": "postgres"}]}, OK),
    # names
    ({"name": "x y", "paths": ["/etc"]}, "invalid backup name 'x y'"),
    ({"name": "-rf", "paths": ["/etc"]}, "invalid backup name '-rf'"),
    ({"name": ".hidden", "paths": ["/etc"]}, "invalid backup name"),
    ({"name": "a" * 65, "paths": ["/etc"]}, "invalid backup name"),
    ({"name": "x;touch /tmp/p", "paths": ["/etc"]}, "invalid backup name"),
    ({"name": "é", "paths": ["/etc"]}, "invalid backup name"),
    # paths
    ({"name": "p1", "paths": ["relative"]}, "paths must be absolute"),
    ({"name": "p2", "paths": [""]}, "paths must be absolute"),
    ({"name": "p3", "paths": "/etc"}, "paths must be a list"),
    ({"name": "p4", "paths": ["/etc\n/root"]}, "paths must be absolute"),
    ({"name": "p5", "paths": []}, "paths must be a non-empty list"),
    ({"name": "p6", "paths": [7]}, "paths must be absolute"),
    # excludes
    ({"name": "e1", "paths": ["/etc"], "exclude": ["ok", ""]}, "exclude must list borg patterns"),
    ({"name": "e2", "paths": ["/etc"], "exclude": ["re:("]}, "not a valid regular expression"),
    ({"name": "e3", "paths": ["/etc"], "exclude": ["a\nb"]}, "exclude must list borg patterns"),
    ({"name": "e4", "paths": ["/etc"], "exclude": "*.tmp"}, "exclude must be a list"),
    # retention: what the collection refuses, the API refuses too
    ({"name": "r1", "paths": ["/etc"], "retention": {"within": "30S"}}, "retention.within must look like"),
    ({"name": "r2", "paths": ["/etc"], "retention": {"daily": 0}}, "retention keeps nothing"),
    ({"name": "r3", "paths": ["/etc"], "retention": {}}, "retention keeps nothing"),
    ({"name": "r4", "paths": ["/etc"], "retention": {"forever": 1}}, "unknown retention key(s) forever"),
    ({"name": "r5", "paths": ["/etc"], "retention": {"daily": -1}}, "retention.daily must be a non-negative"),
    ({"name": "r6", "paths": ["/etc"], "retention": {"daily": "x"}}, "retention.daily must be a non-negative"),
    ({"name": "r7", "paths": ["/etc"], "retention": "7d"}, "retention must be a mapping"),
    ({"name": "r8", "paths": ["/etc"], "retention": {"within": "2x", "daily": 1}}, "retention.within"),
    # compression
    ({"name": "c1", "paths": ["/etc"], "compression": "lz5"}, "is not a borg compression spec"),
    ({"name": "c2", "paths": ["/etc"], "compression": "zstd,23"}, "is not a borg compression spec"),
    ({"name": "c3", "paths": ["/etc"], "compression": "lz4; rm -rf /"}, "is not a borg compression spec"),
    ({"name": "c4", "paths": ["/etc"], "compression": "auto"}, "is not a borg compression spec"),
    # databases
    ({"name": "d1", "databases": [{"engine": "mariadb", "database": "--result-file=/tmp/x"}]},
     "databases database '--result-file=/tmp/x' is not valid"),
    ({"name": "d2", "databases": [{"engine": "oracle"}]}, "databases engine must be one of"),
    ({"name": "d3", "databases": [{"engine": "mariadb", "method": "copy"}]}, "databases method must be one of"),
    ({"name": "d4", "databases": [{"engine": "mariadb"}, {"engine": "postgresql"}]}, "at most one database"),
    ({"name": "d5", "databases": [{"engine": "mariadb", "login_user": "-uroot"}]}, "login_user '-uroot' is not valid"),
    ({"name": "d6", "databases": [{"engine": "mariadb", "login_unix_socket": "run/sock"}]}, "login_unix_socket"),
    ({"name": "d7", "databases": [{"engine": "postgresql", "login_host": "-oProxyCommand=x"}]}, "login_host"),
    ({"name": "d8", "databases": [{"engine": "postgresql", "os_user": "--help"}]}, "os_user '--help'"),
    ({"name": "d9", "databases": [{"engine": "mariadb", "login_port": 70000}]}, "login_port 70000"),
    ({"name": "d10", "databases": [{"engine": "mariadb", "shell": "rm -rf /"}]}, "unknown key(s) in databases"),
    ({"name": "d11", "databases": [{"engine": "mariadb"}], "paths": ["/etc"]}, "takes no paths"),
    ({"name": "d12", "databases": [{"engine": "mariadb", "database": "a/../b"}]}, "databases database"),
    ({"name": "d13", "databases": {"engine": "mariadb"}}, "databases must be a list"),
]

# Pools added to a backup server holding POOLS[0] (/srv/borg), borg user home /var/lib/borg.
NEW_POOLS = [
    ({"name": "side", "path": "/srv/borg2"}, OK),                # a common prefix is not nesting
    ({"name": "trail", "path": "/data/pool/"}, OK),
    ({"name": "spaced", "path": "/srv/my pool"}, "must be absolute and made of letters"),
    ({"name": "inner", "path": "/srv/borg/cl-parity"}, "pool 'inner' (/srv/borg/cl-parity) is inside pool 'main'"),
    ({"name": "outer", "path": "/srv"}, "pool 'main' (/srv/borg) is inside pool 'outer' (/srv)"),
    ({"name": "same", "path": "/srv/borg/"}, "is inside pool 'main'"),
    ({"name": "dots", "path": "/srv/../etc"}, "must be absolute"),
    ({"name": "quote", "path": "/srv/x\",restrict"}, "must be absolute"),
    ({"name": "main", "path": "/other"}, "duplicate pool name 'main'"),
    ({"name": "bad name", "path": "/x"}, "invalid pool name 'bad name'"),
    ({"name": "home", "path": "/var/lib"}, "holds the home of the borg user"),
]


def collection_backup(body):
    """The backup as the inventory plugin hands it to the playbooks (the service's stored shape)."""
    out = {"name": body["name"], "paths": body.get("paths", []), "exclude": body.get("exclude", []),
           "compression": body.get("compression", "lz4"), "passphrase": PASSPHRASE}
    for key in ("retention", "databases", "pool"):
        if key in body:
            out[key] = body[key]
    return out


def hostvars(server, pools, backups, client=CLIENT, server_vars=None):
    sv = {"ansible_host": server["address"], "ansible_port": server["port"], "borgfleet_storage_pools": pools}
    sv.update(server_vars or {})
    return {server["name"]: sv, client: {"borgfleet_backup_server": server["name"], "borgfleet_backups": backups}}


def filter_verdict(hv, client=CLIENT, server=SERVER["name"]):
    """(message or None, resolved) from the filter plugin's resolve_backups, as the roles call it."""
    resolve = collection_filter.FilterModule().filters()["resolve_backups"]
    try:
        return None, resolve(hv[client]["borgfleet_backups"], client, hv, [server])
    except AnsibleFilterError as err:
        return err.message, None


RESOLVE_TASK = "Resolve this client's backups"
SPEC_TASK = "Validating arguments against arg spec 'main'"


def ansible_verdicts(backups, tmp_path):
    """[(message or None, refused by the argument spec)] for every backup, from one real ansible-playbook
    run of the role borg_common as every client-side role runs it: its typed argument spec, then the
    action resolve_backups. One play per backup, errors ignored so each play reaches the resolution."""
    inventory = {"all": {"children": {
        "backup_servers": {"hosts": {SERVER["name"]: {
            "ansible_host": SERVER["address"], "ansible_port": SERVER["port"], "borgfleet_storage_pools": POOLS}}},
        "clients": {"hosts": {CLIENT: {"borgfleet_backup_server": SERVER["name"]}}}}}}
    plays = [{"name": "case-%d" % i, "hosts": CLIENT, "connection": "local", "gather_facts": False,
              "ignore_errors": True, "vars": {"borgfleet_backups": [backup]},
              "roles": ["borgfleet.backup.borg_common"]} for i, backup in enumerate(backups)]
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(json.dumps(plays))
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.json"), str(tmp_path / "play.yml")],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                          env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                               "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
                               "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-3000:]
    # The default callback, one JSON result per line: "PLAY [case-N]", "TASK [role : name]", then
    # "ok: [host]" or "fatal: [host]: FAILED! => {...}" followed by "...ignoring".
    verdicts, play, task = {}, None, None
    for line in proc.stdout.splitlines():
        if line.startswith("PLAY [case-"):
            play = int(line.split("case-")[1].split("]")[0])
            verdicts[play] = {"spec_refused": False}
        elif line.startswith("TASK ["):
            task = line.split(" : ", 1)[-1].split("]")[0]
        elif play is not None and task == RESOLVE_TASK and line.startswith("ok: [%s]" % CLIENT):
            verdicts[play]["message"] = None
        elif play is not None and line.startswith("fatal: [%s]: FAILED! => " % CLIENT):
            if task == RESOLVE_TASK:
                verdicts[play]["message"] = json.loads(line.split("FAILED! => ", 1)[1])["msg"]
            elif task.startswith(SPEC_TASK):
                verdicts[play]["spec_refused"] = True
            else:
                raise AssertionError("unexpected failure of %r: %s" % (task, line))
    assert sorted(verdicts) == list(range(len(backups))), proc.stdout[-3000:]
    assert all("message" in v for v in verdicts.values()), verdicts   # every play reached the resolution
    assert PASSPHRASE not in proc.stdout
    return [(verdicts[i]["message"], verdicts[i]["spec_refused"]) for i in range(len(backups))]


@pytest.fixture()
def parity_fleet(api):
    op = api("operator")
    suffix = uuid.uuid4().hex[:6]
    srv = op.post("/api/servers", json=dict(SERVER, name=SERVER["name"], pools=POOLS))
    assert srv.status_code == 201, srv.json
    cl = op.post("/api/servers", json={"name": CLIENT, "role": "client", "address": "127.0.0.6",
                                       "backup_server_id": srv.json["id"]})
    assert cl.status_code == 201, cl.json
    pools = {p["name"]: p["id"] for p in op.get("/api/storage-pools", query_string={"server_id": srv.json["id"]}).json["items"]}
    yield op, srv.json, cl.json, pools, suffix
    for bj in op.get("/api/backup-jobs", query_string={"client_id": cl.json["id"], "limit": 200}).json["items"]:
        op.delete(f"/api/backup-jobs/{bj['id']}")
    assert op.delete(f"/api/servers/{cl.json['id']}").status_code == 204
    assert op.delete(f"/api/servers/{srv.json['id']}").status_code == 204


def test_backup_corpus_same_verdict_and_message_in_api_and_collection(parity_fleet, tmp_path):
    op, srv, cl, pool_ids, _ = parity_fleet
    cases, service = [], []
    for body, expected in BACKUPS:
        request = {k: v for k, v in body.items() if k != "pool"}
        if "pool" in body:
            request["pool_id"] = pool_ids[body["pool"]]
        resp = op.post("/api/backup-jobs", json={"client_id": cl["id"], "passphrase": PASSPHRASE, **request})
        assert resp.status_code in (201, 400), (body, resp.status_code, resp.json)
        service.append(resp)
        cases.append(hostvars(SERVER, POOLS, [collection_backup(body)]))
    through_ansible = ansible_verdicts([collection_backup(body) for body, _ in BACKUPS], tmp_path)

    for (body, expected), resp, hv, (played, spec_refused) in zip(BACKUPS, service, cases, through_ansible):
        message, resolved = filter_verdict(hv)
        api_message = resp.json.get("error") if resp.status_code == 400 else None
        assert api_message == message == played, (body, api_message, message, played)
        if expected is OK:
            assert resp.status_code == 201 and message is None, (body, api_message)
            # The role's typed argument spec refuses nothing the contract accepts.
            assert not spec_refused, body
            # Accepted on both sides means the same repository on both sides.
            assert resp.json["location"] == resolved[0]["repository"], body
            assert resp.json["paths"] == resolved[0]["paths"] and resp.json["compression"] == resolved[0]["compression"]
        else:
            assert message and expected in message, (body, message)
            assert message.startswith(f"client '{CLIENT}'"), message   # names the client and the backup


def test_pool_corpus_same_verdict_and_message_and_no_nesting(api, db, tmp_path):
    op = api("operator")
    server = dict(SERVER, name="bs-pools-" + uuid.uuid4().hex[:6], address="127.0.0.7", port=22)
    srv = op.post("/api/servers", json=dict(server, pools=POOLS[:1]))
    assert srv.status_code == 201, srv.json
    try:
        for pool, expected in NEW_POOLS:
            resp = op.post("/api/storage-pools", json={"server_id": srv.json["id"], **pool})
            hv = hostvars(server, POOLS[:1] + [pool], [collection_backup({"name": "etc", "paths": ["/etc"]})])
            message, _ = filter_verdict(hv, server=server["name"])
            try:
                collection_filter.server_settings(server["name"], hv[server["name"]])
                settings_message = None
            except AnsibleFilterError as err:
                settings_message = err.message
            api_message = resp.json.get("error") if resp.status_code == 400 else None
            assert api_message == settings_message == message, (pool, api_message, settings_message, message)
            if expected is OK:
                assert resp.status_code == 201, (pool, resp.json)
                assert resp.json["path"] == pool["path"].rstrip("/")
                assert op.delete(f"/api/storage-pools/{resp.json['id']}").status_code == 204
            else:
                assert resp.status_code == 400 and expected in api_message, (pool, api_message)
        # Nothing refused was stored: the server still has its one pool.
        stored = op.get("/api/storage-pools", query_string={"server_id": srv.json["id"]}).json["items"]
        assert [(p["name"], p["path"]) for p in stored] == [("main", "/srv/borg")]
    finally:
        assert op.delete(f"/api/servers/{srv.json['id']}").status_code == 204


def test_a_server_posted_with_a_refused_pool_is_not_stored(api):
    op = api("operator")
    name = "bs-nested-" + uuid.uuid4().hex[:6]
    resp = op.post("/api/servers", json=dict(SERVER, name=name, pools=[
        {"name": "main", "path": "/srv/borg"}, {"name": "inner", "path": "/srv/borg/inner"}]))
    assert resp.status_code == 400 and "inside" in resp.json["error"], resp.json
    names = [s["name"] for s in op.get("/api/servers", query_string={"limit": 200}).json["items"]]
    assert name not in names


def test_server_ssh_hosts_ipv6_urls_and_option_like_hosts(api, db):
    """IPv6 backup servers get bracketed URLs on both sides; a host that reads as an ssh option
    (stored before extra vars were restricted) makes both sides refuse with the same message."""
    op = api("operator")
    cases = [("2001:db8::5", {}, "ssh://borg@[2001:db8::5]:22/srv/borg/cl-v6/etc"),
             ("127.0.0.8", {"borgfleet_server_ssh_host": "fd00::8", "borgfleet_server_ssh_port": 2200},
              "ssh://borg@[fd00::8]:2200/srv/borg/cl-v6/etc"),
             ("127.0.0.8", {"borgfleet_server_ssh_host": "-f/etc/shadow"}, None),
             ("127.0.0.8", {"borgfleet_server_ssh_host": "-oProxyCommand=touch /tmp/x"}, None)]
    for address, server_vars, url in cases:
        name = "bs-v6-" + uuid.uuid4().hex[:6]
        # Rows written directly: the vars may be ones the server API no longer accepts.
        with db.cursor() as cur:
            cur.execute("INSERT INTO servers (name, role, address, port, ssh_user, connection, vars_json)"
                        " VALUES (%s, 'backup_server', %s, 22, 'root', 'ssh', %s)", (name, address, json.dumps(server_vars)))
            sid = cur.lastrowid
            cur.execute("INSERT INTO storage_pools (server_id, name, path) VALUES (%s, 'main', '/srv/borg')", (sid,))
            cur.execute("INSERT INTO servers (name, role, address, port, ssh_user, connection, backup_server_id)"
                        " VALUES ('cl-v6', 'client', '127.0.0.9', 22, 'root', 'ssh', %s)", (sid,))
            cid = cur.lastrowid
        try:
            resp = op.post("/api/backup-jobs", json={"client_id": cid, "name": "etc", "paths": ["/etc"],
                                                     "passphrase": PASSPHRASE})
            server = {"name": name, "address": address, "port": 22}
            message, resolved = filter_verdict(hostvars(server, POOLS[:1], [collection_backup({"name": "etc", "paths": ["/etc"]})],
                                                        client="cl-v6", server_vars=server_vars),
                                               client="cl-v6", server=name)
            if url:
                assert resp.status_code == 201 and message is None, (server_vars, resp.json, message)
                assert resp.json["location"] == resolved[0]["repository"] == url
                assert resolved[0]["server_endpoint"]["host"] == url.split("[")[1].split("]")[0]
                op.delete(f"/api/backup-jobs/{resp.json['id']}")
            else:
                host = server_vars["borgfleet_server_ssh_host"]
                assert resp.status_code == 400 and resp.json["error"] == message, (resp.json, message)
                assert f"ssh host (borgfleet_server_ssh_host, else ansible_host, else its inventory name) {host!r}" \
                    f" is not a host name" in message, message
        finally:
            with db.cursor() as cur:
                cur.execute("DELETE FROM servers WHERE id=%s", (cid,))
                cur.execute("DELETE FROM storage_pools WHERE server_id=%s", (sid,))
                cur.execute("DELETE FROM servers WHERE id=%s", (sid,))
