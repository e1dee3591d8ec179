"""Benchmark: many clients at once (issue 15). One backup server and --clients clients, each a
real sshd on loopback with a small tree of its own.

    .venv/bin/python bench/fleet [--clients 20] [--workers 4] [--rounds 1] [--compare-forks 5]

1. Playbook: setup.yml, one initial fleet backup (untimed), then per round: every client's own
   `backup.yml --limit <client>` one after the other, then ONE `backup.yml` over the whole fleet
   (and the same run with ANSIBLE_FORKS=--compare-forks, the peer that shows what forks buys).
   Target: fleet wall time <= 1.3x the slowest single client's own run.
2. Service: a throwaway database and Redis db, --workers RQ workers, the same fleet registered
   through the API (the backup jobs land in the repositories the playbook made) and every
   backup job's Run now posted at once: backups per hour, enqueue-to-start p50/p95.
3. Read back: every client's newest archive listed by borg against its tree and its newest change,
   and the archive count per repository. A failure exits 1; a missed target does not.
Writes bench/output/fleet-<time>.json.
"""
import argparse
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))                     # tests.lib: the loopback sshd fleet
sys.path.insert(1, str(REPO / "tests" / "ui"))    # uilib: workers and Redis db claims as the tests run them
sys.path.insert(2, str(Path(__file__).resolve().parent))

import trees  # noqa: E402
from bench import common  # noqa: E402
from bench.common import (SshFleet, environ, exit_on_signals, load_span, log, pct,  # noqa: E402
                          utc_stamp, write_json)
from tests.lib import fleet as fl  # noqa: E402
from tests.lib.playbook import run_playbook  # noqa: E402

TARGET = 1.3
TIMEOUT = 3600


class Fleet(SshFleet):
    """The sshds, the inventory and the playbook runs."""

    def __init__(self, n, seed):
        super().__init__("fleet-")   # first: ansible, the clients' sshds and borg are all counted
        self.trees = trees.client_trees(n, seed, log=log)
        self.change_no = 0

    def start(self):
        self.start_controller("borgfleet-bench-fleet")
        sd = self.root / "server"
        sd.mkdir(mode=0o755)
        self.server = fl.Server(name="fleetserver", sshd=self.sshd("fleetserver", "127.0.3.1"), dir=sd,
                                user=f"bff{secrets.token_hex(3)}", pools=[{"name": "main", "path": str(sd / "pool")}])
        self.cpu.join("server", self.server.sshd.proc.pid)  # borg serve is counted as server CPU
        self.clients = []
        for i, tree in enumerate(self.trees):
            name = f"fleet{i:02d}"
            cd = self.root / name
            cd.mkdir(mode=0o700)
            (cd / "changes").mkdir()
            # The cached tree is read only; each run's change is written under the client's own dir.
            self.clients.append(fl.Client(name=name, sshd=self.sshd(name, f"127.0.3.{10 + i}"), dir=cd,
                                          server=self.server,
                                          backups=[{"name": "data", "paths": [str(tree), str(cd / "changes")],
                                                    "compression": "lz4", "passphrase": fl.passphrase()}]))
        self.inventory = fl.write_inventory(self.root / "inventory.yml",
                                            fl.inventory(self.controller, [self.server], self.clients))

    def playbook(self, name, limit=None, env=None):
        """Run one playbook; its wall seconds (self.last_cpu: its CPU seconds, every process of
        the run on both sides, or None). Raises if it failed."""
        cp = self.control_dir()
        with environ(env):
            os.sync()  # the previous run's dirty pages are flushed untimed
            cpu_before, t0 = self.cpu.sample(), time.monotonic()
            result = run_playbook(name, self.inventory, limit=limit, control_dir=cp, timeout=TIMEOUT)
            seconds = time.monotonic() - t0
            cpu = self.cpu.delta(cpu_before, self.cpu.sample())
            self.last_cpu = sum(cpu.values()) if cpu else None
        if result.rc != 0:
            raise RuntimeError(f"{name} (limit {limit}) failed:\n{result.output[-5000:]}")
        return seconds

    def change(self):
        """A small change on every client (a new file), so every backup has something to store."""
        self.change_no += 1
        for c in self.clients:
            (c.dir / "changes" / f"change-{self.change_no:03d}.txt").write_bytes(secrets.token_bytes(64 << 10))

    def repo(self, client):
        return client.repo("data", self.controller)


