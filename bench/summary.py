"""One table of the issue-15 figures of one `bench/run`: each figure with its peer measured in the
same run, the ratio, the target and PASS/MISS, and the load average while it was measured.

    .venv/bin/python bench/summary.py --run RUN_ID [NAME=EXIT_STATUS ...] [--output DIR]

bench/run calls it at the end with the run's id (BORGFLEET_BENCH_RUN, which bench.common.write_json
stores in every results file as `bench_run`) and the exit status of every benchmark it ran, in the
order it ran them. Only results files of that run are read, so an older file never stands in for
a benchmark that failed or was not run. It reads JSON only and never fails on a missing,
unreadable or unexpected file: that benchmark gets a row saying so.

Ratios are always ours / peer (below 1: ours is faster). The targets are issue 15's, and for
service and snapshot the ones their benchmarks print (docs/service.md, bench/snapshot).
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "output"
NONE = "—"
PASS, MISS, FAILED = "PASS", "MISS", "FAILED"
INTERRUPTED = "interrupted"   # bench/run's status of the benchmark a Ctrl-C (or TERM) stopped

# Targets (issue 15; service: issue 3, docs/service.md; snapshot: bench/snapshot TARGETS).
INCREMENTAL_VS_RAW = 1.5
FIXED_COST_S = 1.2
INITIAL_VS_RAW = 1.05
FLEET_VS_SLOWEST = 1.3
TICK_S = 5.0
ROUTE_P95_MS = 200
LEVEL_P95_MS = 300
SEARCH_P95_MS = 1000
RECOVERY_SPEEDUP = 5.0
RECOVERY_LARGE_VS_SMALL = 1.5
RECOVERY_LAYER = 0.10
RECOVERY_BEFORE_S = 2.5   # "stays as measured (2.2-2.5 s to first query at 3.1 GB) or better"
RECOVERY_BEFORE_BYTES = 3e9
QUEUE_P50_S = 0.5
LATENESS_P95_S = 1.0
ARCHIVES_P95_MS = 50
FREEZE_MEDIAN_S = 1.0
SECOND_VS_FIRST = 0.15

COLUMNS = ("benchmark", "figure", "ours", "peer (same run)", "ratio", "target", "verdict", "load average")


# --- formatting -------------------------------------------------------------------------------
def sec(v, digits=2):
    return f"{v:.{digits}f} s"


def msec(v):
    return f"{v:.1f} ms"


def ratio_text(r):
    if r is None:
        return NONE
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def verdict(ok):
    return NONE if ok is None else (PASS if ok else MISS)


def row(figure, ours, peer=NONE, ratio=None, target=NONE, ok=None):
    """One figure. ratio: ours / peer or None; ok: True/False against the target, None: no target."""
    return {"figure": figure, "ours": ours, "peer": peer, "ratio": ratio, "target": target, "verdict": verdict(ok)}


def load_text(data):
    """'A-B': the 1-minute load average at the benchmark's start and end."""
    la = data.get("loadavg")
    if isinstance(la, dict) and la.get("start") and la.get("end"):
        return f"{la['start'][0]:.1f}-{la['end'][0]:.1f}"
    return NONE


def size_text(nbytes):
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.0f} MB"


# --- one function per benchmark: its results file -> rows --------------------------------------
def backup_overhead(d):
    st = d["stats"]
    ours, raw, bm = (st[c]["incremental"] for c in ("ours", "raw", "borgmatic"))
    o, r, b = ours["median"], raw["median"], bm["median"]
    oi, ri = st["ours"]["initial"]["median"], st["raw"]["initial"]["median"]
    return [
        row(f"incremental backup, median of {ours['n']}", sec(o), f"{sec(r)} raw borg", o / r,
            f"<= {INCREMENTAL_VS_RAW}x", o / r <= INCREMENTAL_VS_RAW),
        row("fixed cost: ours - raw borg, incremental", sec(o - r), f"{sec(r)} raw borg", None,
            f"<= {FIXED_COST_S} s", o - r <= FIXED_COST_S),
        row("incremental backup vs borgmatic", sec(o), f"{sec(b)} borgmatic", o / b, "below borgmatic", o < b),
        row(f"initial backup, median of {st['ours']['initial']['n']}", sec(oi), f"{sec(ri)} raw borg", oi / ri,
            f"<= {INITIAL_VS_RAW}x", oi / ri <= INITIAL_VS_RAW),
    ]


