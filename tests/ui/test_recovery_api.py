"""Instant recovery through the API, for real: start an archive of a PostgreSQL backup on its client
(202 with the job), reach it with the command line the job's result holds and count rows, stop it,
resume it with what was written to it, query every host, remove it - nothing left mounted or running,
the archive unchanged. MariaDB's command line too."""
import shlex
import subprocess

from borgfleet_ui import db as dbm
from tests.lib.sshd import free_port
from tests.recovery.dbs import PG_ROWS, MariaDB
from recoverylib import archived_database, count_rows, fleet, leftovers, pg_backup, run  # noqa: F401 (fixtures)
from uilib import wait_job


def name_of(archive):
    """The session name the module derives from an archive name (":" is not wanted in paths)."""
    return archive.replace(":", "-")


def test_api_start_connect_stop_resume_remove(api, db, fleet):
    viewer = api("viewer")
    aid = fleet["archive"]["id"]
    assert viewer.post(f"/api/archives/{aid}/instant-recovery", json={}).status_code == 403
    bad = api("operator").post(f"/api/archives/{aid}/instant-recovery", json={"port": 70000})
    assert bad.status_code == 400 and "port" in bad.json["error"]
    # A name is data, never a template: it reaches the module as typed, which refuses it.
    templated = "{{ lookup('pipe', 'id') }}"
    resp = api("operator").post(f"/api/archives/{aid}/instant-recovery", json={"name": templated})
    assert resp.status_code == 202
    row = wait_job(db, resp.json["job_id"], timeout=400)
    assert row["status"] == "failed" and templated in row["error"] and "uid=" not in row["error"], row["error"]

    started = api("operator").post(f"/api/archives/{aid}/instant-recovery", json={})
    assert started.status_code == 202 and started.json["status"] == "queued"
    # While a session is being started on the client, a cleanup there is refused (it would tear it down).
    early = api("operator").post(f"/api/servers/{fleet['client']['id']}/recovery-cleanup")
    assert early.status_code == 400 and started.json["job_id"] in early.json["error"]
    row = wait_job(db, started.json["job_id"], timeout=400)
    job = viewer.get(f"/api/jobs/{started.json['job_id']}").json
    assert row["status"] == "succeeded", (row["error"], job["result"])
    result = job["result"]
    assert name_of(fleet["archive"]["name"]) == result["session"]["name"]
    name = result["session"]["name"]
    assert result["host"] == fleet["client"]["name"] and job["archive_id"] == aid
    connect = result["connect"]
    assert connect["engine"] == "postgresql" and connect["address"] == "127.0.0.1" and connect["port"] >= 55432
    assert connect["socket_dir"] == f"/run/borgfleet/recovery/{name}"
    assert connect["local_command"] == (f"sudo -u postgres psql -h /run/borgfleet/recovery/{name}"
                                        f" -p {connect['port']} -d postgres")
    # The rows of the archive, the one committed after the last checkpoint (replayed from WAL) included.
    assert count_rows(connect["local_command"]) == (0, str(PG_ROWS + 1), "")

    sessions = viewer.get("/api/recovery-sessions").json["items"]
    mine = [s for s in sessions if s["name"] == name and s["host"] == fleet["client"]["name"]]
    assert len(mine) == 1, sessions
    s = mine[0]
    assert s["id"] == result["session_id"] and s["archive_id"] == aid and s["backup_job_id"] == fleet["bj"]["id"]
    assert s["health_label"] == "running" and s["engine"] == "postgresql" and s["connect"] == connect
    assert "pg-pass-123" not in "\n".join(viewer.get(f"/api/jobs/{job['id']}/log").json["lines"])

    rc, out, err = count_rows(connect["local_command"], "INSERT INTO accounts VALUES (200001, 'in-session', 1)")
    assert rc == 0, err
    stopped = run(api, db, "post", f"/api/recovery-sessions/{s['id']}/stop")
    assert stopped["result"]["session"]["state"] == "stopped"
    s = viewer.get(f"/api/recovery-sessions/{s['id']}").json
    assert s["health_label"] == "stopped" and s["connect"] is None and s["pid"] is None
    assert count_rows(connect["local_command"])[0] != 0   # nothing answers any more
    mounts, procs, _ = leftovers(name)
    assert len(mounts) == 2 and not [p for p in procs if "postgres" in p[1] and " -D " in p[1]], procs

    resumed = run(api, db, "post", f"/api/recovery-sessions/{s['id']}/resume")
    assert resumed["result"]["connect"] == connect   # same port, same socket
    # What was written before the stop is still there: the layer was kept.
    assert count_rows(connect["local_command"]) == (0, str(PG_ROWS + 2), "")

    # The query of every host sees it running (and its layer holding the write).
    queried = run(api, db, "post", "/api/recovery-sessions/refresh")
    assert fleet["client"]["name"] in queried["result"]["hosts"]
    s = viewer.get(f"/api/recovery-sessions/{s['id']}").json
    assert s["health_label"] == "running" and s["layer_bytes"] > 0
    # A client that does not answer fails the query, and what the others answered is still recorded.
    dead = api("admin").post("/api/servers", json={"name": fleet["client"]["name"] + "-dead", "role": "client",
                                                   "address": "127.0.0.1", "port": free_port("127.0.0.1"),
                                                   "local_pool_path": "/var/lib/borgfleet-none"}).json
    dbm.execute(db, "UPDATE recovery_sessions SET checked_at = checked_at - INTERVAL 1 HOUR WHERE id=%s", (s["id"],))
    job_id = api("operator").post("/api/recovery-sessions/refresh").json["job_id"]
    row = wait_job(db, job_id, timeout=300)
    result = viewer.get(f"/api/jobs/{job_id}").json["result"]
    assert row["status"] == "failed" and dead["name"] in row["error"], row["error"]
    assert fleet["client"]["name"] in result["hosts"] and dead["name"] not in result["hosts"], result
    again = viewer.get(f"/api/recovery-sessions/{s['id']}").json
    assert again["checked_at"] > s["checked_at"] and again["health_label"] == "running"
    assert api("operator").delete(f"/api/servers/{dead['id']}").status_code == 204

    removed = run(api, db, "delete", f"/api/recovery-sessions/{s['id']}")
    assert "engine" in removed["result"]["removed"], removed["result"]
    assert viewer.get(f"/api/recovery-sessions/{s['id']}").status_code == 404
    assert leftovers(name) == ([], [], [])
    assert count_rows(connect["local_command"])[0] != 0
    # The archive is untouched: borg checks it and lists it as before.
    fleet["repo"].run("check", fleet["bj"]["location"])
    assert fleet["repo"].archive_names() == [fleet["archive"]["name"]]