class Service(common.Service):
    """The service on a throwaway database and a claimed Redis db, with real RQ workers (run as the
    tests run them), called in process through Flask's test client."""

    def __init__(self, fleet, workers):
        super().__init__("fleet", tmp_dir=fleet.root)
        from uilib import WorkerProc
        from borgfleet_ui import create_app
        self.fleet, self.n_workers, self.WorkerProc = fleet, workers, WorkerProc
        self.workers = []
        self.open()
        self.headers = {"Authorization": f"Bearer {self.admin_token()}"}
        self.http = create_app({"TESTING": True}).test_client()

    def call(self, method, path, body=None):
        resp = getattr(self.http, method)(path, headers=self.headers, json=body)
        if resp.status_code >= 300:
            raise RuntimeError(f"{method.upper()} {path}: {resp.status_code} {resp.get_data(as_text=True)[:500]}")
        return resp.json

    def register(self):
        """The backup server, the clients and one backup job each (same name and passphrase as the
        playbook's, so the same repository), through the API."""
        f = self.fleet
        common = {k: v for k, v in fl.inventory(f.controller, [], [])["all"]["vars"].items() if k != "ansible_user"}

        def host_vars(host):
            hv = {k: v for k, v in host.hostvars().items()
                  if k not in ("ansible_host", "ansible_port", "borgfleet_storage_pools", "borgfleet_backups",
                               "borgfleet_backup_server")}
            return {**hv, **common}
        s = f.server
        bs = self.call("post", "/api/servers", {"name": s.name, "role": "backup_server", "address": s.sshd.address,
                                                "port": s.sshd.port, "ssh_user": "root", "vars": host_vars(s),
                                                "pools": s.pools})
        self.backup_jobs = {}
        for c in f.clients:
            cl = self.call("post", "/api/servers", {"name": c.name, "role": "client", "address": c.sshd.address,
                                                    "port": c.sshd.port, "ssh_user": "root",
                                                    "backup_server_id": bs["id"], "vars": host_vars(c)})
            b = c.backup("data")
            bj = self.call("post", "/api/backup-jobs", {"client_id": cl["id"], "name": b["name"], "paths": b["paths"],
                                                         "compression": b["compression"], "passphrase": b["passphrase"]})
            if bj["location"] != c.repo_url("data"):
                raise RuntimeError(f"{c.name}: the service's repository {bj['location']} is not {c.repo_url('data')}")
            self.backup_jobs[c.name] = bj["id"]

    def start_workers(self):
        from rq import Worker
        self.workers = [self.WorkerProc(i + 1, self.tmp) for i in range(self.n_workers)]
        deadline = time.monotonic() + 60
        while len(Worker.all(connection=self.r)) < self.n_workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(Worker.all(connection=self.r))} of {self.n_workers} workers started")
            time.sleep(0.2)

    def run_all(self):
        """Run now for every backup job at once; waits for all; the finished job rows."""
        posted = time.monotonic()
        ids = [self.call("post", f"/api/backup-jobs/{bid}/run")["job_id"] for bid in self.backup_jobs.values()]
        post_seconds = time.monotonic() - posted
        deadline = time.monotonic() + TIMEOUT
        while True:
            rows = self.dbm.query(self.db, "SELECT * FROM jobs WHERE id IN (" + ",".join(["%s"] * len(ids)) + ")", ids)
            if all(r["status"] in self.q.FINAL for r in rows) and len(rows) == len(ids):
                return rows, post_seconds
            if time.monotonic() > deadline:
                raise RuntimeError("the service's backups did not finish")
            time.sleep(0.5)

    def close(self):
        try:
            for w in self.workers:
                w.stop()
        finally:
            super().close()


def service_figures(rows):
    failed = [(r["id"], r["status"], r["error"]) for r in rows if r["status"] != "succeeded"]
    if failed:
        raise RuntimeError(f"service backups failed: {failed}")
    start = [(r["started_at"] - r["created_at"]).total_seconds() for r in rows]
    playbook = [(r["playbook_started_at"] - r["created_at"]).total_seconds() for r in rows]
    took = [(r["finished_at"] - r["started_at"]).total_seconds() for r in rows]
    span = (max(r["finished_at"] for r in rows) - min(r["created_at"] for r in rows)).total_seconds()
    return {"backups": len(rows), "span_s": span, "backups_per_hour": len(rows) * 3600 / span,
            "enqueue_to_start_p50_s": pct(start, 50), "enqueue_to_start_p95_s": pct(start, 95),
            "enqueue_to_start_max_s": max(start),
            "enqueue_to_playbook_p50_s": pct(playbook, 50), "enqueue_to_playbook_p95_s": pct(playbook, 95),
            "job_seconds_p50": pct(took, 50), "job_seconds_max": max(took)}