def fleet(d):
    rows = []
    rounds = d.get("rounds") or []
    if rounds:
        f = statistics.median(r["fleet_s"] for r in rounds)
        slowest = statistics.median(r["slowest_single_s"] for r in rounds)
        of = f", median of {len(rounds)} rounds" if len(rounds) > 1 else ""
        rows.append(row(f"ONE backup.yml over {d['clients']} clients{of}", sec(f, 1),
                        f"{sec(slowest, 1)} slowest single client", f / slowest,
                        f"<= {FLEET_VS_SLOWEST}x", f / slowest <= FLEET_VS_SLOWEST))
    else:
        rows.append(row("ONE backup.yml over the fleet", "not measured (0 rounds)"))
    s = d.get("service")
    if s:
        workers = f"{s['workers']} worker{'s' if s['workers'] != 1 else ''}"
        rows.append(row(f"service, {workers}: backups per hour",
                        f"{s['backups_per_hour']:.0f} ({s['backups']} in {sec(s['span_s'], 1)})", target="report"))
        rows.append(row(f"service, {workers}: enqueue to start p50 / p95",
                        f"{s['enqueue_to_start_p50_s']:.1f} / {sec(s['enqueue_to_start_p95_s'], 1)}", target="report"))
    else:
        rows.append(row("service: backups per hour, enqueue to start", "not measured (--skip-service)"))
    return rows


def scale(d):
    rows = []
    t = d.get("scheduler")
    if t:
        short = f", only {t['queued']} queued" if t["queued"] != t["due"] else ""
        rows.append(row(f"scheduler tick, {t['due']:,} backup jobs due", sec(t["seconds"]) + short,
                        target=f"< {TICK_S:g} s", ok=t["seconds"] < TICK_S and t["queued"] == t["due"]))
    else:
        rows.append(row("scheduler tick, 1,000 due", "not measured (--only)"))
    routes = d.get("routes") or []
    if routes:
        failed = [r for r in routes if "p95_ms" not in r]
        timed = [r for r in routes if "p95_ms" in r]
        passed = sum(1 for r in timed if r["p95_ms"] < ROUTE_P95_MS)
        if failed:
            worst = f"{failed[0].get('error', 'error')} ({failed[0]['name']})"
        else:
            w = max(timed, key=lambda r: r["p95_ms"])
            worst = f"{msec(w['p95_ms'])} ({w['name']})"
        rows.append(row("pages/API p95, worst route", worst, target=f"< {ROUTE_P95_MS} ms",
                        ok=not failed and passed == len(timed)))
        rows.append(row(f"pages/API routes with p95 < {ROUTE_P95_MS} ms", f"{passed} of {len(routes)}",
                        target="all", ok=passed == len(routes)))
    else:
        rows.append(row("pages/API p95", "not measured (--only)"))
    inv = d.get("inventory")
    if inv:
        f, o = inv["fleet_median_s"], inv["one_host_median_s"]
        rows.append(row(f"a run's start over the inventory of {inv['servers']:,} servers (play of no task)",
                        sec(f), f"{sec(o)} one-host inventory", f / o, target="report"))
    return rows


def browse(d):
    levels, s = d["levels"], d["search"]
    shape, lv = max(levels.items(), key=lambda kv: kv[1]["ours_p95_ms"])
    n = d.get("archives", 30)
    scaled = f", scaled from {s['borg_archives_read']}" if s["borg_archives_read"] < n else ""
    return [
        row(f"directory level p95, worst of {len(levels)} shapes", f"{msec(lv['ours_p95_ms'])} ({shape})",
            f"{msec(lv['borg_p95_ms'])} borg list, same level", lv["ours_p95_ms"] / lv["borg_p95_ms"],
            f"< {LEVEL_P95_MS} ms", lv["ours_p95_ms"] < LEVEL_P95_MS),
        row(f"versions of one file across {n} archives, p95", msec(s["ours_p95_ms"]),
            f"{sec(s['borg_s'], 1)} search.yml's loop{scaled}", s["ours_p95_ms"] / 1000 / s["borg_s"],
            f"< {SEARCH_P95_MS / 1000:g} s", s["ours_p95_ms"] < SEARCH_P95_MS),
        row(f"a glob across {n} archives, p95", msec(s["glob_p95_ms"]),
            target=f"< {SEARCH_P95_MS / 1000:g} s", ok=s["glob_p95_ms"] < SEARCH_P95_MS),
    ]


