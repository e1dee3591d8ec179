"""The borgfleet.backup.fleet inventory plugin, run by the real ansible-inventory."""
import json
import subprocess
import sys
from pathlib import Path

from uilib import REPO

UNSAFE = "__ansible_unsafe"


def unwrap(v):
    """ansible-inventory --list prints a value marked unsafe as {"__ansible_unsafe": value}."""
    if isinstance(v, dict):
        return v[UNSAFE] if set(v) == {UNSAFE} else {k: unwrap(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unwrap(x) for x in v]
    return v


def plain_strings(v, where=""):
    """Where a string is NOT marked unsafe (ansible would template it)."""
    if isinstance(v, dict):
        if set(v) == {UNSAFE}:
            return []
        return [p for k, x in v.items() for p in plain_strings(x, f"{where}.{k}")]
    if isinstance(v, list):
        return [p for i, x in enumerate(v) for p in plain_strings(x, f"{where}[{i}]")]
    return [where] if isinstance(v, str) else []


def test_ansible_inventory_reads_the_fleet(api, ui_env, tmp_path):
    op, admin = api("operator"), api("admin")  # extra vars are set by admins only
    bs = admin.post("/api/servers", json={"name": "inv-bs", "role": "backup_server", "address": "127.0.0.7",
                                       "port": 2200, "vars": {"borgfleet_server_user": "borgx"},
                                       "pools": [{"name": "main", "path": "/srv/a"},
                                                 {"name": "big", "path": "/srv/b"}]}).json
    cl = admin.post("/api/servers", json={"name": "inv-cl", "role": "client", "address": "127.0.0.8",
                                       "backup_server_id": bs["id"],
                                       "vars": {"borgfleet_ssh_key": "/k/id"}}).json
    pools = {p["name"]: p["id"] for p in op.get("/api/storage-pools", query_string={"server_id": bs["id"]}).json["items"]}
    pw = "pw $HOME;'\"|& x"
    op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "etc", "paths": ["/etc"],
                                      "exclude": ["*.tmp"], "passphrase": pw, "pool_id": pools["big"],
                                      "retention": {"daily": 7}, "schedule": "0 2 * * *"})
    loc = api("admin").post("/api/servers", json={"name": "inv-local", "role": "client", "connection": "local",
                                                  "local_pool_path": "/var/tmp/x"}).json
    op.post("/api/backup-jobs", json={"client_id": loc["id"], "name": "pg", "passphrase": "pg-pass-123",
                                      "databases": [{"engine": "postgresql", "method": "snapshot"}],
                                      "verify_schedule": "0 6 * * 0"})
    src = tmp_path / "prod.fleet.yml"
    src.write_text(json.dumps({"plugin": "borgfleet.backup.fleet", "db_name": ui_env["DB_NAME"]}))
    out = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(src), "--list"],
                         capture_output=True, text=True, cwd=REPO, env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                                                                        "PATH": "/usr/bin:/bin",
                                                                        "BORGFLEET_SECRET_KEY_FILE": ui_env["SECRET_KEY_FILE"]})
    assert out.returncode == 0, out.stderr
    inv = json.loads(out.stdout)
    raw = inv["_meta"]["hostvars"]
    # Every value from the database is marked unsafe (never templated); the only template is the
    # plugin's own interpreter of a local connection.
    for host in ("inv-bs", "inv-cl", "inv-local"):
        assert plain_strings(raw[host], host) == (["inv-local.ansible_python_interpreter"] if host == "inv-local" else [])
    assert raw["inv-local"]["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    assert raw["inv-cl"]["borgfleet_backups"][0]["passphrase"] == {UNSAFE: pw}
    hv = unwrap(raw)
    assert "inv-bs" in inv["backup_servers"]["hosts"]
    assert {"inv-cl", "inv-local"} <= set(inv["clients"]["hosts"])
    assert hv["inv-bs"]["borgfleet_storage_pools"] == [{"name": "main", "path": "/srv/a"},
                                                       {"name": "big", "path": "/srv/b"}]
    assert hv["inv-bs"]["borgfleet_server_user"] == "borgx" and hv["inv-bs"]["ansible_port"] == 2200
    assert hv["inv-cl"]["borgfleet_backup_server"] == "inv-bs"
    assert hv["inv-cl"]["borgfleet_ssh_key"] == "/k/id"
    assert hv["inv-cl"]["borgfleet_backups"] == [{"name": "etc", "paths": ["/etc"], "exclude": ["*.tmp"],
                                                  "compression": "lz4", "passphrase": pw, "pool": "big",
                                                  "retention": {"daily": 7}, "schedule": "0 2 * * *",
                                                  "timezone": "UTC"}]
    assert hv["inv-local"]["borgfleet_backup_server"] == "local"
    assert hv["inv-local"]["borgfleet_local_pool_path"] == "/var/tmp/x"
    assert hv["inv-local"]["ansible_connection"] == "local"
    # A database backup as the contract has it: one database, no paths.
    assert hv["inv-local"]["borgfleet_backups"] == [{"name": "pg", "paths": [], "exclude": [], "compression": "lz4",
                                                     "passphrase": "pg-pass-123",
                                                     "databases": [{"engine": "postgresql", "method": "snapshot"}]}]
    # A wrong database is an error that says what is wrong, not an empty inventory.
    src.write_text(json.dumps({"plugin": "borgfleet.backup.fleet", "db_name": "no_such_db_bf"}))
    bad = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(src), "--list"],
                         capture_output=True, text=True, cwd=REPO, env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                                                                        "PATH": "/usr/bin:/bin",
                                                                        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"})
    assert bad.returncode != 0 and "cannot reach the BorgFleet database" in bad.stderr
    for sid in (loc["id"], cl["id"], bs["id"]):
        op.delete(f"/api/servers/{sid}")


def test_stored_vars_outside_the_allowlist_never_reach_ansible(api, db, ui_env, tmp_path):
    """A row saved before the allowlist (or written to the database by hand) holding ProxyCommand:
    the plugin refuses the fleet with a message naming the server, and the command never runs."""
    from borgfleet_ui.db import execute
    marker = tmp_path / "proxycommand-ran"
    cl = api("admin").post("/api/servers", json={"name": "inv-old", "role": "client", "address": "127.0.0.9",
                                                 "local_pool_path": "/var/tmp/inv-old"}).json
    execute(db, "UPDATE servers SET vars_json=%s WHERE id=%s",
            (json.dumps({"ansible_ssh_common_args": f"-o ProxyCommand=touch {marker}"}), cl["id"]))
    try:
        src = tmp_path / "old.fleet.yml"
        src.write_text(json.dumps({"plugin": "borgfleet.backup.fleet", "db_name": ui_env["DB_NAME"]}))
        env = {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PATH": "/usr/bin:/bin",
               "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", "BORGFLEET_SECRET_KEY_FILE": ui_env["SECRET_KEY_FILE"]}
        out = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(src), "-l", "inv-old",
                              str(REPO / "playbooks" / "collect_stats.yml")],
                             capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
        assert out.returncode != 0
        assert "server 'inv-old' in the BorgFleet database: vars: ansible_ssh_common_args: only -o" in \
            " ".join((out.stdout + out.stderr).split()), out.stdout + out.stderr
        assert not marker.exists()
    finally:
        api("admin").delete(f"/api/servers/{cl['id']}")
