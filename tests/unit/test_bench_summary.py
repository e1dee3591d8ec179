"""bench/summary.py: the one table at the end of bench/run. Results shaped as each benchmark
writes them (bench/*/__main__.py, run.py; fleet's service figures from its own function), the
rows, ratios and verdicts they give, and that only the files of this run are read."""
import importlib.util
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bench import common, summary as sm

REPO = Path(__file__).resolve().parents[2]
LOAD = {"start": [0.5, 0.4, 0.3], "end": [2.25, 1.0, 0.5]}


def by_figure(rows):
    return {r["figure"]: r for r in rows}


def only(rows, start):
    [r] = [r for r in rows if r["figure"].startswith(start)]
    return r


# --- samples, shaped as the writers write them ------------------------------------------------
def phase(values, cpu=True):
    s = common.summary(values)
    if cpu:
        s["cpu"] = {side: common.summary([v / 2 for v in values]) for side in ("client", "server", "total")}
    s["server_logins"] = [1]
    return s


def backup_overhead_sample(ours_incr, raw_incr, bm_incr, ours_init, raw_init):
    # bench/backup_overhead/__main__.py main(): stats[contender][phase] = summary(...) + cpu + logins
    stats = {"ours": {"initial": phase(ours_init), "incremental": phase(ours_incr)},
             "raw": {"initial": phase(raw_init), "incremental": phase(raw_incr)},
             "borgmatic": {"initial": phase([15.0]), "incremental": phase(bm_incr)}}
    return {"benchmark": "backup_overhead", "utc": "20261203T063755Z", "runs_requested": len(ours_incr),
            "loadavg": LOAD, "runs": [], "stats": stats, "ratios": {}, "targets": [], "verification": {},
            "profile": None, "failures": []}