def read_back(fleet, archives_expected):
    """Problems ([] = none): each client's newest archive holds its tree (paths and sizes) and
    its newest change; each repository holds archives_expected archives."""
    problems, listed = [], 0
    for c, tree in zip(fleet.clients, fleet.trees):
        repo = fleet.repo(c)
        archives = repo.archive_names()
        if len(archives) != archives_expected:
            problems.append(f"{c.name}: {len(archives)} archives, expected {archives_expected}")
        newest = archives[-1]
        stored = {}
        for line in repo.run("list", "--json-lines", repo.archive(newest), timeout=600).stdout.splitlines():
            item = json.loads(line)
            if item["type"] == "-":
                stored[item["path"]] = item["size"]
        want = {f"{str(tree).lstrip('/')}/{p}": s for p, s in trees.listing(tree).items()}
        last = c.dir / "changes" / f"change-{fleet.change_no:03d}.txt"
        want[str(last).lstrip("/")] = last.stat().st_size
        bad = [p for p, s in want.items() if stored.get(p) != s]
        if bad:
            problems.append(f"{c.name} {newest}: {len(bad)} files missing or of another size, e.g. {bad[:3]}")
        listed += len(stored)
    return problems, listed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1, help="single-client runs + fleet run, repeated")
    ap.add_argument("--compare-forks", default="5,10",
                    help="also run the fleet with ANSIBLE_FORKS=N for each N (5: ansible's default, 10: ours"
                         " before this benchmark); '' skips")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-service", action="store_true")
    args = ap.parse_args(argv)
    args.compare_forks = [int(n) for n in args.compare_forks.split(",") if n.strip()]
    exit_on_signals()
    os.environ["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    load_start = os.getloadavg()
    log(f"load average {load_start[0]:.1f} on {os.cpu_count()} CPUs; trees ...")
    fleet, service, out = Fleet(args.clients, args.seed), None, {"rounds": []}
    archives = 0
    try:
        sizes = [sum(trees.listing(t).values()) for t in fleet.trees]
        log(f"{len(sizes)} client trees, {min(sizes) / 1e6:.0f}-{max(sizes) / 1e6:.0f} MB each,"
            f" {sum(sizes) / 1e6:.0f} MB in all; starting {args.clients + 1} sshds, setup.yml ...")
        fleet.start()
        out["setup_s"] = fleet.playbook("setup.yml")
        fleet.change()
        out["initial_fleet_s"] = fleet.playbook("backup.yml")
        archives += 1
        log(f"setup {out['setup_s']:.1f} s, initial fleet backup {out['initial_fleet_s']:.1f} s")
        for k in range(args.rounds):
            fleet.change()
            single, single_cpu = {}, []
            for c in fleet.clients:
                single[c.name] = fleet.playbook("backup.yml", limit=c.name)
                single_cpu.append(fleet.last_cpu)
            archives += 1
            fleet.change()
            fleet_s = fleet.playbook("backup.yml")
            archives += 1
            rnd = {"single_s": single, "fleet_s": fleet_s, "fleet_cpu_s": fleet.last_cpu,
                   "single_cpu_s": None if None in single_cpu else sum(single_cpu)}
            rnd["fleet_forks_s"] = {}
            for forks in args.compare_forks:
                fleet.change()
                rnd["fleet_forks_s"][forks] = fleet.playbook("backup.yml", env={"ANSIBLE_FORKS": str(forks)})
                archives += 1
            slowest = max(single.values())
            rnd.update(slowest_single_s=slowest, median_single_s=statistics.median(single.values()),
                       sum_single_s=sum(single.values()), ratio=fleet_s / slowest)
            out["rounds"].append(rnd)
            log(f"round {k + 1}: singles median {rnd['median_single_s']:.1f} s, slowest {slowest:.1f} s,"
                f" sum {rnd['sum_single_s']:.1f} s; fleet {fleet_s:.1f} s = {rnd['ratio']:.2f}x the slowest"
                + "".join(f"; fleet with forks={k} {v:.1f} s" for k, v in rnd["fleet_forks_s"].items()))
        if not args.skip_service:
            fleet.change()
            service = Service(fleet, args.workers)
            service.register()
            service.start_workers()
            log(f"service: {args.clients} backup jobs, {args.workers} workers; Run now for all ...")
            rows, post_s = service.run_all()
            archives += 1
            out["service"] = {**service_figures(rows), "workers": args.workers, "post_all_s": post_s}
            s = out["service"]
            log(f"service: {s['backups']} backups in {s['span_s']:.1f} s")
        problems, listed = read_back(fleet, archives)
        out["read_back"] = {"problems": problems, "files_listed": listed, "archives_per_repository": archives}
    finally:
        if service is not None:
            service.close()
        fleet.close()
    out["loadavg"] = {"start": load_start, "end": os.getloadavg()}
    out.update(clients=args.clients, tree_mb=[round(s / 1e6, 1) for s in sizes])
    print(table(out, args))
    path = write_json(f"fleet-{utc_stamp()}.json", out)
    print(f"results: {path}")
    if problems:
        print("READ BACK FAILED:\n  " + "\n  ".join(problems))
        return 1
    return 0


def table(out, args):
    n = out["clients"]
    lines = [f"\nfleet of {n} clients (trees {min(out['tree_mb']):.0f}-{max(out['tree_mb']):.0f} MB), one backup server,"
             f" incremental backups; wall seconds", "",
             "| round | single client, median | slowest single | all singles in a row | ONE fleet run |"
             f" fleet / slowest (target <= {TARGET}) |" + "".join(f" fleet, forks={k} |" for k in args.compare_forks),
             "|---|---|---|---|---|---|" + "---|" * len(args.compare_forks)]
    for k, r in enumerate(out["rounds"], 1):
        verdict = "PASS" if r["ratio"] <= TARGET else "MISS"
        lines.append(f"| {k} | {r['median_single_s']:.1f} | {r['slowest_single_s']:.1f} | {r['sum_single_s']:.1f} |"
                     f" {r['fleet_s']:.1f} | {r['ratio']:.2f}x {verdict} |"
                     + "".join(f" {v:.1f} ({v / r['slowest_single_s']:.2f}x) |" for v in r["fleet_forks_s"].values()))
    for k, r in enumerate(out["rounds"], 1):
        if r["fleet_cpu_s"] is not None and r["single_cpu_s"] is not None:
            floor = r["fleet_cpu_s"] / os.cpu_count()
            lines.append(f"round {k} CPU seconds (both sides, every process): all singles {r['single_cpu_s']:.1f},"
                         f" the fleet run {r['fleet_cpu_s']:.1f}, i.e. {floor:.1f} s of wall time at the very least on"
                         f" {os.cpu_count()} CPUs = {floor / r['slowest_single_s']:.2f}x the slowest single run")
    if "service" in out:
        s = out["service"]
        lines += ["", f"service, {s['workers']} workers, Run now for all {s['backups']} backup jobs at once"
                      f" (posted in {s['post_all_s']:.1f} s):",
                  f"  {s['backups_per_hour']:.0f} backups per hour ({s['backups']} in {s['span_s']:.1f} s,"
                  f" one job p50 {s['job_seconds_p50']:.1f} s, max {s['job_seconds_max']:.1f} s)",
                  f"  enqueue -> worker start p50 {s['enqueue_to_start_p50_s']:.1f} s, p95 {s['enqueue_to_start_p95_s']:.1f} s"
                  f" (max {s['enqueue_to_start_max_s']:.1f}); enqueue -> playbook start p50"
                  f" {s['enqueue_to_playbook_p50_s']:.1f} s, p95 {s['enqueue_to_playbook_p95_s']:.1f} s"]
    rb = out["read_back"]
    lines += ["", f"read back: {n} newest archives listed by borg ({rb['files_listed']} files),"
                  f" {rb['archives_per_repository']} archives per repository: "
                  + ("OK" if not rb["problems"] else f"{len(rb['problems'])} PROBLEMS"),
              load_span(out["loadavg"]["start"], out["loadavg"]["end"])]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