def instant_recovery(d):
    results = d["results"]
    small, large = results[0], results[-1]
    size = size_text(large["database_bytes"])
    ours = large.get("ours")
    if not ours or "error" in ours:
        return [row(f"first query at {size}", "not measured" if not ours else f"error: {ours['error']}")]
    mine = ours["module_ready_s"]
    ext = large.get("extract")
    rows = []
    if ext and "error" not in ext:
        peer = ext["first_query_s"]
        rows.append(row(f"first query at {size} (module)", sec(mine), f"{sec(peer)} borg extract + start",
                        mine / peer, f">= {RECOVERY_SPEEDUP:g}x faster", peer / mine >= RECOVERY_SPEEDUP))
        rows.append(row(f"recovery at {size}: whole ansible-playbook run", sec(ours["first_query_s"]),
                        f"{sec(peer)} borg extract + start", ours["first_query_s"] / peer, "report"))
    else:
        rows.append(row(f"first query at {size} (module)", sec(mine), "extract not measured",
                        target=f">= {RECOVERY_SPEEDUP:g}x faster"))
        rows.append(row(f"recovery at {size}: whole ansible-playbook run", sec(ours["first_query_s"]), target="report"))
    if large["database_bytes"] >= RECOVERY_BEFORE_BYTES:
        rows.append(row(f"first query at {size}, against before", sec(mine), "2.2-2.5 s (issue 15)", None,
                        f"<= {RECOVERY_BEFORE_S} s", mine <= RECOVERY_BEFORE_S))
    ov = large.get("overlay")
    if ov:
        if "error" in ov:
            rows.append(row(f"first query at {size} vs overlayfs", sec(mine), "overlayfs failed", target="report"))
        else:
            rows.append(row(f"first query at {size} vs overlayfs", sec(mine),
                            f"{sec(ov['first_query_s'])} borg mount + overlayfs", mine / ov["first_query_s"], "report"))
    if len(results) > 1 and "module_ready_s" in (small.get("ours") or {}):
        r = mine / small["ours"]["module_ready_s"]
        rows.append(row(f"first query, {size} vs {size_text(small['database_bytes'])}", ratio_text(r),
                        target=f"<= {RECOVERY_LARGE_VS_SMALL}x", ok=r <= RECOVERY_LARGE_VS_SMALL))
    fracs = [x["ours"]["layer_bytes"] / x["database_bytes"] for x in results if "layer_bytes" in (x.get("ours") or {})]
    if fracs:
        rows.append(row("writable layer at first query, of the database", f"{max(fracs) * 100:.1f}%",
                        target=f"<= {RECOVERY_LAYER * 100:g}%", ok=max(fracs) <= RECOVERY_LAYER))
    return rows


def service(d):
    q, s, a = d["queue"], d["scheduler"], d["archives"]
    return [
        row(f"Run now: enqueue to worker start, p50 of {q['runs']}",
            f"{sec(q['enqueue_to_worker_start_p50_s'], 3)} (max {q['enqueue_to_worker_start_max_s']:.3f})",
            target=f"< {QUEUE_P50_S} s", ok=q["enqueue_to_worker_start_p50_s"] < QUEUE_P50_S),
        row("Run now: enqueue to playbook start, p50",
            f"{sec(q['enqueue_to_playbook_start_p50_s'], 3)} (max {q['enqueue_to_playbook_start_max_s']:.3f})",
            target=f"< {QUEUE_P50_S} s", ok=q["enqueue_to_playbook_start_p50_s"] < QUEUE_P50_S),
        row(f"scheduler lateness, {s['due_jobs']} due jobs, p95", f"{sec(s['lateness_p95_s'], 3)} ({s['fired']} fired)",
            target=f"< {LATENESS_P95_S:g} s", ok=s["lateness_p95_s"] < LATENESS_P95_S and s["fired"] == s["due_jobs"]),
        row(f"GET /api/archives, {a['archives']:,} archives: first page p95", msec(a["first_page_p95_ms"]),
            target=f"< {ARCHIVES_P95_MS} ms", ok=a["first_page_p95_ms"] < ARCHIVES_P95_MS),
        row("GET /api/archives: keyset pages p95", msec(a["cursor_pages_p95_ms"]),
            target=f"< {ARCHIVES_P95_MS} ms", ok=a["cursor_pages_p95_ms"] < ARCHIVES_P95_MS),
    ]


def snapshot(d):
    rows = []
    sizes = d.get("sizes") or {}
    for label, s in sizes.items():
        m = s["freeze_window_s"]["median"]
        rows.append(row(f"freeze window median, {label} ({s['datadir_mb']} MB)", sec(m, 3),
                        target=f"< {FREEZE_MEDIAN_S:g} s", ok=m < FREEZE_MEDIAN_S))
    if "small" in sizes and "large" in sizes and sizes["small"]["freeze_window_s"]["median"]:
        sm, lg = sizes["small"]["freeze_window_s"]["median"], sizes["large"]["freeze_window_s"]["median"]
        rows.append(row("freeze window, large vs small", sec(lg, 3), f"{sec(sm, 3)} small", lg / sm, "not growing"))
    fc = d.get("files_cache")
    if fc:
        first, second = fc["first"]["borg_seconds"], fc["second"]["borg_seconds"]
        rows.append(row("second backup, fresh snapshot (files cache)", sec(second), f"{sec(first)} first backup",
                        second / first, f"<= {SECOND_VS_FIRST:g}x", second / first <= SECOND_VS_FIRST))
    if d.get("error"):
        rows.append(row("run", f"error: {d['error']}"[:80]))
    return rows or [row("figures", "none written")]


