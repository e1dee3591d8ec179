"""Passphrases encrypted at rest: the stored column, the migration of plain text, the
inventory plugin's decryption (right, wrong and missing key), key rotation, and a real
backup whose private data dir and job log never hold the passphrase."""
import filecmp
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from cryptography.fernet import Fernet

from borgfleet_ui import db as dbm, secret_store
from tests.lib.borgrepo import BorgRepo
from uilib import REPO, drop_local_backup, make_local_backup, wait_job, worker_env

UNSAFE = "__ansible_unsafe"   # how ansible-inventory --list prints a value marked unsafe


def stored(db, bj_id):
    return dbm.query(db, "SELECT passphrase FROM backup_jobs WHERE id=%s", (bj_id,), one=True)["passphrase"]


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "borgfleet_ui", *args], capture_output=True, text=True,
                          env=worker_env(env), cwd=str(REPO), timeout=120)


def inventory(ui_env, tmp_path, key_file):
    src = tmp_path / "sec.fleet.yml"
    src.write_text(json.dumps({"plugin": "borgfleet.backup.fleet", "db_name": ui_env["DB_NAME"],
                               "secret_key_file": str(key_file)}))
    out = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(src), "--list"],
                         capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PATH": "/usr/bin:/bin",
                              "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"})
    out.stderr = " ".join(out.stderr.split())   # ansible wraps warnings at 80 columns
    return out


def test_stored_encrypted_migrated_and_decrypted_by_the_plugin(api, db, ui_env, tmp_path):
    op = api("operator")
    cl = api("admin").post("/api/servers", json={"name": "sec-cl", "role": "client", "connection": "local",
                                                 "local_pool_path": str(tmp_path / "repos")}).json
    pw = "sec pass $HOME;'\"| x"
    a = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "a", "paths": ["/etc"], "passphrase": pw}).json
    b = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "b", "paths": ["/etc"],
                                          "passphrase": "other-pass-b"}).json
    # At rest: a versioned Fernet token, no plain text; the API never returns it.
    sa = stored(db, a["id"])
    assert sa.startswith("bf1:") and pw not in sa and "sec pass" not in sa
    assert secret_store.decrypt(ui_env, sa) == pw
    assert "passphrase" not in op.get(f"/api/backup-jobs/{a['id']}").json
    assert "bf1:" not in json.dumps(op.get("/api/backup-jobs").json)
    # An edit without a passphrase keeps the stored value; a new passphrase is encrypted anew.
    assert op.put(f"/api/backup-jobs/{a['id']}", json={"paths": ["/etc", "/srv"]}).status_code == 200
    assert stored(db, a["id"]) == sa
    assert op.put(f"/api/backup-jobs/{b['id']}", json={"passphrase": "short"}).status_code == 400

    # A row from before encryption (plain text) next to an encrypted one: `db upgrade` encrypts
    # only the plain one, and a second run changes nothing.
    dbm.execute(db, "UPDATE backup_jobs SET passphrase=%s WHERE id=%s", ("legacy-plain-pass", b["id"]))
    out = inventory(ui_env, tmp_path, ui_env["SECRET_KEY_FILE"])
    assert out.returncode != 0 and "backup 'b' of client 'sec-cl' is stored in plain text" in out.stderr
    up = cli("db", "upgrade")
    assert up.returncode == 0 and "encrypted 1 plain-text secret(s)" in up.stdout, up.stdout + up.stderr
    sb = stored(db, b["id"])
    assert sb.startswith("bf1:") and "legacy" not in sb and secret_store.decrypt(ui_env, sb) == "legacy-plain-pass"
    assert stored(db, a["id"]) == sa
    up = cli("db", "upgrade")
    assert up.returncode == 0 and "encrypted" not in up.stdout
    assert (stored(db, a["id"]), stored(db, b["id"])) == (sa, sb)

    # The plugin decrypts with the service's key file ...
    out = inventory(ui_env, tmp_path, ui_env["SECRET_KEY_FILE"])
    assert out.returncode == 0, out.stderr
    backups = json.loads(out.stdout)["_meta"]["hostvars"]["sec-cl"]["borgfleet_backups"]
    # Marked unsafe (ansible-inventory prints {"__ansible_unsafe": value}): never templated.
    assert {x["name"][UNSAFE]: x["passphrase"][UNSAFE] for x in backups} == {"a": pw, "b": "legacy-plain-pass"}
    # ... and with another key or none it fails naming the problem, never passing ciphertext on.
    wrong = tmp_path / "wrong.key"
    wrong.write_text(Fernet.generate_key().decode() + "\n")
    out = inventory(ui_env, tmp_path, wrong)
    assert out.returncode != 0 and "backup 'a' of client 'sec-cl' with the key file" in out.stderr
    assert "wrong.key: wrong key" in out.stderr, out.stderr
    assert "bf1:" not in out.stdout + out.stderr
    out = inventory(ui_env, tmp_path, tmp_path / "missing.key")
    assert out.returncode != 0 and "cannot read the BorgFleet secret key file" in out.stderr, out.stderr
    # `db upgrade` with a wrong key refuses to mix keys in one table.
    up = cli("db", "upgrade", env={"BORGFLEET_SECRET_KEY_FILE": str(wrong)})
    assert up.returncode != 0 and "wrong key file" in up.stderr
    assert (stored(db, a["id"]), stored(db, b["id"])) == (sa, sb)

    # Rotation: a new single key; every value re-encrypted; the old key opens none of them.
    old_key = Path(ui_env["SECRET_KEY_FILE"]).read_text()
    rot = cli("rotate-key")
    assert rot.returncode == 0, rot.stderr
    new_key = Path(ui_env["SECRET_KEY_FILE"]).read_text()
    assert new_key != old_key and len(new_key.split()) == 1
    assert Path(ui_env["SECRET_KEY_FILE"]).stat().st_mode & 0o777 == 0o600
    n = dbm.query(db, "SELECT COUNT(*) AS n FROM backup_jobs", one=True)["n"]
    assert f"re-encrypted {n} secret(s)" in rot.stdout
    for bj, plain in ((a, pw), (b, "legacy-plain-pass")):
        token = stored(db, bj["id"])[4:].encode()
        assert Fernet(new_key.strip()).decrypt(token).decode() == plain
        assert secret_store._opens(old_key.strip(), stored(db, bj["id"])) is False
    op.delete(f"/api/servers/{cl['id']}")


