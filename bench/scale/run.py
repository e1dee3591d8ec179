#!/usr/bin/env python3
"""Fleet-scale benchmark (issues 13 and 15): p50/p95 of every page and main API route at 1,000
servers, 5,000 backup jobs, 1,000,000 archives, a year of thinned server stats and 10,000,000
job-log lines, through HTTP against gunicorn; and one scheduler tick with 1,000 backup jobs due.

  .venv/bin/python bench/scale/run.py [--log-lines 10000000] [--requests 20] [--reseed]

The seed is written as TSV and loaded with LOAD DATA LOCAL INFILE into a throwaway database, then
kept as a gzipped mysqldump under /var/tmp/borgfleet-bench/ (BORGFLEET_BENCH_CACHE), keyed by the
recipe: the next run restores it and applies the migrations added since. A claimed Redis db.
"""
import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import CACHE, Service, exit_on_signals, load_span, pct, utc_stamp, write_json  # noqa: E402

SERVERS, BACKUP_SERVERS, POOLS_PER_SERVER = 1000, 20, 2
BACKUP_JOBS, ARCHIVES, JOBS = 5000, 1_000_000, 200_000
LONG_LOG = 100_000          # lines of the one job whose page is measured with a long log
TARGET_MS = 200
TICK_TARGET_S = 5.0
DUE_JOBS = 1000
RECIPE_VERSION = 2          # bump when the seed's shape changes


def job_uuid(n):
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def tsv(value):
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


class Writer:
    """One TSV file per table, loaded with LOAD DATA LOCAL INFILE."""

    def __init__(self, directory):
        self.dir, self.files = directory, {}

    def row(self, table, cols, values):
        if table not in self.files:
            self.files[table] = (cols, open(self.dir / f"{table}.tsv", "w"))
        self.files[table][1].write("\t".join(tsv(v) for v in values) + "\n")

    def load(self, db):
        with db.cursor() as cur:
            cur.execute("SET unique_checks=0, foreign_key_checks=0")
            for table, (cols, f) in self.files.items():
                f.close()
                t = time.monotonic()
                cur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} ({', '.join(cols)})", (f.name,))
                print(f"  loaded {table}: {cur.rowcount} rows in {time.monotonic() - t:.1f} s", flush=True)
            cur.execute("SET unique_checks=1, foreign_key_checks=1")
        db.commit()


def stats_sample(rng, sid, t):
    """One sample as collect_stats.yml stores it (server_facts' `system` dict)."""
    return json.dumps({
        "hostname": f"host-{sid:04d}", "fqdn": f"host-{sid:04d}.example.net", "architecture": "x86_64",
        "os": {"pretty_name": "Debian GNU/Linux 12 (bookworm)"}, "kernel": "6.1.0-28-amd64",
        "primary_ip": f"10.0.{sid // 250}.{sid % 250}",
        "cpu": {"model": "Intel Xeon", "cores": 4, "usage_percent": round(rng.random() * 100, 1),
                "load": [round(rng.random() * 4, 2), 1.0, 0.8]},
        "memory": {"total_bytes": 8 << 30, "used_bytes": 3 << 30, "used_percent": round(rng.random() * 100, 1),
                   "swap": {"total_bytes": 1 << 30, "used_bytes": 0}},
        "filesystems": [{"mountpoint": "/", "total_bytes": 100 << 30, "used_bytes": 40 << 30,
                         "free_bytes": 60 << 30, "used_percent": round(rng.random() * 100, 1)}],
        "uptime": {"seconds": 86400, "boot_time": "2026-01-01 00:00:00"}}, separators=(",", ":"))


