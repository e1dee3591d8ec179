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
    assert resp.status_code == 409 and "neither under systemd nor under `borgfleet-ui serve`" in resp.json["error"]
    assert api("admin").post("/api/workers/borgfleet-otherhost-1/restart").status_code == 409
    assert api("admin").get(f"/api/workers/{name}/logs").status_code == 409
    # Stop works everywhere through RQ's shutdown command: the worker exits on its own.
    assert api("admin").post(f"/api/workers/{name}/stop").status_code == 202
    wait_for(lambda: w.p.poll() is not None, timeout=30, what="the worker to exit")
    assert w.p.returncode == 0
    # It stays listed, stopped (it left RQ's registry), and still cannot be started from here.
    row = wait_for(lambda: next((x for x in api("admin").get("/api/workers").json["items"]
                                 if x["name"] == name and x["state"] == "stopped"), None),
                   what="the worker listed as stopped")
    assert row["pid"] is None and row["control"] is None
    assert api("admin").post(f"/api/workers/{name}/start").status_code == 409


def test_log_filters_lines_and_since():
    text = ["2026-12-02 13:00:00 first", "  traceback line of the first", "2026-12-02 13:30:00 second",
            "2026-12-02T13:45:00+00:00 host borgfleet[1]: third (journalctl short-iso)"]
    since = workers.datetime(2026, 12, 2, 13, 30)
    assert workers.lines_since(text, since) == text[2:]
    assert workers.lines_since(text, workers.datetime(2026, 12, 2, 12, 0)) == text
    assert workers.log_filters("50", "") == (50, None)
    lines, t = workers.log_filters("10", "2h")
    assert lines == 10 and abs((workers.datetime.utcnow() - t).total_seconds() - 7200) < 5
    assert workers.log_filters("10", "2026-12-02T13:30")[1] == since
    for bad in (("0", ""), ("x", ""), ("10", "yesterday"), ("10", "5y")):
        with pytest.raises(ValueError):
            workers.log_filters(*bad)