def load_fleet_module():
    """bench/fleet/__main__.py as a module (for its service_figures); sys.path as it was after."""
    saved = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location("bench_fleet_main", REPO / "bench" / "fleet" / "__main__.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path[:] = saved


def fleet_sample(rounds, service=True):
    out = {"rounds": [], "setup_s": 30.0, "initial_fleet_s": 60.0}
    for fleet_s, singles in rounds:
        single = {f"fleet{i:02d}": s for i, s in enumerate(singles)}
        slowest = max(single.values())
        out["rounds"].append({"single_s": single, "fleet_s": fleet_s, "fleet_cpu_s": 43.3, "single_cpu_s": 55.8,
                              "fleet_forks_s": {5: 46.8}, "slowest_single_s": slowest,
                              "median_single_s": sorted(single.values())[len(single) // 2],
                              "sum_single_s": sum(single.values()), "ratio": fleet_s / slowest})
    if service:
        # The jobs rows the service writes: 4 jobs, one a second apart, 10 s each.
        t0 = datetime(2026, 12, 3, 6, 0, 0)
        rows = [{"id": i, "status": "succeeded", "error": None, "created_at": t0,
                 "started_at": t0 + timedelta(seconds=10 * i), "playbook_started_at": t0 + timedelta(seconds=10 * i + 1),
                 "finished_at": t0 + timedelta(seconds=10 * i + 10)} for i in range(4)]
        out["service"] = {**load_fleet_module().service_figures(rows), "workers": 1, "post_all_s": 0.2}
    out["read_back"] = {"problems": [], "files_listed": 100, "archives_per_repository": 4}
    out["loadavg"] = LOAD
    out.update(clients=len(rounds[0][1]) if rounds else 20, tree_mb=[25.0, 57.0])
    return out


def scale_sample(routes, tick=None):
    # bench/scale/run.py main() and measure(): rows of {name, path, p50_ms, p95_ms, pass} or {name, path, error}
    out = {"log_lines": 10_000_000, "load": [0.5, 0.4, 0.3], "rows": {"servers": 1000}, "routes": []}
    for name, p95 in routes:
        if isinstance(p95, str):
            out["routes"].append({"name": name, "path": "/x", "error": p95})
        else:
            out["routes"].append({"name": name, "path": "/x", "p50_ms": p95 / 2, "p95_ms": p95, "pass": p95 < 200})
    if tick is not None:
        seconds, queued = tick
        out["scheduler"] = {"due": 1000, "seconds": seconds, "queued": queued,
                            "pass": seconds < 5 and queued == 1000}
    out["loadavg"] = LOAD
    return out


def browse_sample(worst_p95=13.7, search_p95=13.4, glob_p95=421.0, peer_read=30):
    # bench/browse/__main__.py main()
    levels = {shape: {"ours_p50_ms": 5.0, "ours_p95_ms": p95, "borg_p50_ms": 3000.0, "borg_p95_ms": 3400.0}
              for shape, p95 in (("top", 5.0), ("middle (20 dirs)", 6.0), ("1,000 files", 8.0),
                                 ("20,000 files, page 1", worst_p95), ("20,000 files, page 150", 9.0))}
    levels["20,000 files, page 1"]["borg_p95_ms"] = 4100.0
    return {"archives": 30, "files": 300_290,
            "index": {"first": {"job_s": 25.0, "playbook_s": 20.0, "load_s": 7.7, "items": 300_000,
                                "new_listings": 300}, "others_p50_job_s": 15.0, "others_p50_load_s": 3.0, "all": []},
            "tables": {"index_entries": {"rows": 1, "bytes": 2}},
            "levels": levels,
            "search": {"ours_p50_ms": 11.4, "ours_p95_ms": search_p95, "glob_p50_ms": 385.0, "glob_p95_ms": glob_p95,
                       "borg_s": 78.6, "borg_archives_read": peer_read},
            "loadavg": LOAD}


def ir_contender_ours(module_s, wall_s, layer):
    return {"first_query_s": wall_s, "module_ready_s": module_s, "timings": {}, "layer_bytes": layer,
            "layer_bytes_after_scan_and_checkpoint": layer * 4, "scan_s": 15.0, "scan_result": "1|2",
            "frozen_copy": None, "hard_links_alone_s": 0.001, "cold_cache": True}


def instant_recovery_sample(small_module=2.27, large_module=2.54, extract_large=20.2, overlay=None):
    # bench/instant_recovery/__main__.py bench_scale() per scale, then main()
    small = {"scale": 13, "chunker_params": "borg default", "database_bytes": 214_000_000,
             "datadir_bytes": 250_000_000, "expected_scan": "1|2",
             "ours": ir_contender_ours(small_module, 5.07, 17_100_000),
             "extract": {"first_query_s": 3.92, "extract_s": 3.0, "layer_bytes": 214_000_000, "scan_s": 1.0,
                         "scan_result": "1|2", "cold_cache": True}}
    large = {"scale": 200, "chunker_params": "borg default", "database_bytes": 3_100_000_000,
             "datadir_bytes": 3_200_000_000, "expected_scan": "1|2",
             "ours": ir_contender_ours(large_module, 4.85, 17_100_000),
             "extract": {"first_query_s": extract_large, "extract_s": 18.0, "layer_bytes": 3_100_000_000,
                         "scan_s": 1.8, "scan_result": "1|2", "cold_cache": True}}
    if overlay is not None:
        large["overlay"] = overlay
    return {"results": [small, large], "summary": {}, "targets": {}, "chunker_params": None, "loadavg": LOAD}


def service_sample(pickup=0.033, playbook=0.99, lateness=0.148, fired=50, first=31.0, cursor=24.0):
    # bench/service/run.py
    return {"queue": {"runs": 10, "enqueue_to_worker_start_p50_s": pickup, "enqueue_to_worker_start_max_s": 0.055,
                      "enqueue_to_playbook_start_p50_s": playbook, "enqueue_to_playbook_start_max_s": 1.17,
                      "whole_backup_job_p50_s": 3.0},
            "scheduler": {"due_jobs": 50, "fired": fired, "lateness_p50_s": 0.094, "lateness_p95_s": lateness,
                          "lateness_max_s": 0.154, "early": 0},
            "archives": {"archives": 100_000, "fill_s": 10.0, "first_page_p50_ms": 16.0, "first_page_p95_ms": first,
                         "cursor_pages_p50_ms": 11.0, "cursor_pages_p95_ms": cursor},
            "loadavg": LOAD}


def snapshot_sample(small=0.05, large=0.08, first=40.0, second=2.0, error=None):
    # bench/snapshot/__main__.py
    result = {"started": "2026-12-03T06:00:00+00:00", "targets": {}, "sizes": {}}
    for label, mb, median in (("small", 100, small), ("large", 1024, large)):
        result["sizes"][label] = {"datadir_mb": mb, "freeze_window_s": common.summary([median] * 7, 4),
                                  "snapshot_s": common.summary([0.01] * 7, 4), "rows_written": 500}
    if first is not None:
        run = lambda s: {"borg_seconds": s, "wall_seconds": s + 3, "nfiles": 200, "original_mb": 1024.0,  # noqa: E731
                         "deduplicated_mb": 1.0, "freeze_window_s": 0.05}
        result["files_cache"] = {"first": run(first), "second": run(second), "second_vs_first": round(second / first, 3)}
        result["verdict"] = {}
    if error:
        result["error"] = error
    result["loadavg"] = LOAD
    return result


# --- per benchmark ----------------------------------------------------------------------------
def test_backup_overhead_misses():
    rows = by_figure(sm.backup_overhead(backup_overhead_sample([3.8, 3.9, 4.0], [2.4, 2.5, 2.6], [3.1, 3.2, 3.3],
                                                               [17.5], [13.4])))
    incr = rows["incremental backup, median of 3"]
    assert (incr["ours"], incr["peer"], incr["target"], incr["verdict"]) == ("3.90 s", "2.50 s raw borg", "<= 1.5x", "MISS")
    assert incr["ratio"] == pytest.approx(3.9 / 2.5)
    fixed = rows["fixed cost: ours - raw borg, incremental"]
    assert (fixed["ours"], fixed["ratio"], fixed["target"], fixed["verdict"]) == ("1.40 s", None, "<= 1.2 s", "MISS")
    bm = rows["incremental backup vs borgmatic"]
    assert (bm["peer"], bm["verdict"]) == ("3.20 s borgmatic", "MISS") and bm["ratio"] == pytest.approx(3.9 / 3.2)
    init = rows["initial backup, median of 1"]
    assert (init["ours"], init["peer"], init["verdict"]) == ("17.50 s", "13.40 s raw borg", "MISS")
    assert init["ratio"] == pytest.approx(17.5 / 13.4)


def test_backup_overhead_passes_at_the_bounds():
    # 3.0 / 2.0 = 1.5x and 3.0 - 2.0 = 1.0 s are within; initial 1.05x exactly is within.
    rows = by_figure(sm.backup_overhead(backup_overhead_sample([3.0], [2.0], [3.01], [10.5], [10.0])))
    assert [r["verdict"] for r in rows.values()] == ["PASS"] * 4
    # ours as slow as borgmatic is not below it
    rows = sm.backup_overhead(backup_overhead_sample([3.0], [2.0], [3.0], [10.0], [10.0]))
    assert only(rows, "incremental backup vs borgmatic")["verdict"] == "MISS"


def test_fleet_against_the_slowest_single_client_and_the_service_figures():
    rows = sm.fleet(fleet_sample([(39.0, [6.0, 8.5, 7.0])]))
    run = only(rows, "ONE backup.yml")
    assert run["figure"] == "ONE backup.yml over 3 clients"
    assert (run["ours"], run["peer"], run["target"], run["verdict"]) == ("39.0 s", "8.5 s slowest single client",
                                                                         "<= 1.3x", "MISS")
    assert run["ratio"] == pytest.approx(39.0 / 8.5)
    # 4 jobs from the first enqueue to the last finish in 40 s: 360 an hour; starts after 0/10/20/30 s.
    bph = only(rows, "service, 1 worker: backups per hour")
    assert (bph["ours"], bph["target"], bph["verdict"]) == ("360 (4 in 40.0 s)", "report", "—")
    lat = only(rows, "service, 1 worker: enqueue to start")
    assert lat["ours"] == "20.0 / 30.0 s" and lat["verdict"] == "—"


def test_fleet_rounds_take_the_median_and_service_may_be_skipped():
    rows = sm.fleet(fleet_sample([(10.0, [9.0, 8.0]), (12.0, [10.0, 9.0]), (30.0, [10.0, 9.5])], service=False))
    run = only(rows, "ONE backup.yml")
    assert run["figure"] == "ONE backup.yml over 2 clients, median of 3 rounds"
    assert run["ratio"] == pytest.approx(12.0 / 10.0) and run["verdict"] == "PASS"
    assert only(rows, "service")["ours"] == "not measured (--skip-service)"


def test_scale_worst_route_and_routes_passing():
    rows = sm.scale(scale_sample([("dashboard", 123.0), ("/metrics", 218.0), ("pools", 157.0)], tick=(1.234, 1000)))
    tick = only(rows, "scheduler tick")
    assert (tick["figure"], tick["ours"], tick["target"], tick["verdict"]) == (
        "scheduler tick, 1,000 backup jobs due", "1.23 s", "< 5 s", "PASS")
    worst = only(rows, "pages/API p95, worst route")
    assert (worst["ours"], worst["target"], worst["verdict"]) == ("218.0 ms (/metrics)", "< 200 ms", "MISS")
    count = only(rows, "pages/API routes")
    assert (count["ours"], count["verdict"]) == ("2 of 3", "MISS")

    rows = sm.scale(scale_sample([("dashboard", 123.0), ("pools", 199.9)], tick=(4.99, 1000)))
    assert [r["verdict"] for r in rows] == ["PASS", "PASS", "PASS"]
    assert only(rows, "pages/API routes")["ours"] == "2 of 2"


def test_scale_errors_slow_ticks_and_partial_runs():
    rows = sm.scale(scale_sample([("dashboard", 50.0), ("jobs", "HTTP 500")], tick=(1.0, 990)))
    assert only(rows, "scheduler tick")["ours"] == "1.00 s, only 990 queued"
    assert only(rows, "scheduler tick")["verdict"] == "MISS"
    assert only(rows, "pages/API p95, worst route")["ours"] == "HTTP 500 (jobs)"
    assert only(rows, "pages/API p95, worst route")["verdict"] == "MISS"
    assert only(rows, "pages/API routes")["ours"] == "1 of 2"
    assert only(sm.scale(scale_sample([], tick=(5.0, 1000))), "scheduler")["verdict"] == "MISS"   # < 5 s
    # bench/run scale --only tick: no routes; --only dashboard: no tick
    assert only(sm.scale(scale_sample([], tick=(1.0, 1000))), "pages/API")["ours"] == "not measured (--only)"
    assert only(sm.scale(scale_sample([("dashboard", 1.0)])), "scheduler")["ours"] == "not measured (--only)"


def test_scale_inventory_start_against_one_host():
    d = scale_sample([("dashboard", 1.0)], tick=(1.0, 1000))
    assert not [r for r in sm.scale(d) if "inventory" in r["figure"]]   # --only without it: no row
    d["inventory"] = {"servers": 1000, "backup_jobs": 5000, "runs": 3, "fleet_s": [1.2, 1.0, 1.1],
                      "one_host_s": [0.5, 0.5, 0.6], "fleet_median_s": 1.1, "one_host_median_s": 0.5}
    inv = only(sm.scale(d), "a run's start")
    assert (inv["figure"], inv["ours"], inv["peer"], inv["target"], inv["verdict"]) == (
        "a run's start over the inventory of 1,000 servers (play of no task)", "1.10 s", "0.50 s one-host inventory",
        "report", "—")
    assert inv["ratio"] == pytest.approx(2.2)


def test_browse_level_and_search_against_borg():
    rows = sm.browse(browse_sample())
    level = only(rows, "directory level p95")
    assert level["figure"] == "directory level p95, worst of 5 shapes"
    assert (level["ours"], level["peer"], level["verdict"]) == ("13.7 ms (20,000 files, page 1)",
                                                                "4100.0 ms borg list, same level", "PASS")
    assert level["ratio"] == pytest.approx(13.7 / 4100.0)
    search = only(rows, "versions of one file")
    assert (search["ours"], search["peer"], search["target"], search["verdict"]) == (
        "13.4 ms", "78.6 s search.yml's loop", "< 1 s", "PASS")
    assert search["ratio"] == pytest.approx(0.0134 / 78.6)
    assert only(rows, "a glob")["verdict"] == "PASS"

    rows = sm.browse(browse_sample(worst_p95=300.0, search_p95=1000.0, glob_p95=1200.0, peer_read=5))
    assert [r["verdict"] for r in rows] == ["MISS", "MISS", "MISS"]
    assert only(rows, "versions")["peer"] == "78.6 s search.yml's loop, scaled from 5"


def test_instant_recovery_at_the_largest_size():
    rows = sm.instant_recovery(instant_recovery_sample(
        overlay={"first_query_s": 28.3, "layer_bytes": 1, "scan_s": 1.0, "scan_result": "1|2", "cold_cache": True}))
    first = only(rows, "first query at 3.1 GB (module)")
    assert (first["ours"], first["peer"], first["target"], first["verdict"]) == (
        "2.54 s", "20.20 s borg extract + start", ">= 5x faster", "PASS")
    assert first["ratio"] == pytest.approx(2.54 / 20.2)
    whole = only(rows, "recovery at 3.1 GB")
    assert (whole["ours"], whole["verdict"]) == ("4.85 s", "—") and whole["ratio"] == pytest.approx(4.85 / 20.2)
    assert only(rows, "first query at 3.1 GB vs overlayfs")["peer"] == "28.30 s borg mount + overlayfs"
    before = only(rows, "first query at 3.1 GB, against before")
    assert (before["ours"], before["target"], before["verdict"]) == ("2.54 s", "<= 2.5 s", "MISS")
    assert only(sm.instant_recovery(instant_recovery_sample(large_module=2.5)),
                "first query at 3.1 GB, against before")["verdict"] == "PASS"
    sizes = only(rows, "first query, 3.1 GB vs 214 MB")
    assert (sizes["ours"], sizes["verdict"]) == ("1.12x", "PASS")
    layer = only(rows, "writable layer")
    assert (layer["ours"], layer["verdict"]) == ("8.0%", "PASS")    # the small size's 17.1 of 214 MB

    rows = sm.instant_recovery(instant_recovery_sample(small_module=1.0, large_module=4.1, extract_large=20.0,
                                                       overlay={"error": "overlayfs over the borg mount failed"}))
    assert only(rows, "first query at 3.1 GB (module)")["verdict"] == "MISS"     # 4.9x
    assert only(rows, "first query, 3.1 GB vs")["verdict"] == "MISS"             # 4.1x
    assert only(rows, "first query at 3.1 GB vs overlayfs")["peer"] == "overlayfs failed"


def test_instant_recovery_without_a_contender():
    d = instant_recovery_sample()
    del d["results"][1]["extract"]
    first = only(sm.instant_recovery(d), "first query at 3.1 GB (module)")
    assert (first["peer"], first["verdict"]) == ("extract not measured", "—")
    for r in d["results"]:
        del r["ours"]
    assert sm.instant_recovery(d)[0]["ours"] == "not measured"


def test_service_targets():
    rows = sm.service(service_sample())
    assert [r["verdict"] for r in rows] == ["PASS", "MISS", "PASS", "PASS", "PASS"]
    assert only(rows, "Run now: enqueue to worker start")["ours"] == "0.033 s (max 0.055)"
    assert only(rows, "GET /api/archives, 100,000 archives")["ours"] == "31.0 ms"
    rows = sm.service(service_sample(pickup=0.6, playbook=0.4, lateness=0.5, fired=49, first=50.0, cursor=60.0))
    assert [r["verdict"] for r in rows] == ["MISS", "PASS", "MISS", "MISS", "MISS"]


def test_snapshot_freeze_and_files_cache():
    rows = sm.snapshot(snapshot_sample())
    assert only(rows, "freeze window median, small (100 MB)")["verdict"] == "PASS"
    assert only(rows, "freeze window median, large (1024 MB)")["ours"] == "0.080 s"
    growth = only(rows, "freeze window, large vs small")
    assert growth["ratio"] == pytest.approx(0.08 / 0.05) and growth["verdict"] == "—"
    fc = only(rows, "second backup")
    assert (fc["ours"], fc["peer"], fc["verdict"]) == ("2.00 s", "40.00 s first backup", "PASS")
    assert fc["ratio"] == pytest.approx(0.05)
    rows = sm.snapshot(snapshot_sample(large=1.2, first=10.0, second=2.0))
    assert only(rows, "freeze window median, large")["verdict"] == "MISS"
    assert only(rows, "second backup")["verdict"] == "MISS"


def test_snapshot_that_failed_half_way():
    d = snapshot_sample(first=None, error="RuntimeError('borg create failed')")
    rows = sm.snapshot(d)
    assert not [r for r in rows if r["figure"].startswith("second backup")]
    assert only(rows, "run")["ours"] == "error: RuntimeError('borg create failed')"


# --- statuses, files, the table ---------------------------------------------------------------
def test_rows_of_a_benchmark_without_results():
    assert sm.rows_of("fleet", None, None)[0]["figure"] == "not run"
    assert sm.rows_of("fleet", None, 0)[0]["figure"] == "no results written"
    failed = sm.rows_of("fleet", None, 1)[0]
    assert (failed["figure"], failed["verdict"]) == ("failed (exit status 1)", "FAILED")
    stopped = sm.rows_of("fleet", None, sm.parse_status("fleet=interrupted")[1])[0]
    assert (stopped["figure"], stopped["verdict"]) == ("interrupted", "FAILED")
    assert sm.rows_of("service", service_sample(), "interrupted")[-1]["ours"] == "interrupted"


def test_rows_of_results_that_failed_or_are_unreadable_never_raise():
    rows = sm.rows_of("service", service_sample(), 1)
    assert rows[-1]["figure"] == "run" and rows[-1]["verdict"] == "FAILED" and len(rows) == 6
    assert {r["load"] for r in rows} == {"0.5-2.2"}
    broken = sm.rows_of("browse", {"levels": {}, "loadavg": LOAD}, 0)
    assert len(broken) == 1 and broken[0]["ours"].startswith("unreadable results (")
    assert sm.rows_of("browse", ["not", "a", "dict"], 0)[0]["ours"].startswith("unreadable results (")
    assert sm.rows_of("newbench", {}, 0)[0]["ours"] == "no summary for this benchmark: see its results file"
    assert sm.rows_of("newbench", {}, 0)[0]["load"] == "—"
    assert sm.rows_of("scale", scale_sample([], tick=(1.0, 1000)) | {"loadavg": {"start": "x", "end": 1}}, 0)[0]["load"] == "—"


def test_collect_reads_only_this_runs_files(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "OUTPUT", tmp_path)
    monkeypatch.delenv(common.RUN_ENV, raising=False)
    common.write_json("browse.json", browse_sample())                  # written outside bench/run
    common.write_json("scale-20261201T000000Z.json", scale_sample([]))
    monkeypatch.setenv(common.RUN_ENV, "old-run")
    common.write_json("service.json", service_sample())
    monkeypatch.setenv(common.RUN_ENV, "this-run")
    path = common.write_json("scale-20261203T000000Z.json", scale_sample([], tick=(1.0, 1000)))
    (tmp_path / "fleet-20261203T000000Z.json").write_text('{"bench_run": "this-run", ')   # half written
    found = sm.collect(tmp_path, "this-run")
    assert list(found) == ["scale"] and found["scale"][0] == path
    assert found["scale"][1]["bench_run"] == "this-run" and found["scale"][1]["scheduler"]["seconds"] == 1.0
    assert sm.collect(tmp_path, "") == {} and sm.collect(tmp_path / "none", "this-run") == {}


def test_write_json_tags_the_run_only_under_bench_run(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "OUTPUT", tmp_path)
    monkeypatch.delenv(common.RUN_ENV, raising=False)
    assert json.loads(common.write_json("a.json", {"x": 1}).read_text()) == {"x": 1}
    monkeypatch.setenv(common.RUN_ENV, "r1")
    data = {"x": 1}
    assert json.loads(common.write_json("a.json", data).read_text()) == {"x": 1, "bench_run": "r1"}
    assert data == {"x": 1}   # the caller's dict is left as it was


def test_summarize_a_whole_run(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "OUTPUT", tmp_path)
    monkeypatch.setenv(common.RUN_ENV, "run-1")
    common.write_json("backup_overhead-20261203T000000Z.json",
                      backup_overhead_sample([3.0], [2.0], [3.5], [10.0], [10.0]))
    common.write_json("browse.json", browse_sample())
    monkeypatch.setenv(common.RUN_ENV, "run-0")
    common.write_json("service.json", service_sample())                 # an older run's: not shown
    text = sm.summarize(tmp_path, "run-1", [("backup_overhead", 0), ("browse", 0), ("fleet", 1), ("service", 0),
                                             ("snapshot", None)])
    lines = text.splitlines()
    assert lines[0].startswith("summary of bench run run-1:")
    header = lines[2]
    assert [c.strip() for c in header.strip("|").split("|")] == list(sm.COLUMNS)
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[4:] if line.startswith("|")]
    assert body[0] == ["backup_overhead", "incremental backup, median of 1", "3.00 s", "2.00 s raw borg", "1.50x",
                       "<= 1.5x", "PASS", "0.5-2.2"]
    assert ["fleet", "failed (exit status 1)", "—", "—", "—", "—", "FAILED", "—"] in body
    assert ["service", "no results written", "—", "—", "—", "—", "—", "—"] in body
    assert ["snapshot", "not run", "—", "—", "—", "—", "—", "—"] in body
    assert [r[0] for r in body] == ["backup_overhead"] * 4 + ["browse"] * 3 + ["fleet", "service", "snapshot"]
    assert len({len(line) for line in lines[2:4 + len(body)]}) == 1    # aligned
    assert "7 PASS, 0 MISS, 1 FAILED" in text
    assert str(tmp_path / "browse.json") in lines[-1]


def test_parse_status():
    assert sm.parse_status("scale=0") == ("scale", 0)
    assert sm.parse_status("scale=143") == ("scale", 143)
    assert sm.parse_status("scale=interrupted") == ("scale", "interrupted")
    assert sm.parse_status("scale") == ("scale", None)
    assert sm.parse_status("scale=") == ("scale", None)


def test_main_prints_the_table(tmp_path, capsys):
    assert sm.main(["--run", "nothing", "--output", str(tmp_path), "scale=0", "browse=2", "fleet", "odd=x"]) == 0
    out = capsys.readouterr().out
    assert "| scale " in out and "failed (exit status 2)" in out and "| odd " in out
    assert sm.main(["--run", "nothing", "--output", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("not run") == len(sm.BENCHMARKS)