def test_api_mariadb_connection_line(api, db, fleet):
    """MariaDB's command line (its socket, root by unix socket authentication) reaches the recovered server."""
    mariadb = MariaDB(fleet["root"] / f"my-{fleet['client']['name']}").init().start()
    mariadb.sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, qty INT) ENGINE=InnoDB;"
                " INSERT INTO shop.orders SELECT seq, seq % 13 FROM shop.seq_1_to_3000")
    mariadb.crash()
    _, archive, _ = archived_database(api, db, fleet["root"], fleet["client"], "my", "mariadb", mariadb.data,
                                      "my-2026-11-25T02:00:00")
    name = "my-" + fleet["client"]["name"]
    job = run(api, db, "post", f"/api/archives/{archive['id']}/instant-recovery", json={"name": name})
    connect = job["result"]["connect"]
    assert connect["engine"] == "mariadb" and connect["port"] >= 53306
    assert connect["local_command"] == f"sudo mariadb --socket=/run/borgfleet/recovery/{name}/mysqld.sock -u root"
    proc = subprocess.run(shlex.split(connect["local_command"]) + ["--batch", "--skip-column-names", "-e",
                                                                   "SELECT COUNT(*) FROM shop.orders"],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "3000"), proc.stderr
    run(api, db, "delete", f"/api/recovery-sessions/{job['result']['session_id']}")
    assert leftovers(name) == ([], [], [])