def seed(db, args, now, tmp):
    """Write the whole fleet as TSV and load it."""
    rng = random.Random(1)
    w = Writer(tmp)
    t0 = time.monotonic()
    srv_cols = ("id", "name", "role", "address", "port", "ssh_user", "connection", "backup_server_id",
                "setup_status", "setup_at")
    for i in range(1, SERVERS + 1):
        bs = i <= BACKUP_SERVERS
        w.row("servers", srv_cols, (i, f"backup-{i:02d}" if bs else f"client-{i:04d}",
                                    "backup_server" if bs else "client", f"10.{i // 250}.{i % 250}.1", 22, "root",
                                    "ssh", None if bs else 1 + i % BACKUP_SERVERS, "ok", now - timedelta(days=30)))
    pool_id = {}
    for s in range(1, BACKUP_SERVERS + 1):
        for p in range(1, POOLS_PER_SERVER + 1):
            pid = len(pool_id) + 1
            pool_id[(s, p)] = pid
            w.row("storage_pools", ("id", "server_id", "name", "path"), (pid, s, f"pool{p}", f"/srv/borg/pool{p}"))
    clients = list(range(BACKUP_SERVERS + 1, SERVERS + 1))
    bj_client, bj_pool = {}, {}
    bj_cols = ("id", "client_id", "name", "paths_json", "exclude_json", "compression", "passphrase",
               "retention_json", "pool_id", "schedule", "timezone", "enabled", "next_run_at", "last_run_at")
    tomorrow3 = (now + timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    for b in range(1, BACKUP_JOBS + 1):
        c = clients[(b - 1) % len(clients)]
        bs = 1 + c % BACKUP_SERVERS
        bj_client[b], bj_pool[b] = c, (bs, 1 + b % POOLS_PER_SERVER)
        w.row("backup_jobs", bj_cols, (b, c, f"bj{b:05d}", '["/etc", "/home"]', '["*.tmp"]', "lz4", "unused-in-bench",
                                       '{"keep_daily": 7, "keep_weekly": 4}', pool_id[bj_pool[b]],
                                       f"{b % 60} {b % 24} * * *", "UTC", 1, tomorrow3, tomorrow3 - timedelta(days=1)))
        w.row("repositories", ("id", "backup_job_id", "client_id", "server_id", "location"),
              (b, b, c, bs, f"ssh://borg@backup-{bs:02d}/srv/borg/pool{bj_pool[b][1]}/client-{c:04d}/bj{b:05d}"))
    per_repo = ARCHIVES // BACKUP_JOBS
    a_cols = ("id", "repository_id", "name", "borg_id", "start_at", "end_at", "duration", "nfiles", "original_size",
              "compressed_size", "deduplicated_size", "created_at", "sort_client", "sort_server")
    aid = 0
    first_day = now - timedelta(days=per_repo)
    for d in range(per_repo):
        for b in range(1, BACKUP_JOBS + 1):
            aid += 1
            start = first_day + timedelta(days=d, seconds=b * 5)
            size = rng.randrange(1 << 20, 1 << 36)
            w.row("archives", a_cols, (aid, b, f"client-{bj_client[b]:04d}-bj{b:05d}-{start:%Y-%m-%dT%H:%M:%S}",
                                       hashlib.sha256(str(aid).encode()).hexdigest(), start,
                                       start + timedelta(seconds=60), 60.0, rng.randrange(100, 300000), size,
                                       size // 2, rng.randrange(0, size // 10), start + timedelta(seconds=61),
                                       # the names the list sorts by, as results.upsert_archive copies them
                                       f"client-{bj_client[b]:04d}/bj{b:05d}", f"backup-{bj_pool[b][0]:02d}"))
    print(f"  archives written ({time.monotonic() - t0:.0f} s)", flush=True)
    # Jobs over the last year, oldest first; one with a long log; the rest share the log lines.
    j_cols = ("id", "seq", "kind", "status", "server_id", "backup_job_id", "params_json", "created_by", "created_at",
              "started_at", "playbook_started_at", "finished_at", "worker", "rc", "error")
    log_cols = ("job_id", "n", "line")
    per_job = max(0, (args.log_lines - LONG_LOG) // (JOBS - 1))
    extra = max(0, (args.log_lines - LONG_LOG) - per_job * (JOBS - 1))
    span = timedelta(days=365).total_seconds()
    for n in range(1, JOBS + 1):
        b = 1 + (n - 1) % BACKUP_JOBS
        kind = "backup" if n % 10 else "prune"
        status = "failed" if n % 97 == 0 else "succeeded"
        if n > JOBS - 5:
            status = "running"
        created = now - timedelta(seconds=span * (JOBS - n) / JOBS + 60)
        jid = job_uuid(n)
        w.row("jobs", j_cols, (jid, n, kind, status, bj_client[b], b,
                               json.dumps({"limit": [f"client-{bj_client[b]:04d}"], "repository_id": b}),
                               None, created, created + timedelta(seconds=1), created + timedelta(seconds=2),
                               None if status == "running" else created + timedelta(seconds=90), "worker-1",
                               None if status == "running" else (2 if status == "failed" else 0),
                               "borg create failed: Connection closed by remote host" if status == "failed" else None))
        lines = LONG_LOG if n == JOBS - 100 else per_job + (1 if n <= extra else 0)
        for i in range(1, lines + 1):
            w.row("job_log", log_cols, (jid, i, f"TASK [borgfleet.backup.backup : create archive] line {i} "
                                                f"ok: [client-{bj_client[b]:04d}] => changed=false"))
    print(f"  jobs and log written ({time.monotonic() - t0:.0f} s)", flush=True)
    # server_stats thinned as fleet/facts.py thin_stats leaves them: 15 min for 2 days, hourly to a
    # month, daily to a year.
    times = [now - timedelta(minutes=15 * k) for k in range(2 * 96)]
    times += [now - timedelta(days=2, hours=h) for h in range(1, 29 * 24)]
    times += [now - timedelta(days=d) for d in range(31, 366)]
    times.sort()
    for sid in range(1, SERVERS + 1):
        for t in times:
            w.row("server_stats", ("server_id", "collected_at", "data_json"), (sid, t, stats_sample(rng, sid, t)))
    # Pools: samples (15 min for 2 days, daily for a year, as thin_samples keeps) and the latest
    # analysis with its repositories, as analyze_pools.yml reports them.
    ptimes = [now - timedelta(minutes=15 * k) for k in range(2 * 96)] + [now - timedelta(days=d) for d in range(2, 366)]
    ptimes.sort()
    for (s, p), pid in pool_id.items():
        for k, t in enumerate(ptimes):
            used = (1 << 40) + k * (1 << 30)
            w.row("pool_samples", ("server_id", "pool_name", "sampled_at", "total_bytes", "used_bytes", "free_bytes",
                                   "repositories_size_bytes"), (s, f"pool{p}", t, 8 << 40, used, (8 << 40) - used, used))
        repos = [{"client": f"client-{bj_client[b]:04d}", "backup": f"bj{b:05d}",
                  "path": f"/srv/borg/pool{p}/client-{bj_client[b]:04d}/bj{b:05d}", "exists": True,
                  "size_on_disk_bytes": 5 << 30,
                  "borg": {"stats": {"original_size": 20 << 30, "compressed_size": 10 << 30,
                                     "deduplicated_size": 5 << 30}, "archive_count": per_repo,
                           "last_archive": "x"}} for b in bj_pool if bj_pool[b] == (s, p)]
        used = (1 << 40) + len(ptimes) * (1 << 30)
        w.row("pool_latest", ("server_id", "pool_name", "sampled_at", "warn_percent", "data_json"),
              (s, f"pool{p}", now, 85, json.dumps({"path": f"/srv/borg/pool{p}", "exists": True, "fstype": "ext4",
                                                   "total_bytes": 8 << 40, "used_bytes": used,
                                                   "free_bytes": (8 << 40) - used,
                                                   "used_percent": round(100 * used / (8 << 40), 1),
                                                   "repositories_size_bytes": used, "repositories": repos})))
    print(f"  all written ({time.monotonic() - t0:.0f} s); loading", flush=True)
    w.load(db)
    print(f"  seeded in {time.monotonic() - t0:.0f} s", flush=True)


class Bench(Service):
    def __init__(self, args):
        super().__init__("scale")
        self.args = args
        recipe = f"{RECIPE_VERSION}:{SERVERS}:{BACKUP_JOBS}:{ARCHIVES}:{JOBS}:{args.log_lines}"
        self.dump = CACHE / f"scale-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}.sql.gz"

    def mysql_argv(self, tool):
        c = self.cfg
        return [tool, "-h", c["DB_HOST"], "-P", str(c["DB_PORT"]), "-u", c["DB_USER"]]

    def prepare(self):
        dbm = self.dbm
        now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
        if self.dump.exists() and not self.args.reseed:
            t = time.monotonic()
            with gzip.open(self.dump, "rb") as f:
                p = subprocess.Popen(self.mysql_argv("mysql") + [self.cfg["DB_NAME"]], stdin=subprocess.PIPE,
                                     env=dict(os.environ, MYSQL_PWD=self.cfg.get("DB_PASSWORD") or ""))
                shutil.copyfileobj(f, p.stdin, 1 << 20)
                p.stdin.close()
                assert p.wait() == 0, "restoring the cached seed failed"
            self.seeded = f"restored from {self.dump} in {time.monotonic() - t:.0f} s"
            self.db = dbm.connect(self.cfg)
            dbm.upgrade(self.db)   # migrations added since the dump
        else:
            self.db = dbm.connect(self.cfg)
            dbm.upgrade(self.db)
            import pymysql
            c = self.cfg
            loader = pymysql.connect(host=c["DB_HOST"], port=int(c["DB_PORT"]), user=c["DB_USER"],
                                     password=c.get("DB_PASSWORD") or "", database=c["DB_NAME"],
                                     local_infile=True, autocommit=False)
            t = time.monotonic()
            seed(loader, self.args, now, self.tmp)
            loader.close()
            from borgfleet_ui import backup_latest
            backup_latest.refresh_all(self.db)   # loaded around the service: each job's newest figures
            self.dump.parent.mkdir(parents=True, exist_ok=True)
            part = self.dump.with_suffix(".part")
            with gzip.open(part, "wb", compresslevel=1) as f:
                p = subprocess.Popen(self.mysql_argv("mysqldump") + ["--single-transaction", "--quick",
                                                                     self.cfg["DB_NAME"]],
                                     stdout=subprocess.PIPE, env=dict(os.environ, MYSQL_PWD=c.get("DB_PASSWORD") or ""))
                shutil.copyfileobj(p.stdout, f, 1 << 20)
                assert p.wait() == 0, "mysqldump failed"
            part.rename(self.dump)
            self.seeded = f"seeded in {time.monotonic() - t:.0f} s, cached as {self.dump}"
        # The seed's times are relative to when it was made: move them to now (stats, pools, jobs).
        shift = query_one(self.db, "SELECT TIMESTAMPDIFF(SECOND, MAX(collected_at), UTC_TIMESTAMP()) AS s"
                                   " FROM server_stats")["s"] or 0
        if shift > 600:
            for table, cols in (("server_stats", ("collected_at",)), ("pool_samples", ("sampled_at",)),
                                ("pool_latest", ("sampled_at",))):
                dbm.execute(self.db, f"UPDATE {table} SET " + ", ".join(f"{c}={c} + INTERVAL %s SECOND" for c in cols),
                            [shift] * len(cols))
        for table in ("archives", "jobs", "job_log", "server_stats", "backup_jobs"):
            dbm.execute(self.db, f"ANALYZE TABLE {table}")
        self.r = dbm.connect_redis(self.cfg)
        self.r.flushdb()
        self.admin_token()
        self.counts = {t: query_one(self.db, f"SELECT COUNT(*) AS n FROM {t}")["n"]
                       for t in ("servers", "backup_jobs", "archives", "jobs", "job_log", "server_stats",
                                 "pool_samples")}

    def get(self, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = resp.read()
        return time.perf_counter() - t, resp.status, body

    def routes(self):
        client = BACKUP_SERVERS + 1
        long_job = job_uuid(JOBS - 100)
        deep = ARCHIVES // 2
        out = [("dashboard", "/"), ("servers", "/servers"), ("servers sorted by name", "/servers?sort=name"),
               ("server page (client)", f"/servers/{client}"),
               ("server page (client, month)", f"/servers/{client}?range=month"),
               ("server page (backup server)", "/servers/1"),
               ("backup jobs", "/backup-jobs"), ("backup jobs sorted by last run", "/backup-jobs?sort=last_run"),
               ("backup job page", "/backup-jobs/2500"),
               ("archives", "/archives"), ("archives deep page", f"/archives?before={deep}")]
        from borgfleet_ui.fleet.archives import LISTING as A
        for s in A.sorts:
            out.append((f"archives by {s}", f"/archives?sort={s}"))
            out.append((f"archives by {s}, deep", f"/archives?sort={s}&before={deep}"))
        out += [("archives of a backup job", "/archives?backup_job_id=2500"),
                ("jobs", "/jobs"), ("jobs deep page", f"/jobs?before={JOBS // 2}"),
                ("jobs failed", "/jobs?status=failed"), ("jobs of a backup job", "/jobs?backup_job_id=2500"),
                ("job page, long log", f"/jobs/{long_job}"), ("pools", "/pools"), ("workers", "/workers"),
                ("recovery", "/recovery"), ("restore start", "/restore"), ("/metrics", "/metrics"),
                ("api servers", "/api/servers"), ("api server", f"/api/servers/{client}"),
                ("api stats history year", f"/api/servers/{client}/stats/history?range=year"),
                ("api backup jobs", "/api/backup-jobs"), ("api backup job", "/api/backup-jobs/2500"),
                ("api archives", "/api/archives"), ("api archives deep", f"/api/archives?before={deep}"),
                ("api archives by client, deep", f"/api/archives?sort=client&before={deep}"),
                ("api jobs", "/api/jobs"), ("api job", f"/api/jobs/{long_job}"),
                ("api job log (first 1000)", f"/api/jobs/{long_job}/log"),
                ("api job log (deep)", f"/api/jobs/{long_job}/log?after={LONG_LOG - 500}"),
                ("api pool usage", "/api/storage-pools/usage"), ("api storage pools", "/api/storage-pools"),
                ("api workers", "/api/workers"), ("api recovery sessions", "/api/recovery-sessions")]
        return out

    def measure(self, only=()):
        rows = []
        for name, path in self.routes():
            if only and not any(w in name for w in only):
                continue
            times = []
            try:
                for i in range(self.args.requests + 2):
                    dt, status, _ = self.get(path)
                    if i >= 2:   # the first two warm the two gunicorn workers
                        times.append(dt)
                    if dt > 2 and len(times) >= 3:   # far off target: three samples say enough
                        break
            except urllib.error.HTTPError as e:
                rows.append({"name": name, "path": path, "error": f"HTTP {e.code}"})
                print(f"{name:38s} {path}: HTTP {e.code}", flush=True)
                log = (self.tmp / "web.log").read_text().splitlines()
                print("  web log: " + "\n  ".join(log[-6:]), flush=True)
                continue
            p50, p95 = pct(times, 50) * 1000, pct(times, 95) * 1000
            rows.append({"name": name, "path": path, "p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                         "pass": p95 < TARGET_MS})
            print(f"{name:38s} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  {p95 / TARGET_MS:6.2f}x of {TARGET_MS} ms"
                  f"  {'PASS' if p95 < TARGET_MS else 'MISS'}", flush=True)
        return rows

    def scheduler_tick(self):
        """1,000 backup jobs due in the same minute: one Scheduler.tick() enqueues them all."""
        from borgfleet_ui import db as dbm
        from borgfleet_ui.scheduler import Scheduler
        due = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0) - timedelta(seconds=5)
        dbm.execute(self.db, "UPDATE backup_jobs SET next_run_at=%s WHERE id <= %s", (due, DUE_JOBS))
        before = query_one(self.db, "SELECT COUNT(*) AS n FROM jobs")["n"]
        s = Scheduler(self.cfg)
        s.hold_lock()
        t = time.perf_counter()
        s.tick()
        dt = time.perf_counter() - t
        s.release()
        queued = query_one(self.db, "SELECT COUNT(*) AS n FROM jobs WHERE status='queued' AND kind='backup'"
                                    " AND backup_job_id <= %s", (DUE_JOBS,))["n"]
        total = query_one(self.db, "SELECT COUNT(*) AS n FROM jobs")["n"] - before
        print(f"scheduler tick, {DUE_JOBS} backup jobs due: {dt:.2f} s, {queued} queued ({total} job rows added);"
              f" {dt / TICK_TARGET_S:.2f}x of {TICK_TARGET_S} s  {'PASS' if dt < TICK_TARGET_S and queued == DUE_JOBS else 'MISS'}",
              flush=True)
        return {"due": DUE_JOBS, "seconds": round(dt, 3), "queued": queued,
                "pass": dt < TICK_TARGET_S and queued == DUE_JOBS}


    def inventory_start(self, runs=5):
        """What the fleet's inventory adds to every job's start: ansible-playbook with a play of no
        task over the service's inventory source (borgfleet.backup.fleet: every server, pool and
        backup job, each passphrase decrypted), against the same play over a one-host inventory,
        run in turn."""
        from borgfleet_ui import secret_store
        from borgfleet_ui.jobs import write_inventory
        # The seed's passphrases are placeholders: one token of this run's key for all (the same
        # decryption a real fleet's passphrases cost).
        self.dbm.execute(self.db, "UPDATE backup_jobs SET passphrase=%s",
                         (secret_store.encrypt(self.cfg, "bench-passphrase"),))
        source = write_inventory(self.cfg, str(self.tmp / "inventory"))
        if self.cfg.get("DB_PASSWORD"):
            pw = self.tmp / "inventory" / "db-password"
            pw.write_text(self.cfg["DB_PASSWORD"])
            pw.chmod(0o600)
            spec = json.loads(Path(source).read_text())
            spec["db_password_file"] = str(pw)
            Path(source).write_text(json.dumps(spec))
        play = self.tmp / "no-task.yml"
        play.write_text("- hosts: localhost\n  gather_facts: false\n  tasks: []\n")
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), str(play)]
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))

        def run(inventory):
            t = time.perf_counter()
            subprocess.run(argv + ["-i", inventory], env=env, cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            return time.perf_counter() - t
        fleet, one = [], []
        for _ in range(runs):
            fleet.append(run(source))
            one.append(run("localhost,"))
        f, o = statistics.median(fleet), statistics.median(one)
        servers = self.counts["servers"]
        print(f"a run's start, play of no task: {f:.2f} s over the fleet inventory ({servers:,} servers,"
              f" {self.counts['backup_jobs']:,} backup jobs), {o:.2f} s over one host: +{f - o:.2f} s"
              f" (median of {runs})", flush=True)
        return {"servers": servers, "backup_jobs": self.counts["backup_jobs"], "runs": runs,
                "fleet_s": [round(x, 3) for x in fleet], "one_host_s": [round(x, 3) for x in one],
                "fleet_median_s": round(f, 3), "one_host_median_s": round(o, 3)}


def query_one(db, sql, args=()):
    from borgfleet_ui.db import query
    return query(db, sql, args, one=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log-lines", type=int, default=10_000_000)
    ap.add_argument("--requests", type=int, default=20, help="measured requests per route")
    ap.add_argument("--reseed", action="store_true", help="seed again even when a cached dump exists")
    ap.add_argument("--only", default="",
                    help="comma-separated parts of route names to measure (e.g. 'dashboard,pools'); 'tick' for"
                         " the scheduler tick alone, 'inventory' for a run's start over the fleet's"
                         " inventory, 'none' to seed and stop")
    ap.add_argument("--keep-db", action="store_true",
                    help="leave the database after the run, to profile a route against it (drop it when done)")
    args = ap.parse_args()
    # A TERM (or ^C) still stops gunicorn and drops the throwaway database.
    exit_on_signals()
    b = Bench(args)
    b.keep_db = args.keep_db
    out = {"log_lines": args.log_lines, "load": os.getloadavg()}
    try:
        b.prepare()
        print(f"fleet: {b.seeded}; rows: " + ", ".join(f"{k} {v:,}" for k, v in b.counts.items()), flush=True)
        out["rows"] = b.counts
        only = [w.strip() for w in args.only.split(",") if w.strip()]
        out["routes"] = []
        if only and any(w not in ("tick", "inventory", "none") for w in only):
            b.start_web()
            out["routes"] = b.measure(only)
        elif not only:
            b.start_web()
            out["routes"] = b.measure()
        if not only or "tick" in only:
            out["scheduler"] = b.scheduler_tick()
        if not only or "inventory" in only:
            out["inventory"] = b.inventory_start()
    finally:
        b.close()
    missed = [r["name"] for r in out["routes"] if not r.get("pass")]
    print(f"{len(out['routes']) - len(missed)}/{len(out['routes'])} routes p95 < {TARGET_MS} ms"
          + (f"; missed: {', '.join(missed)}" if missed else "") + f"; {load_span(out['load'])}")
    out["loadavg"] = {"start": out["load"], "end": os.getloadavg()}
    write_json(f"scale-{utc_stamp()}.json", out)


if __name__ == "__main__":
    main()
