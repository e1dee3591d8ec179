"""Benchmark: time to the first answered query of a PostgreSQL started from a borg archive.

    .venv/bin/python bench/instant_recovery [--scales 13,200] [--writes 5]     (or: bench/run instant_recovery)

Per size (pgbench scale 13 is ~200 MB, 200 is ~3 GB): initdb + pgbench -i, CHECKPOINT, a few
seconds of pgbench writes, then the server is SIGKILLed - the data dir is what a crash-consistent
snapshot holds - and backed up with borg (repokey-blake2, lz4) into a local repository. Then, one
after the other, from the same archive:
  ours      the instant_recovery module through ansible-playbook (frozen copy of the repository by hard links
            under its lock + borg mount + rowfs + postgres); the copy's cost is printed with its peer, the
            same `cp -a -l` without borg
  extract   borg extract into a directory + postgres started on it
  overlay   borg mount + kernel overlayfs (upper dir on local disk) + postgres
Each: seconds from the request to the first answered query (crash recovery included), bytes
written to the writable layer at that moment (rowfs delta / overlay upper dir / the whole
extracted copy; for ours also after the scan and a CHECKPOINT, which writes what recovery left
dirty), and a full-table scan of pgbench_accounts on the recovered server. Page cache is dropped before each
contender when the kernel allows it. Writes bench/output/instant_recovery-<timestamp>.json.
Not part of the tests (minutes at 3 GB).
"""
import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import load_span, log, scratch_dir, utc_stamp, write_json  # noqa: E402
from tests.recovery.dbs import PG_BIN, Postgres  # noqa: E402

PASS = "bench-passphrase"
TARGETS = {"speedup_vs_extract_at_largest": 5.0, "ours_large_vs_small": 1.5, "layer_fraction": 0.10}


def borg_env(root):
    return dict(os.environ, BORG_PASSPHRASE=PASS, BORG_BASE_DIR=str(root / "borg-base"))


