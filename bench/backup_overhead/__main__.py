"""Benchmark: our backup.yml against raw `borg create` and borgmatic, same tree, same SSH path.

    .venv/bin/python bench/backup_overhead [--runs 5] [--seed 1]      (or: bench/run)

Each contender gets its own fresh repository on one backup server (a real sshd on loopback)
and backs up the same ~800 MB tree: once (initial), then --runs incremental rounds. Before
each round the tree changes once, then all three back up that same change, in an order that
rotates per round. Prints median/min/max seconds, the ratios and the targets (PASS/MISS),
writes bench/output/backup_overhead-<timestamp>.json, then reads every contender's last
archive back to prove it holds the tree. Exit 0 when every run and check succeeded (whatever
the targets say), 1 otherwise.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # tests.lib (the loopback sshd harness) and this package's modules
sys.path.insert(1, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import tree  # noqa: E402
from bench.common import exit_on_signals, load_span, log, summary, utc_stamp, write_json  # noqa: E402

TARGETS = {"incremental_ours_vs_raw": 1.5, "initial_ours_vs_raw": 1.05}


def rotated(contenders, k):
    k %= len(contenders)
    return list(contenders[k:]) + list(contenders[:k])


def versions():
    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            return (out.stdout or out.stderr).splitlines()[0].strip()
        except (OSError, IndexError):
            return None
    return {"borg": first_line(["borg", "--version"]),
            "borgmatic": first_line(["borgmatic", "--version"]),
            "ansible": first_line([str(Path(sys.executable).parent / "ansible-playbook"), "--version"]),
            "python": platform.python_version(), "cpus": os.cpu_count()}


def evaluate(stats):
    ours, raw, bm = (stats[c] for c in ("ours", "raw", "borgmatic"))
    ratios = {
        "initial": {"ours/raw": ours["initial"]["median"] / raw["initial"]["median"],
                    "borgmatic/raw": bm["initial"]["median"] / raw["initial"]["median"],
                    "ours/borgmatic": ours["initial"]["median"] / bm["initial"]["median"]},
        "incremental": {"ours/raw": ours["incremental"]["median"] / raw["incremental"]["median"],
                        "borgmatic/raw": bm["incremental"]["median"] / raw["incremental"]["median"],
                        "ours/borgmatic": ours["incremental"]["median"] / bm["incremental"]["median"]},
    }
    targets = [
        {"target": f"incremental: ours <= {TARGETS['incremental_ours_vs_raw']}x raw (median)",
         "value": ratios["incremental"]["ours/raw"],
         "pass": ratios["incremental"]["ours/raw"] <= TARGETS["incremental_ours_vs_raw"]},
        {"target": "incremental: ours faster than borgmatic (median)",
         "value": ratios["incremental"]["ours/borgmatic"],
         "pass": ours["incremental"]["median"] < bm["incremental"]["median"]},
        {"target": f"initial: ours <= {TARGETS['initial_ours_vs_raw']}x raw",
         "value": ratios["initial"]["ours/raw"],
         "pass": ratios["initial"]["ours/raw"] <= TARGETS["initial_ours_vs_raw"]},
    ]
    return ratios, targets


def table(stats, ratios, targets, load_start):
    lines = [f"{'contender':<11} {'phase':<12} {'n':>2} {'median s':>9} {'min s':>8} {'max s':>8}"
             f"  {'cpu s (client+server, median)':<30} logins/run"]
    for c in harness.CONTENDERS:
        for phase in ("initial", "incremental"):
            s = stats[c][phase]
            cpu = (f"{s['cpu']['total']['median']:6.2f} ({s['cpu']['client']['median']:.2f}+"
                   f"{s['cpu']['server']['median']:.2f})" if "cpu" in s else "n/a")
            lines.append(f"{c:<11} {phase:<12} {s['n']:>2} {s['median']:>9.2f} {s['min']:>8.2f} {s['max']:>8.2f}"
                         f"  {cpu:<30} {s['server_logins']}")
    lines.append("")
    for phase in ("initial", "incremental"):
        lines.append(f"wall {phase:<12} " + "   ".join(f"{k} {v:.2f}x" for k, v in ratios[phase].items()))
    for phase in ("initial", "incremental"):
        if all("cpu" in stats[c][phase] for c in harness.CONTENDERS):
            cpu = {c: stats[c][phase]["cpu"]["total"]["median"] for c in harness.CONTENDERS}
            lines.append(f"cpu  {phase:<12} ours/raw {cpu['ours'] / cpu['raw']:.2f}x   "
                         f"borgmatic/raw {cpu['borgmatic'] / cpu['raw']:.2f}x   "
                         f"ours/borgmatic {cpu['ours'] / cpu['borgmatic']:.2f}x")
    lines.append("")
    for t in targets:
        lines.append(f"{'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']:.2f}x")
    lines.append(f"(targets are judged on wall time; {load_span(load_start)}: other work on this "
                 "machine stretches wall time)")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench/backup_overhead", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="incremental rounds (default 5)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the data tree and its changes")
    ap.add_argument("--order", default=",".join(harness.CONTENDERS),
                    help="order of the initial runs (comma list); each incremental round rotates it by one")
    ap.add_argument("--profile-rounds", type=int, default=3,
                    help="extra incremental rounds, not counted, that profile ours per task (default 3; 0 = none)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    order = args.order.split(",")
    if sorted(order) != sorted(harness.CONTENDERS):
        ap.error(f"--order must list each of {', '.join(harness.CONTENDERS)} once")
    exit_on_signals()  # sshd and repositories go through the finally below

    load_start = os.getloadavg()  # other work on this machine skews every contender alike; say how much
    pristine = tree.cached_tree(args.seed, log=log)
    bench = harness.Bench(log=log)
    failures = []
    try:
        data = tree.copy_tree(pristine, bench.root / "data")
        files, size = tree.tree_stats(data)
        log(f"tree: {files} files, {size / 1e6:.0f} MB backed up (copy of {pristine}); load average "
            f"{load_start[0]:.1f}; setting up fleet ...")
        bench.setup(data, tree.excludes(data))
        log(f"backup server {bench.server.sshd.address}:{bench.server.sshd.port}, "
            f"client {bench.client.sshd.address}:{bench.client.sshd.port}")

        runs = []
        for k, c in enumerate(rotated(order, 0)):
            res = bench.run(c)
            runs.append({"contender": c, "phase": "initial", "round": 0, "order": k, **res})
            log(f"initial      {c:<10} {res['seconds']:7.2f} s")
        for r in range(1, args.runs + 1):
            changed = tree.change(data, args.seed, r)
            for k, c in enumerate(rotated(order, r)):
                res = bench.run(c)
                runs.append({"contender": c, "phase": "incremental", "round": r, "order": k, **res})
                log(f"incremental {r} {c:<10} {res['seconds']:7.2f} s")

        log("reading the last archive of each contender back ...")
        expected = tree.walk_files(data)
        with tempfile.TemporaryDirectory(dir=bench.root) as scratch:
            verification = {c: bench.verify(c, expected, changed, scratch) for c in harness.CONTENDERS}
        for c, v in verification.items():
            n_archives = len(bench.repos[c].archive_names())
            if n_archives != 1 + args.runs:
                v["problems"].append(f"{n_archives} archives, expected {1 + args.runs}")
            if v["problems"]:
                failures.append(f"{c}: {v['problems']}")
            st = v["initial_archive_stats"]
            log(f"verify {c:<10} {v['archive']}: {v['files']} files, "
                f"{'OK' if not v['problems'] else v['problems']}; initial archive: "
                f"{st['original_size'] / 1e6:.0f} MB -> {st['compressed_size'] / 1e6:.0f} MB compressed")

        profile = None
        if args.profile_rounds:
            # Extra rounds, not counted: where ours spends its time, against raw on the same change.
            profile = []
            for r in range(args.runs + 1, args.runs + 1 + args.profile_rounds):
                tree.change(data, args.seed, r)
                profile.append({"ours": bench.profile_ours(), "raw": bench.run("raw"),
                                "ansible_floor": bench.ansible_floor(),
                                "ansible_start": bench.ansible_start(), "ssh_exec": bench.ssh_exec(),
                                "borg_version": bench.borg_version()})
                log(f"profile round {r}: ours {profile[-1]['ours']['seconds']:.2f} s, "
                    f"raw {profile[-1]['raw']['seconds']:.2f} s")

        stats = {}
        for c in harness.CONTENDERS:
            stats[c] = {}
            for phase in ("initial", "incremental"):
                mine = [x for x in runs if x["contender"] == c and x["phase"] == phase]
                stats[c][phase] = summary([x["seconds"] for x in mine])
                if all(x["cpu"] for x in mine):
                    stats[c][phase]["cpu"] = {side: summary([x["cpu"][side] for x in mine])
                                              for side in ("client", "server")}
                    stats[c][phase]["cpu"]["total"] = summary([sum(x["cpu"].values()) for x in mine])
                stats[c][phase]["server_logins"] = sorted({x["server_logins"] for x in mine})
        ratios, targets = evaluate(stats)
        print()
        print(table(stats, ratios, targets, load_start))
        if profile:
            print()
            print(profile_text(profile))

        stamp = utc_stamp()
        out = write_json(f"backup_overhead-{stamp}.json", {
            "benchmark": "backup_overhead", "utc": stamp, "argv": sys.argv, "runs_requested": args.runs,
            "seed": args.seed, "versions": versions(), "loadavg": {"start": load_start, "end": os.getloadavg()},
            "tree": {"recipe": tree.RECIPE, "change_per_round": tree.CHANGE, "files": files, "bytes": size,
                     "cache": str(pristine)},
            "contenders": {"raw": bench.raw_argv(), "ours": ["ansible-playbook", "-i", "<inventory>",
                                                             "playbooks/backup.yml"],
                           "borgmatic": bench.borgmatic_argv()},
            # No secret in it: the passphrase reaches borgmatic through BORG_PASSPHRASE.
            "borgmatic_config": bench.borgmatic_config.read_text(),
            "runs": runs, "stats": stats, "ratios": ratios, "targets": targets,
            "verification": verification, "profile": profile, "failures": failures,
        })
        print(f"\nresults: {out}")
    finally:
        bench.close()
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


def profile_text(profile):
    """Medians over the profiled rounds: ours' time split into where it goes."""
    def med(key, get):
        values = [get(p[key]) for p in profile]
        return None if None in values else statistics.median(values)

    def cpu(key):
        return med(key, lambda x: sum(x["cpu"].values()) if x["cpu"] else None)

    def row(label, key, note=""):
        c = cpu(key)
        return (f"  {label:<34} {med(key, lambda x: x['seconds']):6.2f} s wall"
                f"{f'  {c:6.2f} s cpu' if c is not None else ''}  {note}")

    tasks = {}
    for p in profile:
        for t in p["ours"]["tasks"]:
            tasks.setdefault(t["task"].split(": ", 1)[-1], []).append(t["seconds"])
    task_med = sorted(((statistics.median(v), k) for k, v in tasks.items()), reverse=True)
    outside = statistics.median([p["ours"]["seconds"] - sum(t["seconds"] for t in p["ours"]["tasks"])
                                 for p in profile])
    lines = [f"where ours spends an incremental run (median of {len(profile)} extra rounds, not counted above;"
             " per-task seconds from the ansible.builtin.junit callback):",
             row("ours: ansible-playbook backup.yml", "ours"),
             row("raw borg create, same change", "raw",
                 f"(borg's archive duration {med('raw', lambda x: x['borg_duration']):.2f} s)"),
             row("ansible floor: one ping task", "ansible_floor", "(same inventory and SSH path to the client)"),
             row("ansible start: a play, no task", "ansible_start", "(same inventory; no connection)"),
             row("one ssh root@client true, cold", "ssh_exec", "(what each task's SSH command costs)"),
             row("one local borg --version", "borg_version", "(borg's own start: every borg process pays it)"),
             f"  ours: borg's archive duration      {med('ours', lambda x: x['borg_duration']):6.2f} s",
             f"  ours: outside any task             {outside:6.2f} s wall  "
             "(ansible start, inventory, plugin loading, play setup)"]
    for seconds, task in task_med[:8]:
        lines.append(f"  task {seconds:6.2f} s  {task}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