def test_db_upgrade_creates_the_key_file(tmp_path, ui_env):
    key = tmp_path / "etc" / "borgfleet" / "secret.key"
    up = cli("db", "upgrade", env={"BORGFLEET_SECRET_KEY_FILE": str(key)})
    assert up.returncode == 0 and f"created the secret key file {key}" in up.stdout, up.stderr
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    Fernet(key.read_text().strip())   # a valid key
    first = key.read_text()
    assert cli("db", "upgrade", env={"BORGFLEET_SECRET_KEY_FILE": str(key)}).returncode == 0
    assert key.read_text() == first   # never replaced


def test_backup_runs_without_passphrase_on_disk_or_in_log(api, db, ui_env, start_worker, tmp_path):
    cl, bj = make_local_backup(api, tmp_path, "sec-e2e", files={"a.bin": b"A" * 300000, "b.txt": b"hello"})
    pw = "local-pass-sec-e2e"
    assert pw not in stored(db, bj["id"])
    run_dir = Path(ui_env["RUN_DIR"])
    seen, found, scans, stop = set(), [], [], threading.Event()

    def scan():
        # Read every file of the private data dirs while the runs go on (they are removed after).
        # os.walk skips directories that vanish under it (a run ending) instead of raising.
        while not stop.is_set():
            for d, _, files in os.walk(run_dir):
                for fn in files:
                    try:
                        data = Path(d, fn).read_bytes()
                    except OSError:
                        continue
                    seen.add(fn)
                    if pw.encode() in data:
                        found.append(os.path.join(d, fn))
            scans.append(1)
    t = threading.Thread(target=scan, daemon=True)
    t.start()
    start_worker(1)
    try:
        setup = wait_job(db, api("operator").post(f"/api/servers/{cl['id']}/setup").json["job_id"])
        assert setup["status"] == "succeeded", setup["error"]
        job = wait_job(db, api("operator").post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
        assert job["status"] == "succeeded", job["error"]
    finally:
        stop.set()
        t.join()
    # The scan really read the runs' files (the inventory source among them), and none held it.
    assert "borgfleet.fleet.yml" in seen and len(seen) > 3 and len(scans) > 10, (seen, len(scans))
    assert found == []
    # Both runs' private data dirs are removed (RUN_DIR is shared with other tests' workers: look at ours).
    assert [p for p in run_dir.iterdir() if p.name.startswith((f"job-{setup['id']}-", f"job-{job['id']}-"))] == []
    for j in (setup, job):
        log = "\n".join(api("viewer").get(f"/api/jobs/{j['id']}/log").json["lines"])
        assert "PLAY RECAP" in log and pw not in log and "bf1:" not in log
    # Read back with borg and the plain passphrase: the decrypted one reached borg intact.
    repo = BorgRepo(bj["location"], pw, base_dir=tmp_path / "sec-e2e-base")
    names = repo.archive_names()
    assert len(names) == 1
    out = repo.extract(names[0], tmp_path / "restore")
    src = tmp_path / "sec-e2e-data"
    restored = out / str(src).lstrip("/")
    assert filecmp.cmp(src / "a.bin", restored / "a.bin", shallow=False)
    assert filecmp.cmp(src / "b.txt", restored / "b.txt", shallow=False)
    drop_local_backup(api, cl, bj)


def test_worker_with_a_wrong_key_fails_clearly(api, db, start_worker, tmp_path):
    cl, bj = make_local_backup(api, tmp_path, "sec-wrong")
    wrong = tmp_path / "wrong.key"
    wrong.write_text(Fernet.generate_key().decode() + "\n")
    start_worker(1, env={"BORGFLEET_SECRET_KEY_FILE": str(wrong)})
    job = wait_job(db, api("operator").post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
    assert job["status"] == "failed"
    assert f"with the key file {wrong}: wrong key" in job["error"], job["error"]
    log = "\n".join(api("viewer").get(f"/api/jobs/{job['id']}/log").json["lines"])
    assert "bf1:" not in log and "local-pass-sec-wrong" not in log
    drop_local_backup(api, cl, bj)


def test_extra_vars_refuse_secrets(api):
    op = api("admin")  # extra vars are set by admins only
    for name in ("ansible_password", "ansible_become_pass", "ansible_ssh_pass", "borgfleet_db_password"):
        resp = api("admin").post("/api/servers", json={"name": "sec-vars", "role": "client", "connection": "local",
                                                       "local_pool_path": "/var/tmp/x", "vars": {name: "hunter22"}})
        assert resp.status_code == 400 and f"vars cannot hold secrets ({name})" in resp.json["error"], resp.json
    ok = api("admin").post("/api/servers", json={"name": "sec-vars", "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/x",
                                                 "vars": {"ansible_ssh_private_key_file": "/k/id"}})
    assert ok.status_code == 201, ok.json
    op.delete(f"/api/servers/{ok.json['id']}")


def test_web_without_the_key_file_refuses_clearly(api, users, tmp_path):
    from borgfleet_ui import create_app
    cl = api("admin").post("/api/servers", json={"name": "sec-nokey", "role": "client", "connection": "local",
                                                    "local_pool_path": "/var/tmp/x"}).json
    app = create_app({"TESTING": True, "SECRET_KEY_FILE": str(tmp_path / "none.key")})
    resp = app.test_client().post("/api/backup-jobs", headers={"Authorization": f"Bearer {users['operator'][2]}"},
                                  json={"client_id": cl["id"], "name": "x", "paths": ["/etc"],
                                        "passphrase": "never-stored-1"})
    assert resp.status_code == 503 and f"secret key file {tmp_path / 'none.key'} is missing" in resp.json["error"]
    assert not api("viewer").get("/api/backup-jobs", query_string={"client_id": cl["id"]}).json["items"]
    api("operator").delete(f"/api/servers/{cl['id']}")
