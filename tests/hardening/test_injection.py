"""Values from the service are data, never templates; nothing on disk or in Redis runs code or
leaks a secret (issue 10). Real worker, real ansible-runner, real borg, on a local client."""
import glob
import json
import os
import threading
import uuid
import zlib
from pathlib import Path

import pytest
from rq import Queue

from borgfleet_ui import db as dbm
from borgfleet_ui.kinds import queue_order
from tests.lib.borgrepo import BorgRepo
from uilib import wait_for, wait_job

# Each must reach borg exactly as typed: Jinja comment, expression and block delimiters, then
# shell and quoting characters, a space and non-ASCII.
PASSPHRASES = ["Pa{#x#}ss-1", "Pa{{ss-1}}", "Pa{% raw %}x", "Pa $HOME 'q' \"d\" \\b é-ü ☃"]


def lookup(marker):
    return "{{ lookup('pipe','touch %s') }}" % marker


@pytest.fixture()
def marker():
    """A file path that only a templated lookup would create."""
    paths = []

    def make():
        p = Path(f"/tmp/bf-inj-{uuid.uuid4().hex[:10]}")
        paths.append(p)
        return p
    yield make
    for p in paths:
        p.unlink(missing_ok=True)


@pytest.fixture()
def db_user(ui_env):
    """A MariaDB account with a password (the shared server's root has none), for the worker: its
    password must reach the inventory plugin yet appear in no file of the run."""
    name, password = f"bfinj_{uuid.uuid4().hex[:8]}", "DBpw-" + uuid.uuid4().hex
    conn = dbm.connect(ui_env, database=False)
    dbm.execute(conn, f"CREATE USER '{name}'@'%%' IDENTIFIED BY %s", (password,))
    dbm.execute(conn, f"GRANT ALL ON `{ui_env['DB_NAME']}`.* TO '{name}'@'%%'")
    yield name, password
    dbm.execute(conn, f"DROP USER '{name}'@'%%'")
    conn.close()


class RunDirScan(threading.Thread):
    """Reads every regular file under the run directory while runs go on (each run's dir is removed
    when it ends) and records which needles were seen in which file."""

    def __init__(self, run_dir, needles):
        super().__init__(daemon=True)
        self.run_dir, self.needles = run_dir, {n: n.encode() for n in needles}
        self.hits, self.files, self.scans, self.halt = {}, set(), 0, threading.Event()
        self.env_keys = set()   # of the environments runner wrote to artifacts/<id>/command

    def run(self):
        while not self.halt.is_set():
            for d, _, files in os.walk(self.run_dir):
                for fn in files:
                    path = os.path.join(d, fn)
                    try:
                        if not os.path.isfile(path):   # never open a FIFO or socket
                            continue
                        data = Path(path).read_bytes()
                    except OSError:
                        continue
                    self.files.add(fn)
                    if fn == "command":
                        try:
                            self.env_keys |= set(json.loads(data)["env"])
                        except ValueError:   # caught while runner writes it
                            pass
                    for n, b in self.needles.items():
                        if b in data:
                            self.hits.setdefault(n, set()).add(path)
            self.scans += 1

    def stop(self):
        self.halt.set()
        self.join()


def redis_dump(redis):
    """Every value of our Redis db as bytes (RQ job hashes decompressed where they are)."""
    out = []
    for key in redis.scan_iter():
        t = redis.type(key).decode()
        if t == "hash":
            vals = list(redis.hgetall(key).values())
        elif t == "string":
            vals = [redis.get(key)]
        elif t == "list":
            vals = redis.lrange(key, 0, -1)
        elif t == "set":
            vals = list(redis.smembers(key))
        elif t == "zset":
            vals = redis.zrange(key, 0, -1)
        else:
            vals = []
        for v in [key] + vals:
            out.append(v)
            try:
                out.append(zlib.decompress(v))
            except zlib.error:
                pass
    return b"\n".join(out)


