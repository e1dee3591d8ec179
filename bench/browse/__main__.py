"""Browsing in milliseconds (issue 15): the archive index against borg, in one run.

    bench/run browse [--archives 30] [--levels 40] [--searches 10] [--peer-levels 5] [--peer-search-archives 30]

- **Data**: a 300,000-file tree (14 x 20 directories of 1,000 files, plus one directory of 20,000),
  and a repository (repokey-blake2, lz4) of `--archives` archives of it, each after a small change
  (50 files rewritten, 10 added): borg dedups, so the 30 archives cost little more than one. Built
  once and cached under /var/tmp/borgfleet-bench/browse-v1/ (BORGFLEET_BENCH_CACHE moves it).
- **Service**: a throwaway MariaDB database and a claimed Redis db, gunicorn (2 workers) and one RQ worker,
  a local-connection client whose backup job points at the cached repository (read only:
  refresh-archives, then index_archive jobs).
- **Figures**: time to index (the index_archive job from queued to finished, and the load into
  MariaDB alone) for the first archive (every row new) and the others (only changed listings new);
  p50/p95 of GET /api/archives/{id}/tree over levels of every shape (top, a middle level, a
  1,000-entry directory, pages of the 20,000-entry one) against `borg list` of that level the way
  browse.yml reads it (`--exclude re:...`, every item read, the level's kept); p50/p95 of GET
  /api/backup-jobs/{id}/versions of one file across all archives against the borg loop search.yml
  runs (one `borg list <archive> <path>` per archive), and of a glob. Targets: a level < 300 ms,
  a search over 30 archives < 1 s. Rows and bytes of the index tables are printed too.
- Writes bench/output/browse.json.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import CACHE as CACHE_ROOT, Service, load_span, pct, write_json  # noqa: E402

CACHE = CACHE_ROOT / "browse-v1"
PASS = "bench-browse-passphrase"
TOPS, MIDS, FILES, BIG = 14, 20, 1000, 20_000
CLIENT, BACKUP = "bench-client", "data"


def borg_env():
    return dict(os.environ, BORG_PASSPHRASE=PASS, BORG_BASE_DIR=str(CACHE / "base"), LANG="C.UTF-8",
                LC_ALL="C.UTF-8", BORG_RELOCATED_REPO_ACCESS_IS_OK="no")


def borg(*args, stdout=subprocess.PIPE):
    return subprocess.run(["borg", *args], env=borg_env(), check=True, stdout=stdout, text=True)


def tree_dir():
    return CACHE / "tree"


def repo_dir():
    # Where the service expects a local client's repository: <local_pool_path>/<client>/<backup>.
    return CACHE / "pool" / CLIENT / BACKUP


def build_tree():
    """300,000 small files; built once (a marker file says it is complete)."""
    done = CACHE / "tree.done"
    if done.exists():
        return
    shutil.rmtree(tree_dir(), ignore_errors=True)
    t = time.monotonic()
    for a in range(TOPS):
        for b in range(MIDS):
            d = tree_dir() / f"srv{a:02d}" / f"app{b:02d}"
            d.mkdir(parents=True)
            for i in range(FILES):
                (d / f"file{i:04d}.txt").write_text(f"{a} {b} {i}\n")
    big = tree_dir() / "var" / "spool" / "big"
    big.mkdir(parents=True)
    for i in range(BIG):
        (big / f"msg{i:05d}.eml").write_text(f"message {i}\n")
    done.write_text("")
    print(f"tree: {TOPS * MIDS * FILES + BIG} files built in {time.monotonic() - t:.0f} s")


def change(n):
    """The small change before archive n: 50 files rewritten, 10 new ones."""
    for k in range(50):
        a, b, i = (n * 7 + k) % TOPS, (n * 3 + k) % MIDS, (n * 37 + k * 11) % FILES
        (tree_dir() / f"srv{a:02d}" / f"app{b:02d}" / f"file{i:04d}.txt").write_text(f"changed in {n}\n")
    d = tree_dir() / "srv00" / "app00" / f"new{n:02d}"
    d.mkdir(exist_ok=True)
    for k in range(10):
        (d / f"n{k}.txt").write_text(f"new {n} {k}\n")


def archive_name(n):
    return f"{BACKUP}-2026-11-{1 + n // 24:02d}T{n % 24:02d}:00:00"


def build_repo(count):
    """The repository with `count` archives, each after a small change; archives already there are kept."""
    if not repo_dir().exists():
        repo_dir().parent.mkdir(parents=True, exist_ok=True)
        borg("init", "--encryption", "repokey-blake2", str(repo_dir()))
    have = {a["name"] for a in json.loads(borg("list", "--json", str(repo_dir())).stdout)["archives"]}
    for n in range(count):
        name = archive_name(n)
        if name in have:
            continue
        if n:
            change(n)
        t = time.monotonic()
        borg("create", "--compression", "lz4", "--timestamp", name.split("-", 1)[1],
             f"{repo_dir()}::{name}", str(tree_dir()), stdout=subprocess.DEVNULL)
        print(f"archive {n + 1}/{count} {name}: {time.monotonic() - t:.0f} s", flush=True)


def children_pattern(path):
    # The same pattern browse.yml's module passes (plugins/module_utils/borg.py children_pattern).
    path = path.strip("/")
    return "re:/" if not path else "re:^(?!%s/[^/]+\\Z)" % re.escape(path)


def borg_level(archive, path):
    out = borg("list", "--json-lines", "--exclude", children_pattern(path), f"{repo_dir()}::{archive}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def borg_search(archives, path):
    """search.yml's loop: one borg list per archive, limited to the path."""
    found = 0
    for a in archives:
        out = borg("list", "--json-lines", f"{repo_dir()}::{a}", path).stdout
        found += sum(1 for line in out.splitlines() if json.loads(line)["path"] == path)
    return found


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def ms(v):
    return round(v * 1000, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--archives", type=int, default=30)
    ap.add_argument("--levels", type=int, default=40, help="index level requests per shape")
    ap.add_argument("--searches", type=int, default=10)
    ap.add_argument("--peer-levels", type=int, default=5, help="borg level lists per shape")
    ap.add_argument("--peer-search-archives", type=int, default=30,
                    help="archives borg's search loop reads (its time is scaled to --archives when fewer)")
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    build_tree()
    build_repo(args.archives)
    names = [archive_name(n) for n in range(args.archives)]
    root = str(tree_dir()).lstrip("/")

    load_start = os.getloadavg()
    b = Service("browse")
    out = {"archives": args.archives, "files": TOPS * MIDS * FILES + BIG + 10 * (args.archives - 1)}
    try:
        b.open()
        b.admin_token()
        b.start_web()
        b.start_worker()
        client = b.call("POST", "/api/servers", {
            "name": CLIENT, "role": "client", "connection": "local", "local_pool_path": str(CACHE / "pool"),
            "vars": {"borgfleet_borg_base_dir": str(CACHE / "base")}})
        bj = b.call("POST", "/api/backup-jobs", {"client_id": client["id"], "name": BACKUP,
                                                  "paths": [str(tree_dir())], "passphrase": PASS})
        job = b.wait_job(b.call("POST", f"/api/backup-jobs/{bj['id']}/refresh-archives")["job_id"])
        assert job["status"] == "succeeded", job["error"]
        ids = {a["name"]: a["id"] for a in b.call("GET", f"/api/archives?backup_job_id={bj['id']}&limit=200")["items"]}
        assert sorted(ids) == sorted(names), sorted(ids)

        # Index every archive, oldest first, one job at a time (the first one loads every row).
        index = []
        for name in names:
            job = b.wait_job(b.call("POST", f"/api/archives/{ids[name]}/index")["job_id"], timeout=1800)
            assert job["status"] == "succeeded", job["error"]
            result = json.loads(job["result_json"])
            index.append({"job_s": (job["finished_at"] - job["created_at"]).total_seconds(),
                          "playbook_s": (job["finished_at"] - job["playbook_started_at"]).total_seconds(),
                          "load_s": result["seconds"], "items": result["items"], "new_listings": result["new_listings"]})
            print(f"indexed {name}: job {index[-1]['job_s']:.1f} s (load {result['seconds']:.1f} s,"
                  f" {result['items']} items, {result['new_listings']} new listings)", flush=True)
        out["index"] = {"first": index[0], "others_p50_job_s": statistics.median(x["job_s"] for x in index[1:]) if len(index) > 1 else None,
                        "others_p50_load_s": statistics.median(x["load_s"] for x in index[1:]) if len(index) > 1 else None,
                        "all": index}
        sizes = b.dbm.query(b.db, "SELECT table_name AS t, table_rows AS n, data_length + index_length AS bytes"
                                  " FROM information_schema.tables WHERE table_schema=DATABASE()"
                                  " AND table_name LIKE 'index\\_%%'")
        b.dbm.execute(b.db, "ANALYZE TABLE index_entries, index_listings, index_archives")
        exact = {t: b.dbm.query(b.db, f"SELECT COUNT(*) AS n FROM {t}", one=True)["n"]
                 for t in ("index_entries", "index_listings", "index_archives")}
        out["tables"] = {s["t"]: {"rows": exact.get(s["t"]), "bytes": s["bytes"]} for s in sizes}

        # Levels: the index through the HTTP route, against borg list of the same level.
        newest = names[-1]
        shapes = {"top": ("", 1), "middle (20 dirs)": (f"{root}/srv03", 1),
                  "1,000 files": (f"{root}/srv07/app11", 1), "20,000 files, page 1": (f"{root}/var/spool/big", 1),
                  "20,000 files, page 150": (f"{root}/var/spool/big", 150)}
        levels = {}
        for shape, (path, page) in shapes.items():
            def get(path=path, page=page):
                r = b.call("GET", f"/api/archives/{ids[newest]}/tree?path={urlq(path)}&page={page}")
                assert r["entries"], (path, page)
            get()   # the first request of a path warms MariaDB's buffer pool like any page view before it
            ours = timed(get, args.levels)
            peer = timed(lambda path=path: borg_level(newest, path), args.peer_levels)
            levels[shape] = {"ours_p50_ms": ms(pct(ours, 50)), "ours_p95_ms": ms(pct(ours, 95)),
                             "borg_p50_ms": ms(pct(peer, 50)), "borg_p95_ms": ms(pct(peer, 95))}
        all_ours = [v["ours_p95_ms"] for v in levels.values()]
        out["levels"] = levels

        # Versions of one file across every archive: the index vs search.yml's borg loop.
        target = f"{root}/srv00/app00/file0000.txt"
        v = b.call("GET", f"/api/backup-jobs/{bj['id']}/versions?path={urlq(target)}")
        assert v["archives_searched"] == args.archives and len(v["found"][0]["archives"]) == args.archives, v
        ours = timed(lambda: b.call("GET", f"/api/backup-jobs/{bj['id']}/versions?path={urlq(target)}"), args.searches)
        glob = f"{root}/srv00/app00/new*/n1.txt"
        g = b.call("GET", f"/api/backup-jobs/{bj['id']}/versions?path={urlq(glob)}")
        assert len(g["found"]) == args.archives - 1, g["found"][:2]
        ours_glob = timed(lambda: b.call("GET", f"/api/backup-jobs/{bj['id']}/versions?path={urlq(glob)}"), args.searches)
        peer_archives = names[-args.peer_search_archives:]
        t = time.perf_counter()
        assert borg_search(peer_archives, target) == len(peer_archives)
        peer = (time.perf_counter() - t) * args.archives / len(peer_archives)
        out["search"] = {"ours_p50_ms": ms(pct(ours, 50)), "ours_p95_ms": ms(pct(ours, 95)),
                         "glob_p50_ms": ms(pct(ours_glob, 50)), "glob_p95_ms": ms(pct(ours_glob, 95)),
                         "borg_s": round(peer, 2), "borg_archives_read": len(peer_archives)}
    finally:
        b.close()

    f = out["index"]["first"]
    print(f"\nbrowse: {out['files']} files, {args.archives} archives (each after a small change; borg dedups)")
    print(f"index, first archive: job {f['job_s']:.1f} s (from the playbook's start {f['playbook_s']:.1f} s, load into MariaDB"
          f" {f['load_s']:.1f} s, {f['items']} items); later archives p50: job {out['index']['others_p50_job_s']:.1f} s,"
          f" load {out['index']['others_p50_load_s']:.1f} s")
    for t, s in out["tables"].items():
        print(f"  {t}: {s['rows']} rows, {s['bytes'] / 2**20:.1f} MiB")
    print(f"{'level':26} {'index p50':>10} {'p95':>8} {'borg p50':>10} {'p95':>8} {'ratio p50':>10}")
    for shape, v in out["levels"].items():
        print(f"{shape:26} {v['ours_p50_ms']:>8} ms {v['ours_p95_ms']:>5} ms {v['borg_p50_ms']:>8} ms"
              f" {v['borg_p95_ms']:>5} ms {v['borg_p50_ms'] / max(v['ours_p50_ms'], 0.1):>9.0f}x")
    worst = max(all_ours)
    print(f"target: a level < 300 ms (worst p95 {worst} ms): {'PASS' if worst < 300 else 'MISS'}")
    s = out["search"]
    print(f"versions of one file across {args.archives} archives: index p50 {s['ours_p50_ms']} ms, p95 {s['ours_p95_ms']} ms;"
          f" a glob p50 {s['glob_p50_ms']} ms, p95 {s['glob_p95_ms']} ms; borg (search.yml's loop) {s['borg_s']} s"
          + (f" (scaled from {s['borg_archives_read']} archives)" if s["borg_archives_read"] < args.archives else "")
          + f"; ratio {s['borg_s'] * 1000 / max(s['ours_p50_ms'], 0.1):.0f}x")
    print(f"target: search over 30 archives < 1 s (p95 {max(s['ours_p95_ms'], s['glob_p95_ms'])} ms):"
          f" {'PASS' if max(s['ours_p95_ms'], s['glob_p95_ms']) < 1000 else 'MISS'}")
    print(load_span(load_start))
    out["loadavg"] = {"start": load_start, "end": os.getloadavg()}
    write_json("browse.json", out)


def urlq(s):
    from urllib.parse import quote
    return quote(s, safe="")


if __name__ == "__main__":
    main()
