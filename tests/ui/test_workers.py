"""The workers API from RQ's registry, where systemd is not PID 1 (as on this machine); where it is,
in the lab VM: tests/lab/test_workers_systemd.py."""

import pytest

from borgfleet_ui import workers
from uilib import wait_for


@pytest.mark.skipif(workers.systemd_running(), reason="exercises the no-systemd path")
def test_workers_list_and_stop_without_systemd(api, start_worker):
    w = start_worker(7)
    name = workers.worker_name(7)
    row = wait_for(lambda: next((x for x in api("admin").get("/api/workers").json["items"]
                                 if x["name"] == name and x["state"] == "idle"), None),
                   what="worker 7 idle in RQ's registry")
    assert row["pid"] == w.p.pid and row["state"] == "idle" and row["started"]
    assert "borgfleet-backup" in row["queues"]
    assert api("operator").get("/api/workers").status_code == 403
    resp = api("admin").post(f"/api/workers/{name}/start")
    assert resp.status_code == 409 and "systemd is not running" in resp.json["error"]
    assert api("admin").post("/api/workers/borgfleet-otherhost-1/restart").status_code == 409
    assert api("admin").get(f"/api/workers/{name}/logs").status_code == 409
    # Stop works everywhere through RQ's shutdown command: the worker exits on its own.
    assert api("admin").post(f"/api/workers/{name}/stop").status_code == 202
    wait_for(lambda: w.p.poll() is not None, timeout=30, what="the worker to exit")
    assert w.p.returncode == 0
    wait_for(lambda: all(x["name"] != name for x in api("admin").get("/api/workers").json["items"]),
             what="the worker to leave the registry")