def test_passphrases_paths_and_archive_names_are_data(api, db, redis, ui_env, start_worker, tmp_path, marker, db_user):
    op = api("operator")
    base, pool = tmp_path / "base", tmp_path / "repos"
    cl = api("admin").post("/api/servers", json={"name": "inj-cl", "role": "client", "connection": "local",
                                                 "local_pool_path": str(pool), "vars": {"borgfleet_borg_base_dir": str(base)}})
    assert cl.status_code == 201, cl.json
    cl = cl.json
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("plain data\n")
    jobs = []
    for i, pw in enumerate(PASSPHRASES):
        bj = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": f"pw{i}", "paths": [str(data)],
                                               "passphrase": pw})
        assert bj.status_code == 201, bj.json
        jobs.append(bj.json)
    # A path holding a lookup: refused, or backed up literally (a directory of that very name).
    path_marker = marker()
    odd = Path(str(tmp_path / "odd-") + lookup(path_marker))
    odd.mkdir(parents=True)
    (odd / "inside.txt").write_text("odd path\n")
    put = op.put(f"/api/backup-jobs/{jobs[3]['id']}", json={"paths": [str(data), str(odd)]})
    assert put.status_code in (200, 400), put.json
    path_kept = put.status_code == 200
    if not path_kept:
        assert "path" in put.json["error"], put.json

    user, db_password = db_user
    worker_env = {"BORGFLEET_DB_USER": user, "BORGFLEET_DB_PASSWORD": db_password}
    secrets = PASSPHRASES + [db_password, ui_env["SECRET_KEY"]]
    scan = RunDirScan(ui_env["RUN_DIR"], secrets + [ui_env["REDIS_URL"]] + [bj["location"] for bj in jobs])
    scan.start()
    fifos_before = set(glob.glob("/tmp/borgfleet-secret-*"))
    start_worker(61, env=worker_env)   # a number of its own: RQ pubsub (worker commands) spans Redis dbs
    run_jobs = []
    try:
        setup = wait_job(db, op.post(f"/api/servers/{cl['id']}/setup").json["job_id"])
        assert setup["status"] == "succeeded", setup["error"]
        run_jobs.append(setup)
        for bj in jobs:
            job = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
            assert job["status"] == "succeeded", job["error"]
            run_jobs.append(job)

        # An archive name from the database (or borg) holding a lookup, deleted through the service.
        archive_marker = marker()
        dbm.execute(db, "INSERT INTO archives (repository_id, name) VALUES (%s, %s)",
                    (jobs[0]["repository_id"], "x-" + lookup(archive_marker)))
        aid = dbm.query(db, "SELECT id FROM archives WHERE repository_id=%s AND name LIKE 'x-%%'",
                        (jobs[0]["repository_id"],), one=True)["id"]
        resp = op.delete(f"/api/archives/{aid}")
        assert resp.status_code == 202, resp.json
        deleted = wait_job(db, resp.json["job_id"])
        run_jobs.append(deleted)
    finally:
        scan.stop()

    # The deletion ran the playbook with the name as data: it is not in borg, nothing was deleted.
    assert not archive_marker.exists()
    log = [r["line"] for r in dbm.query(db, "SELECT line FROM job_log WHERE job_id=%s ORDER BY n", (deleted["id"],))]
    assert any("PLAY RECAP" in line for line in log), log
    assert deleted["status"] in ("succeeded", "failed"), deleted
    assert "template" not in (deleted["error"] or "").lower(), deleted["error"]

    # Each repository opens with exactly the typed passphrase (borg reads BORG_PASSPHRASE).
    for bj, pw in zip(jobs, PASSPHRASES):
        repo = BorgRepo(bj["location"], pw, base_dir=base)
        names = repo.archive_names()
        assert len(names) == 1 and names[0].startswith(f"{bj['name']}-"), names
        assert f"{str(data).lstrip('/')}/f.txt" in repo.paths(names[0])
    # What templating made of the first one does not open it.
    wrong = BorgRepo(jobs[0]["location"], "Pass-1", base_dir=base).run("list", jobs[0]["location"], check=False)
    assert wrong.returncode != 0 and "passphrase" in wrong.stderr.lower(), wrong.stderr

    assert not path_marker.exists()
    if path_kept:
        repo = BorgRepo(jobs[3]["location"], PASSPHRASES[3], base_dir=base)
        assert f"{str(odd).lstrip('/')}/inside.txt" in repo.paths(repo.archive_names()[0])

    # No passphrase, DB password or Flask secret in any job row, log line or Redis value ...
    for j in run_jobs:
        row = dbm.query(db, "SELECT error, result_json, params_json FROM jobs WHERE id=%s", (j["id"],), one=True)
        lines = dbm.query(db, "SELECT line FROM job_log WHERE job_id=%s", (j["id"],))
        text = json.dumps(row) + "\n".join(r["line"] for r in lines)
        assert "PLAY RECAP" in text
        for s in secrets:
            assert s not in text and json.dumps(s)[1:-1] not in text, (j["kind"], s)
    stored = redis_dump(redis)
    assert setup["id"].encode() in stored   # positive control: the jobs are there
    for s in secrets:
        assert s.encode() not in stored, s
    # ... nor in any file of the runs, while they ran: the scan read them (it found the
    # repository paths and runner's command file, which holds the run's environment) and no secret
    # nor the worker's Redis URL (the run's environment is not the worker's).
    assert "command" in scan.files and "borgfleet.fleet.yml" in scan.files and scan.scans > 10, scan.files
    assert {"PATH", "ANSIBLE_CONFIG", "BORGFLEET_DB_PASSWORD_FILE"} <= scan.env_keys, scan.env_keys
    assert not {"BORGFLEET_SECRET_KEY", "BORGFLEET_REDIS_URL", "BORGFLEET_DB_PASSWORD", "PYTHONPATH"} & scan.env_keys
    assert any(bj["location"] in scan.hits for bj in jobs), scan.hits
    assert {n: p for n, p in scan.hits.items() if n in secrets or n == ui_env["REDIS_URL"]} == {}
    # The DB password's FIFO (outside the run dir) is gone with each run.
    assert set(glob.glob("/tmp/borgfleet-secret-*")) - fifos_before == set()
    assert [p for p in Path(ui_env["RUN_DIR"]).iterdir() if any(p.name.startswith(f"job-{j['id']}-") for j in run_jobs)] == []
    op.delete(f"/api/servers/{cl['id']}")


