#!/usr/bin/env python3
"""Service benchmark (issue 3): queue latency, scheduler lateness, archives list latency.

Runs against the local MariaDB/Redis with a throwaway database and a claimed Redis db, a real
gunicorn web app, real RQ worker and scheduler processes, and real playbook runs (a client
with local repositories). Prints the figures with their targets; writes bench/output/service.json.

  .venv/bin/python bench/service/run.py [--runs 10] [--due-jobs 50] [--archives 100000]
"""
import argparse
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import Service, load_span, pct, write_json  # noqa: E402


class Bench(Service):
    def __init__(self, args):
        super().__init__("service")
        self.args = args

    def start(self):
        self.open()
        self.admin_token()
        self.start_web()
        self.start_worker()
        data = self.tmp / "data"
        data.mkdir()
        (data / "f.txt").write_text("bench\n" * 1000)
        self.client = self.call("POST", "/api/servers", {
            "name": "bench-client", "role": "client", "connection": "local",
            "local_pool_path": str(self.tmp / "repos"), "vars": {"borgfleet_borg_base_dir": str(self.tmp / "base")}})
        self.bj = self.call("POST", "/api/backup-jobs", {"client_id": self.client["id"], "name": "data",
                                                         "paths": [str(data)], "passphrase": "bench-passphrase"})
        job = self.wait_job(self.call("POST", f"/api/servers/{self.client['id']}/setup")["job_id"])
        assert job["status"] == "succeeded", job["error"]
        self.wait_idle()

    def wait_idle(self, timeout=300):
        """Until no job is queued or running: a backup's follow-up jobs (the archive index, stats)
        take the one worker after it, and the next Run now must find the worker idle."""
        final = tuple(self.q.FINAL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.dbm.query(self.db, "SELECT COUNT(*) AS n FROM jobs WHERE status NOT IN (%s)"
                                  % ", ".join(["%s"] * len(final)), final, one=True)["n"]
            if not left:
                time.sleep(0.5)   # the worker is back on its blocking wait
                return
            time.sleep(0.1)
        raise SystemExit("the worker did not become idle")

    def queue_latency(self):
        pickup, playbook, total = [], [], []
        for _ in range(self.args.runs):
            job = self.wait_job(self.call("POST", f"/api/backup-jobs/{self.bj['id']}/run")["job_id"])
            assert job["status"] == "succeeded", job["error"]
            pickup.append((job["started_at"] - job["created_at"]).total_seconds())
            playbook.append((job["playbook_started_at"] - job["created_at"]).total_seconds())
            total.append((job["finished_at"] - job["created_at"]).total_seconds())
            self.wait_idle()
        return {"runs": len(pickup), "enqueue_to_worker_start_p50_s": statistics.median(pickup),
                "enqueue_to_worker_start_max_s": max(pickup),
                "enqueue_to_playbook_start_p50_s": statistics.median(playbook),
                "enqueue_to_playbook_start_max_s": max(playbook),
                "whole_backup_job_p50_s": statistics.median(total)}

    def scheduler_lateness(self):
        self.stop("worker")   # the due jobs only need to be queued, not run
        n = self.args.due_jobs
        ids = []
        for i in range(n):
            bj = self.call("POST", "/api/backup-jobs", {"client_id": self.client["id"], "name": f"due{i:03d}",
                                                        "paths": ["/etc/hostname"], "passphrase": "bench-passphrase",
                                                        "schedule": "0 3 * * *"})
            ids.append(bj["id"])
        self.spawn("scheduler", [sys.executable, "-m", "borgfleet_ui", "scheduler"])
        time.sleep(3)
        # Due times are whole seconds, like cron's: 5 jobs due at each of 10 consecutive seconds.
        base = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0) + timedelta(seconds=3)
        due = {}
        for i, bid in enumerate(ids):
            t = base + timedelta(seconds=i // 5)
            due[bid] = t
            self.dbm.execute(self.db, "UPDATE backup_jobs SET next_run_at=%s WHERE id=%s", (t, bid))
        self.q.wake_scheduler(self.r)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = self.dbm.query(self.db, "SELECT backup_job_id, MIN(created_at) AS t FROM jobs WHERE kind='backup'"
                                           " AND backup_job_id IN (" + ",".join(["%s"] * n) + ") GROUP BY backup_job_id",
                                  ids)
            if len(rows) == n:
                break
            time.sleep(0.2)
        late = [(r["t"] - due[r["backup_job_id"]]).total_seconds() for r in rows]
        self.stop("scheduler")
        return {"due_jobs": n, "fired": len(late), "lateness_p50_s": statistics.median(late),
                "lateness_p95_s": pct(late, 95), "lateness_max_s": max(late), "early": sum(1 for x in late if x < 0)}

    def archives_latency(self):
        repos = [r["id"] for r in self.dbm.query(self.db, "SELECT id FROM repositories")]
        n = self.args.archives
        t0 = time.monotonic()
        with self.db.cursor() as cur:
            for start in range(0, n, 5000):
                cur.executemany("INSERT INTO archives (repository_id, name, start_at, nfiles, original_size,"
                                " compressed_size, deduplicated_size) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                                [(repos[i % len(repos)], f"bench-{i:07d}", datetime(2026, 1, 1) + timedelta(minutes=i),
                                  i, i * 1000, i * 500, i * 10) for i in range(start, min(n, start + 5000))])
        self.dbm.execute(self.db, "ANALYZE TABLE archives")
        fill = time.monotonic() - t0
        total = self.dbm.query(self.db, "SELECT COUNT(*) AS n FROM archives", one=True)["n"]
        max_id = self.dbm.query(self.db, "SELECT MAX(id) AS m FROM archives", one=True)["m"]
        first, deep = [], []
        for _ in range(5):   # warm up connections and caches
            self.call("GET", "/api/archives?limit=50")
        for _ in range(200):
            t = time.perf_counter()
            page = self.call("GET", "/api/archives?limit=50")
            first.append(time.perf_counter() - t)
        assert len(page["items"]) == 50 and page["items"][0]["client_name"] == "bench-client"
        for _ in range(200):
            before = random.randint(100, max_id)
            t = time.perf_counter()
            self.call("GET", f"/api/archives?limit=50&before={before}")
            deep.append(time.perf_counter() - t)
        for _ in range(100):
            t = time.perf_counter()
            self.call("GET", f"/api/archives?limit=50&backup_job_id={self.bj['id']}&before={random.randint(100, max_id)}")
            deep.append(time.perf_counter() - t)
        ms = lambda v: round(v * 1000, 2)
        return {"archives": total, "fill_s": round(fill, 1),
                "first_page_p50_ms": ms(pct(first, 50)), "first_page_p95_ms": ms(pct(first, 95)),
                "cursor_pages_p50_ms": ms(pct(deep, 50)), "cursor_pages_p95_ms": ms(pct(deep, 95))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--due-jobs", type=int, default=50)
    ap.add_argument("--archives", type=int, default=100_000)
    args = ap.parse_args()
    load_start = os.getloadavg()
    b = Bench(args)
    out = {}
    try:
        b.start()
        out["queue"] = b.queue_latency()
        out["scheduler"] = b.scheduler_lateness()
        out["archives"] = b.archives_latency()
    finally:
        b.close()
    q, s, a = out["queue"], out["scheduler"], out["archives"]
    print(f"queue latency ({q['runs']} Run now, idle worker): enqueue->worker p50 {q['enqueue_to_worker_start_p50_s']:.3f} s"
          f" (max {q['enqueue_to_worker_start_max_s']:.3f}); enqueue->playbook start p50"
          f" {q['enqueue_to_playbook_start_p50_s']:.3f} s (max {q['enqueue_to_playbook_start_max_s']:.3f}); target < 0.5 s")
    print(f"scheduler lateness ({s['fired']}/{s['due_jobs']} due jobs): p50 {s['lateness_p50_s']:.3f} s,"
          f" p95 {s['lateness_p95_s']:.3f} s, max {s['lateness_max_s']:.3f} s, early {s['early']}; target < 1 s")
    print(f"GET /api/archives with {a['archives']} archives: first page p50 {a['first_page_p50_ms']} ms"
          f" p95 {a['first_page_p95_ms']} ms; cursor pages p50 {a['cursor_pages_p50_ms']} ms"
          f" p95 {a['cursor_pages_p95_ms']} ms; target p95 < 50 ms")
    print(load_span(load_start))
    out["loadavg"] = {"start": load_start, "end": os.getloadavg()}
    write_json("service.json", out)


if __name__ == "__main__":
    main()