def run(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def du(path):
    """Bytes really allocated under path (sparse files count only their written blocks)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def drop_caches():
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def as_postgres():
    pw = pwd.getpwnam("postgres")
    return dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])


def psql(sock, port, sql):
    return subprocess.run([str(PG_BIN / "psql"), "-X", "-A", "-t", "-h", str(sock), "-p", str(port), "-d", "postgres",
                           "-c", sql], capture_output=True, text=True, **as_postgres())


def scan(sock, port):
    t = time.time()
    r = psql(sock, port, "SELECT count(*), sum(abalance) FROM pgbench_accounts")
    assert r.returncode == 0, r.stderr
    return round(time.time() - t, 3), r.stdout.strip()


def make_archive(root, scale, writes, chunker_params=None):
    pg = Postgres(root / "pg").init().start()
    log(f"scale {scale}: pgbench -i")
    run([str(PG_BIN / "pgbench"), "-i", "-q", "-s", str(scale), "-h", str(pg.sock), "-p", "5999", "postgres"],
        capture_output=True, **as_postgres())
    pg.sql("CHECKPOINT")
    run([str(PG_BIN / "pgbench"), "-T", str(writes), "-c", "2", "-h", str(pg.sock), "-p", "5999", "postgres"],
        capture_output=True, **as_postgres())
    size = int(pg.sql("SELECT pg_database_size('postgres')").stdout)
    expected = pg.sql("SELECT count(*), sum(abalance) FROM pgbench_accounts").stdout.strip()
    pg.crash()  # crash-consistent: what a snapshot of the volume holds
    data_bytes = du(pg.data)
    repo = root / "pool" / "localhost" / "pg"
    repo.parent.mkdir(parents=True)
    env = borg_env(root)
    run(["borg", "init", "-e", "repokey-blake2", str(repo)], env=env, capture_output=True)
    t = time.time()
    chunker = ["--chunker-params", chunker_params] if chunker_params else []
    run(["borg", "create", "--compression", "lz4", *chunker, f"{repo}::pg-bench", str(pg.data)], env=env)
    log(f"scale {scale}: database {size / 1e6:.0f} MB, data dir {data_bytes / 1e6:.0f} MB, "
        f"borg create {time.time() - t:.1f} s")
    return repo, pg.data, size, data_bytes, expected


def start_postgres(datadir, sock, port, log_path):
    os.makedirs(sock, exist_ok=True)
    shutil.chown(sock, "postgres", "postgres")
    pid = Path(datadir) / "postmaster.pid"
    if pid.exists():
        pid.unlink()
    with open(log_path, "ab") as logf:
        return subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(datadir), "-k", str(sock), "-p", str(port),
                                 "-c", "listen_addresses=", "-c", "archive_mode=off"],
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, **as_postgres())


def wait_query(sock, port, proc, log_path, timeout=1800):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "postgres exited: " + Path(log_path).read_text()[-2000:]
        if psql(sock, port, "SELECT count(*) FROM pg_database").returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError("no answer")


def stop_postgres(proc):
    os.killpg(proc.pid, 9)
    proc.wait()


def module_task(root, args):
    """Run one instant_recovery task through ansible-playbook; returns (result, wall seconds)."""
    out = root / "result.json"
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [
        {"borgfleet.backup.instant_recovery": args, "register": "r", "no_log": True},
        {"ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(out)}}]}]
    (root / "play.json").write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3")
    t = time.time()
    run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", str(root / "play.json")],
        cwd=REPO, env=env, capture_output=True)
    wall = time.time() - t
    r = json.loads(out.read_text())
    out.unlink()
    assert not r.get("failed"), r.get("msg")
    return r, wall


def contender_ours(root, repo):
    r, wall = module_task(root, {"repository": str(repo), "passphrase": PASS, "borg_base_dir": str(root / "borg-base"),
                                 "archive": "pg-bench", "name": "bench"})
    s = r["session"]
    scan_s, rows = scan(s["socket_dir"], s["port"])
    psql(s["socket_dir"], s["port"], "CHECKPOINT")
    layer_after_scan = du(Path("/var/lib/borgfleet/recovery/ir-bench/delta"))
    module_task(root, {"name": "bench", "state": "absent"})
    # The session's frozen copy (borg with-lock + cp -a -l), and its peer: the same hard links without borg.
    links = repo.parent / ".links-peer"
    t = time.time()
    run(["cp", "-a", "-l", "-T", str(repo), str(links)])
    links_s = round(time.time() - t, 4)
    shutil.rmtree(links)
    return {"first_query_s": round(wall, 3), "module_ready_s": r["ready_seconds"], "timings": r.get("timings"), "layer_bytes": s["layer_bytes"],
            "layer_bytes_after_scan_and_checkpoint": layer_after_scan, "scan_s": scan_s, "scan_result": rows,
            "frozen_copy": r.get("frozen_copy"), "hard_links_alone_s": links_s}


def contender_extract(root, repo, datadir_in_archive):
    target = root / "extract"
    target.mkdir()
    t = time.time()
    run(["borg", "extract", f"{repo}::pg-bench"], cwd=target, env=borg_env(root))
    extracted = time.time() - t
    data = target / datadir_in_archive
    d = data.parent
    while d != root:  # borg creates the parents it did not archive 0700: postgres must traverse them
        d.chmod(0o755)
        d = d.parent
    proc = start_postgres(data, root / "sock-extract", 6001, root / "extract.log")
    wait_query(root / "sock-extract", 6001, proc, root / "extract.log")
    first = time.time() - t
    scan_s, rows = scan(root / "sock-extract", 6001)
    stop_postgres(proc)
    written = du(target)
    shutil.rmtree(target)
    return {"first_query_s": round(first, 3), "extract_s": round(extracted, 3), "layer_bytes": written,
            "scan_s": scan_s, "scan_result": rows}


def contender_overlay(root, repo, datadir_in_archive):
    mnt, upper, work, merged = (root / n for n in ("ov-mnt", "ov-upper", "ov-work", "ov-merged"))
    for d in (mnt, upper, work, merged):
        d.mkdir()
    t = time.time()
    run(["borg", "mount", "-o", "allow_other", f"{repo}::pg-bench", str(mnt)], env=borg_env(root))
    lower = os.stat(mnt / datadir_in_archive)  # the merged root takes the upper dir's owner and mode
    os.chown(upper, lower.st_uid, lower.st_gid)
    os.chmod(upper, lower.st_mode & 0o7777)
    try:
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={mnt / datadir_in_archive},upperdir={upper},workdir={work}", str(merged)],
            capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        subprocess.run(["fusermount3", "-u", str(mnt)])
        return {"error": f"overlayfs over the borg mount failed here: {e.stderr.strip()}"}
    try:
        proc = start_postgres(merged, root / "sock-ov", 6002, root / "overlay.log")
        wait_query(root / "sock-ov", 6002, proc, root / "overlay.log")
        first = time.time() - t
        written = du(upper)
        scan_s, rows = scan(root / "sock-ov", 6002)
        stop_postgres(proc)
    finally:
        # The killed server's backends may hold files a moment longer: retry, then detach lazily.
        for _ in range(50):
            if subprocess.run(["umount", str(merged)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:
            subprocess.run(["umount", "-l", str(merged)])
        subprocess.run(["fusermount3", "-uz", str(mnt)])
    return {"first_query_s": round(first, 3), "layer_bytes": written, "scan_s": scan_s, "scan_result": rows}


def bench_scale(scale, writes, keep, only, chunker_params=None):
    root = scratch_dir(f"ir-{scale}-")
    try:
        repo, data, size, data_bytes, expected = make_archive(root, scale, writes, chunker_params)
        rel = str(data).lstrip("/")
        result = {"scale": scale, "chunker_params": chunker_params or "borg default", "database_bytes": size, "datadir_bytes": data_bytes, "expected_scan": expected}
        for name, fn in (("ours", lambda: contender_ours(root, repo)),
                         ("extract", lambda: contender_extract(root, repo, rel)),
                         ("overlay", lambda: contender_overlay(root, repo, rel))):
            if name not in only:
                continue
            cold = drop_caches()
            log(f"scale {scale}: {name} ...")
            result[name] = dict(fn(), cold_cache=cold)
            log(f"scale {scale}: {name}: {result[name]}")
            if "scan_result" in result[name]:
                assert result[name]["scan_result"] == expected, (name, result[name]["scan_result"], expected)
        return result
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="13,200", help="pgbench scales (13 ~ 200 MB, 200 ~ 3 GB)")
    ap.add_argument("--writes", type=int, default=5, help="seconds of pgbench writes before the crash")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", default="ours,extract,overlay", help="contenders to run")
    ap.add_argument("--chunker-params", default=None,
                    help="borg create --chunker-params for the archive, e.g. fixed,65536 (default: borg's)")
    args = ap.parse_args()
    load_start = os.getloadavg()
    results = [bench_scale(int(s), args.writes, args.keep, args.only.split(","), args.chunker_params) for s in args.scales.split(",")]
    small, large = results[0], results[-1]
    summary = {}
    if all("ours" in r for r in results):
        # Ours is timed from the module's start (module_ready_s): the request as the other two are
        # timed. The ansible-playbook wall time (first_query_s) adds Python/Ansible start-up, which a
        # dropped page cache makes slow here; both are printed.
        summary["ours_large_vs_small"] = round(large["ours"]["module_ready_s"] / small["ours"]["module_ready_s"], 2)
        summary["layer_fraction"] = round(max(r["ours"]["layer_bytes"] / r["database_bytes"] for r in results), 4)
        if "extract" in large:
            summary["speedup_vs_extract_at_largest"] = round(
                large["extract"]["first_query_s"] / large["ours"]["module_ready_s"], 2)
            summary["speedup_vs_extract_at_largest_with_ansible"] = round(
                large["extract"]["first_query_s"] / large["ours"]["first_query_s"], 2)
    print()
    print(f"{'scale':>6} {'DB MB':>7} {'contender':>9} {'first query s':>14} {'written MB':>11} {'scan s':>7}"
          "   (ours: module time, with ansible-playbook in parentheses; layer after the scan and a CHECKPOINT)")
    for r in results:
        for name in ("ours", "extract", "overlay"):
            if name not in r:
                continue
            c = r[name]
            if "error" in c:
                print(f"{r['scale']:>6} {r['database_bytes'] / 1e6:>7.0f} {name:>9} {c['error']}")
                continue
            first = c.get("module_ready_s", c["first_query_s"])
            extra = ""
            if "module_ready_s" in c:
                extra = (f"   ({c['first_query_s']:.2f} s; "
                         f"{c['layer_bytes_after_scan_and_checkpoint'] / 1e6:.1f} MB)")
            print(f"{r['scale']:>6} {r['database_bytes'] / 1e6:>7.0f} {name:>9} {first:>14.2f} "
                  f"{c['layer_bytes'] / 1e6:>11.1f} {c['scan_s']:>7.2f}{extra}")
            if c.get("frozen_copy"):
                f = c["frozen_copy"]
                print(f"{'':>6} {'':>7} {'':>9} frozen copy {f['seconds']:.3f} s ({f['segments']} segments; under the "
                      f"lock {f['locked_seconds']:.3f} s, borg start-up included; the links alone "
                      f"{c['hard_links_alone_s'] * 1000:.1f} ms)")
    ok = True
    for key, target in TARGETS.items():
        if key not in summary:
            continue
        value = summary[key]
        good = value >= target if key.startswith("speedup") else value <= target
        ok = ok and good
        print(f"{key}: {value} (target {'>=' if key.startswith('speedup') else '<='} {target}) "
              f"{'PASS' if good else 'MISS'}")
    print(load_span(load_start))
    out = write_json(f"instant_recovery-{utc_stamp()}.json", {
        "results": results, "summary": summary, "targets": TARGETS, "chunker_params": args.chunker_params,
        "loadavg": {"start": load_start, "end": os.getloadavg()}})
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