class Planted:
    """What an attacker able to write to Redis would plant: a pickle that runs a command when loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickled_job_planted_in_redis_never_runs(api, db, redis, start_worker, tmp_path, marker):
    m = marker()
    planted_id = f"planted-{uuid.uuid4().hex[:8]}"
    # RQ's default serializer is pickle: enqueued as an attacker would, on our first queue.
    Queue(queue_order()[0], connection=redis).enqueue("borgfleet_ui.jobs.run_job", Planted(m), job_id=planted_id)
    assert b"\x80" in zlib.decompress(redis.hget(f"rq:job:{planted_id}", "data"))   # a pickle, stored
    op = api("operator")
    cl = api("admin").post("/api/servers", json={"name": "inj-pickle", "role": "client", "connection": "local",
                                                 "local_pool_path": str(tmp_path / "repos"),
                                                 "vars": {"borgfleet_borg_base_dir": str(tmp_path / "base")}}).json
    w = start_worker(62)
    wait_for(lambda: not redis.lrange(f"rq:queue:{queue_order()[0]}", 0, -1), timeout=60,
             what="the worker to take the planted job")
    # A normal job still runs on the same worker.
    job = wait_job(db, op.post(f"/api/servers/{cl['id']}/setup").json["job_id"])
    assert job["status"] == "succeeded", job["error"]
    assert w.p.poll() is None
    assert not m.exists()
    assert redis.hget(f"rq:job:{planted_id}", "status") != b"finished"
    op.delete(f"/api/servers/{cl['id']}")


def test_db_password_fifo_serves_once_and_leaves_nothing():
    from borgfleet_ui.jobs import SecretFifo
    f = SecretFifo("pw é $'\"\\ x")
    assert os.stat(f.path).st_mode & 0o777 == 0o600 and not os.path.isfile(f.path)   # a FIFO: no data on disk
    with open(f.path, encoding="utf-8") as r:
        assert r.read() == "pw é $'\"\\ x"
    wait_for(lambda: not os.path.exists(f.path), timeout=5, what="the FIFO to be removed once read")
    with pytest.raises(FileNotFoundError):   # a second reader fails at once instead of waiting
        open(f.path)
    f.close()
    assert not os.path.exists(f.dir)
    unread = SecretFifo("never read")   # a run that never read it (failed early) still ends at once
    unread.close()
    assert not os.path.exists(unread.dir)


def test_worker_refuses_a_host_whose_key_is_not_the_pinned_one(api, db, start_worker, controller, sshd_factory, tmp_path):
    """ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False by default: ssh then got
    StrictHostKeyChecking=no ahead of the pinned known_hosts and talked to any host key (a man in
    the middle would receive the modules' arguments, passphrases included)."""
    from tests.lib.sshd import keygen
    sshd = sshd_factory("inj-hostkey")
    pinned = tmp_path / "known_hosts"
    # What the worker would see from an impostor: a host key other than the pinned one.
    pinned.write_text(f"[{sshd.address}]:{sshd.port} {keygen(tmp_path / 'impostor')}\n")
    admin = api("admin")
    cl = admin.post("/api/servers", json={
        "name": "inj-hostkey", "role": "client", "address": sshd.address, "port": sshd.port, "ssh_user": "root",
        "local_pool_path": str(tmp_path / "repos"),
        "vars": {"ansible_python_interpreter": "/usr/bin/python3", "ansible_ssh_private_key_file": str(controller.key),
                 "ansible_ssh_common_args": f"-o UserKnownHostsFile={pinned} -o StrictHostKeyChecking=yes"
                                            " -o IdentitiesOnly=yes"}})
    assert cl.status_code == 201, cl.json
    start_worker(63)
    job = wait_job(db, admin.post(f"/api/servers/{cl.json['id']}/collect-stats").json["job_id"])
    log = "\n".join(r["line"] for r in dbm.query(db, "SELECT line FROM job_log WHERE job_id=%s ORDER BY n", (job["id"],)))
    assert job["status"] == "failed" and "Host key verification failed" in log, (job["error"], log)
    assert not dbm.query(db, "SELECT id FROM server_stats WHERE server_id=%s", (cl.json["id"],))
    # The same run with the host's real key pinned reaches it.
    pinned.write_text(sshd.known_hosts_line + "\n")
    job = wait_job(db, admin.post(f"/api/servers/{cl.json['id']}/collect-stats").json["job_id"])
    assert job["status"] == "succeeded", job["error"]
    admin.delete(f"/api/servers/{cl.json['id']}")
