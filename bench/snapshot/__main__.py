"""Benchmark: MariaDB snapshot backups on btrfs (a loop device), real engine, real borg.

    .venv/bin/python bench/snapshot [--samples 7] [--large-mb 1024]      (or: bench/run snapshot)

1. Freeze window - seconds FLUSH TABLES WITH READ LOCK is held (asked for .. released) around a
   btrfs snapshot, while a writer inserts rows - at two database sizes (~100 MB and --large-mb).
   Target: median < 1 s, and not growing with the size. Measured with the module's own
   freeze + snapshot code (module_utils), --samples times per size.
2. Files cache - the `snapshot` module (through ansible-playbook) backs the large, now idle
   database up twice, each time from a fresh snapshot mounted at the same path. Target: the
   second borg create takes <= 15% of the first (unchanged files are not read again).

Writes bench/output/snapshot-<timestamp>.json. Exit 0 when every run succeeded (whatever the
targets say), 1 otherwise. Needs root and btrfs-progs.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "collections"))  # module_utils import each other as ansible_collections.borgfleet.backup

from bench.common import load_span, log, scratch_dir, summary, utc_stamp, write_json  # noqa: E402
from plugins.module_utils.engines.mariadb import MariaDB as MariaDBEngine  # noqa: E402
from plugins.module_utils.snapshot import SnapshotSet, volumes_for  # noqa: E402
from tests.databases.dbs import SECRET, Btrfs, MariaDB, Writer  # noqa: E402
from tests.lib.playbook import run_module  # noqa: E402

MOUNT_ROOT = "/run/borgfleet/bench-snapshots"
TARGETS = {"freeze_median_seconds": 1.0, "second_vs_first": 0.15}


def datadir_mb(path):
    out = subprocess.run(["du", "-sm", str(path)], stdout=subprocess.PIPE, text=True, check=True).stdout
    return int(out.split()[0])


def grow(db, target_mb, datadir):
    """Double the bulk table until the datadir reaches target_mb (random, barely compressible text)."""
    if not db.sql("SHOW TABLES FROM app LIKE 'bulk'").strip():
        db.sql("CREATE TABLE app.bulk (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload TEXT) ENGINE=InnoDB;"
               "SET SESSION max_recursive_iterations = 10000; INSERT INTO app.bulk (payload) "
               "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000) "
               "SELECT REPEAT(SHA2(RAND(), 512), 7) FROM s")
    while datadir_mb(datadir) < target_mb:
        db.sql("INSERT INTO app.bulk (payload) SELECT REPEAT(SHA2(RAND(), 512), 7) FROM app.bulk LIMIT 200000")
    db.sql("FLUSH TABLES")
    return datadir_mb(datadir)


def settle(db, timeout=120):
    """Let the database go idle: InnoDB writes its dirty pages (the bulk load's and the write
    load's) to the table files for a while after the last commit, and a file written between two
    backups is read again by borg whatever its files cache says. Returns the seconds waited."""
    started = time.monotonic()
    db.sql("SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0; SET GLOBAL innodb_max_dirty_pages_pct = 0")
    while time.monotonic() - started < timeout:
        dirty = int(db.sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
                           " WHERE VARIABLE_NAME='INNODB_BUFFER_POOL_PAGES_DIRTY'").strip() or 0)
        if dirty == 0:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def freeze_samples(engine, backup, datadir, n):
    """Freeze + snapshot + release, n times, under the writer; the snapshot is removed each time."""
    windows, snaps = [], []
    for _ in range(n):
        snapset = SnapshotSet(backup, MOUNT_ROOT)
        try:
            volumes = volumes_for([str(datadir)])
            with engine.freeze() as freeze:
                started = time.monotonic()
                snapset.create(volumes)
                snaps.append(time.monotonic() - started)
            windows.append(freeze.window)
        finally:
            snapset.remove()
        time.sleep(0.5)
    return windows, snaps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=7)
    ap.add_argument("--small-mb", type=int, default=100)
    ap.add_argument("--large-mb", type=int, default=1024)
    args = ap.parse_args()
    load_start = os.getloadavg()
    if shutil.which("mkfs.btrfs") is None:
        log("btrfs-progs is not installed (apt-get install btrfs-progs): skipping")
        return 0

    root = scratch_dir("snapshot-")
    fs = Btrfs(root).start(size="%dM" % (args.large_mb * 3 + 1024))
    db = None
    result = {"started": datetime.now(timezone.utc).isoformat(), "targets": TARGETS, "sizes": {}}
    ok = True
    try:
        datadir = fs.subvolume("mariadb", owner="mysql")
        db = MariaDB(datadir, root / "run").install()
        db.start()
        db.sql("CREATE DATABASE app; CREATE TABLE app.load (id INT PRIMARY KEY, payload VARCHAR(64))")
        engine = MariaDBEngine(login_unix_socket=str(db.socket))

        for label, mb in (("small", args.small_mb), ("large", args.large_mb)):
            size = grow(db, mb, datadir)
            log(f"{label}: datadir {size} MB; {args.samples} freezes under a write load")
            db.sql("TRUNCATE app.load")
            writer = Writer(db, "app.load")
            writer.start()
            time.sleep(1)
            try:
                windows, snaps = freeze_samples(engine, "bench", datadir, args.samples)
            finally:
                writer.halt()
            if writer.error:
                raise writer.error
            result["sizes"][label] = {"datadir_mb": size, "freeze_window_s": summary(windows, 4),
                                      "snapshot_s": summary(snaps, 4), "rows_written": len(writer.committed_at)}
            log(f"{label}: freeze window median {statistics.median(windows):.3f} s "
                f"(min {min(windows):.3f}, max {max(windows):.3f}); {len(writer.committed_at)} rows written")

        waited = settle(db)
        log(f"files cache: two backups of the idle large database through the snapshot module"
            f" (its dirty pages written after {waited:.1f} s)")
        repo = root / "repo"
        borg_env = {"BORG_PASSPHRASE": SECRET, "BORG_BASE_DIR": str(root / "borgbase"),
                    "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        subprocess.run(["borg", "init", "--encryption", "repokey-blake2", str(repo)], env=borg_env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        args_module = {"repository": str(repo), "passphrase": SECRET, "borg_base_dir": str(root / "borgbase"),
                       "name": "bench", "archive_name": "bench-{now:%Y-%m-%dT%H:%M:%S}", "engine": "mariadb",
                       "login_unix_socket": str(db.socket), "mount_root": MOUNT_ROOT}
        runs = []
        for i in range(2):
            started = time.monotonic()
            r = run_module(root, "snapshot", args_module)
            wall = time.monotonic() - started
            runs.append({"borg_seconds": r["archive"]["duration"], "wall_seconds": round(wall, 2),
                         "nfiles": r["archive"]["stats"]["nfiles"],
                         "original_mb": round(r["archive"]["stats"]["original_size"] / 2 ** 20, 1),
                         "deduplicated_mb": round(r["archive"]["stats"]["deduplicated_size"] / 2 ** 20, 2),
                         "freeze_window_s": r["freeze"]["window"]})
            log(f"backup {i + 1}: borg {runs[-1]['borg_seconds']:.2f} s, wall {wall:.2f} s, "
                f"archive {runs[-1]['original_mb']} MB, {runs[-1]['deduplicated_mb']} MB new after dedup")
            time.sleep(1)
        ratio = runs[1]["borg_seconds"] / runs[0]["borg_seconds"]
        result["files_cache"] = {"first": runs[0], "second": runs[1], "second_vs_first": round(ratio, 3),
                                 "settled_s": round(waited, 1)}

        small = result["sizes"]["small"]["freeze_window_s"]["median"]
        large = result["sizes"]["large"]["freeze_window_s"]["median"]
        result["verdict"] = {
            "freeze_median_below_1s": small < TARGETS["freeze_median_seconds"]
            and large < TARGETS["freeze_median_seconds"],
            "freeze_large_vs_small": round(large / small, 2) if small else None,
            "second_backup_within_15_percent": ratio <= TARGETS["second_vs_first"],
        }
        log("freeze median small %.3f s, large %.3f s (target < 1 s): %s" % (
            small, large, "PASS" if result["verdict"]["freeze_median_below_1s"] else "MISS"))
        log("second backup %.1f%% of the first (target <= 15%%): %s" % (
            ratio * 100, "PASS" if result["verdict"]["second_backup_within_15_percent"] else "MISS"))
    except Exception as e:  # report, keep the cleanup below
        ok = False
        result["error"] = repr(e)
        log(f"FAILED: {e!r}")
    finally:
        if db:
            db.stop()
        fs.stop()
        shutil.rmtree(root, ignore_errors=True)
        try:
            Path(MOUNT_ROOT).rmdir()  # only when empty: every snapshot mount is gone
        except OSError:
            pass
    result["loadavg"] = {"start": load_start, "end": os.getloadavg()}
    log(load_span(load_start))
    out = write_json(f"snapshot-{utc_stamp()}.json", result)
    log(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