BENCHMARKS = {"backup_overhead": backup_overhead, "fleet": fleet, "scale": scale, "browse": browse,
              "instant_recovery": instant_recovery, "service": service, "snapshot": snapshot}


# --- one run's files -> the table ----------------------------------------------------------------
def benchmark_of(path):
    """bench/output/<name>.json or <name>-<time>.json -> name."""
    return path.stem.split("-", 1)[0]


def collect(output, run):
    """{name: (path, data)}: the newest results file of each benchmark written by run `run`
    (its `bench_run`); a file that cannot be read is skipped."""
    def mtime(path):
        try:
            return path.stat().st_mtime
        except OSError:
            return 0

    found = {}
    if not run or not Path(output).is_dir():
        return found
    for path in sorted(Path(output).glob("*.json"), key=mtime):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue   # cannot tell whose it is (half written, foreign): not this run's figures
        if isinstance(data, dict) and data.get("bench_run") == run:
            found[benchmark_of(path)] = (path, data)
    return found


def rows_of(name, data, status=None):
    """The rows of one benchmark: its figures, or why there are none. status: its exit status,
    INTERRUPTED, or None (not run here)."""
    if data is None:
        if status is None:
            figure, verdict_ = "not run", NONE
        elif status == 0:
            figure, verdict_ = "no results written", NONE
        elif status == INTERRUPTED:
            figure, verdict_ = INTERRUPTED, FAILED
        else:
            figure, verdict_ = f"failed (exit status {status})", FAILED
        return [{"benchmark": name, "figure": figure, "ours": NONE, "peer": NONE, "ratio": None, "target": NONE,
                 "verdict": verdict_, "load": NONE}]
    fn = BENCHMARKS.get(name)
    try:
        rows = fn(data) if fn else [row("figures", "no summary for this benchmark: see its results file")]
    except Exception as e:   # a results file of another shape: say so, never lose the rest of the table
        rows = [row("figures", f"unreadable results ({type(e).__name__}: {e})"[:80])]
    if status:
        rows.append(row("run", INTERRUPTED if status == INTERRUPTED else f"exit status {status}"))
        rows[-1]["verdict"] = FAILED
    try:
        load = load_text(data)
    except Exception:
        load = NONE
    return [{"benchmark": name, **r, "load": load} for r in rows]


def table(rows):
    """Rows as an aligned Markdown table."""
    cells = [list(COLUMNS)] + [[r["benchmark"], r["figure"], r["ours"], r["peer"], ratio_text(r["ratio"]),
                                r["target"], r["verdict"], r["load"]] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    line = lambda c: "| " + " | ".join(v.ljust(w) for v, w in zip(c, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(c) for c in cells[1:]])


def summarize(output, run, statuses):
    """The whole text: statuses is [(name, exit status or None)] in the order to show."""
    found = collect(output, run)
    rows = []
    for name, status in statuses:
        _, data = found.get(name, (None, None))
        rows += rows_of(name, data, status)
    verdicts = [r["verdict"] for r in rows]
    lines = [f"summary of bench run {run}: every figure from the results files of this run"
             " (ratio = ours / peer; load average: 1 minute, at the benchmark's start-end)", "",
             table(rows), "",
             f"{verdicts.count(PASS)} PASS, {verdicts.count(MISS)} MISS, {verdicts.count(FAILED)} FAILED"]
    files = [str(found[n][0]) for n, _ in statuses if n in found]
    if files:
        lines.append("from " + ", ".join(files))
    return "\n".join(lines)


def parse_status(arg):
    """'NAME=0' -> (NAME, 0); 'NAME=interrupted' -> (NAME, 'interrupted'); 'NAME' -> (NAME, None)."""
    name, _, rc = arg.partition("=")
    if rc == INTERRUPTED:
        return name, rc
    try:
        return name, int(rc) if rc != "" else None
    except ValueError:
        return name, None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="the run id the results files carry as bench_run")
    ap.add_argument("--output", default=str(OUTPUT), help="where the results files are (default bench/output)")
    ap.add_argument("status", nargs="*", help="NAME=EXIT_STATUS of each benchmark, in the order to show;"
                                              " NAME alone: not run (default: every known benchmark)")
    args = ap.parse_args(argv)
    statuses = [parse_status(a) for a in args.status] or [(n, None) for n in BENCHMARKS]
    print(summarize(args.output, args.run, statuses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
