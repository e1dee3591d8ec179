"""What /metrics reports (docs/service.md, Monitoring): read from MariaDB and Redis at each scrape,
so the web process keeps no metric state and every worker process answers the same."""
import calendar
import json

from prometheus_client.core import GaugeMetricFamily
from rq import Queue, Worker

from ..db import query
from ..queue import FINAL, SERIALIZER, queue_names
from .pools import usage as pool_usage
from .recovery import health_label

HEALTH = ("running", "stopped", "broken")   # recovery.health_label's words


def _unix(t):
    return float(calendar.timegm(t.utctimetuple())) + t.microsecond / 1e6   # DB times are naive UTC


class FleetCollector:
    """A prometheus_client collector over one database connection and one Redis client."""

    def __init__(self, db, r):
        self.db, self.r = db, r

    def collect(self):
        yield from self._backups()
        yield from self._jobs()
        yield from self._queues()
        yield from self._recovery_sessions()
        yield from self._pools()

    def _pools(self):
        """Each analysed pool's newest figures (fleet/pools.py: analyze_pools.yml's samples)."""
        labels = ["server", "pool"]
        families = {
            "total_bytes": GaugeMetricFamily("borgfleet_pool_size_bytes", "Capacity of the pool's filesystem",
                                             labels=labels),
            "used_bytes": GaugeMetricFamily("borgfleet_pool_used_bytes", "Used space of the pool's filesystem",
                                            labels=labels),
            "free_bytes": GaugeMetricFamily("borgfleet_pool_free_bytes", "Free space of the pool's filesystem",
                                            labels=labels),
            "repositories_size_bytes": GaugeMetricFamily("borgfleet_pool_repositories_bytes",
                                                         "Size on disk of the repositories in the pool",
                                                         labels=labels),
            "full_in_days": GaugeMetricFamily("borgfleet_pool_full_in_days",
                                              "Days until the pool is full at its growth of the last 30 days"
                                              " (absent when it does not grow)", labels=labels),
        }
        analysed = GaugeMetricFamily("borgfleet_pool_analysed_timestamp_seconds",
                                     "When the pool was last analysed (unix time)", labels=labels)
        for p in pool_usage(self.db, top=0):
            lv = [p["server_name"], p["name"]]
            for key, family in families.items():
                if p[key] is not None:
                    family.add_metric(lv, float(p[key]))
            analysed.add_metric(lv, _unix(p["analysed_at"]))
        yield from families.values()
        yield analysed

    def _backups(self):
        labels = ["client", "backup"]
        success = GaugeMetricFamily("borgfleet_backup_last_success_timestamp_seconds",
                                    "End of the newest succeeded backup run (unix time)", labels=labels)
        duration = GaugeMetricFamily("borgfleet_backup_last_duration_seconds",
                                     "borg create's duration of the newest archive", labels=labels)
        original = GaugeMetricFamily("borgfleet_backup_last_original_size_bytes",
                                     "Original size of the newest archive", labels=labels)
        dedup = GaugeMetricFamily("borgfleet_backup_last_deduplicated_size_bytes",
                                  "Deduplicated size of the newest archive (what it added to the repository)",
                                  labels=labels)
        status = GaugeMetricFamily("borgfleet_backup_last_status",
                                   "1 for the status of the newest finished backup run, 0 for the others",
                                   labels=labels + ["status"])
        jobs = query(self.db, "SELECT bj.id, s.name AS client, bj.name AS backup FROM backup_jobs bj"
                              " JOIN servers s ON s.id=bj.client_id ORDER BY s.name, bj.name")
        ok = {x["backup_job_id"]: x["t"] for x in query(
            self.db, "SELECT backup_job_id, MAX(finished_at) AS t FROM jobs"
                     " WHERE kind='backup' AND status='succeeded' GROUP BY backup_job_id")}
        last = {x["backup_job_id"]: x["status"] for x in query(
            self.db, "SELECT j.backup_job_id, j.status FROM jobs j JOIN (SELECT MAX(seq) AS seq FROM jobs"
                     " WHERE kind='backup' AND status IN %s GROUP BY backup_job_id) m ON m.seq=j.seq", (FINAL,))}
        newest = {}
        # The newest archive by start time (then id) of each repository.
        for a in query(self.db, "SELECT r.backup_job_id, a.id, a.duration, a.original_size, a.deduplicated_size"
                                " FROM archives a JOIN repositories r ON r.id=a.repository_id"
                                " JOIN (SELECT repository_id, MAX(start_at) AS s FROM archives"
                                " GROUP BY repository_id) m ON m.repository_id=a.repository_id AND m.s=a.start_at"):
            if a["backup_job_id"] not in newest or a["id"] > newest[a["backup_job_id"]]["id"]:
                newest[a["backup_job_id"]] = a
        for j in jobs:
            lv = [j["client"], j["backup"]]
            if ok.get(j["id"]):
                success.add_metric(lv, _unix(ok[j["id"]]))
            a = newest.get(j["id"])
            for family, col in ((duration, "duration"), (original, "original_size"), (dedup, "deduplicated_size")):
                if a and a[col] is not None:
                    family.add_metric(lv, float(a[col]))
            if j["id"] in last:
                for s in FINAL:
                    status.add_metric(lv + [s], 1.0 if last[j["id"]] == s else 0.0)
        yield from (success, duration, original, dedup, status)

    def _jobs(self):
        family = GaugeMetricFamily("borgfleet_jobs", "Runs in the jobs table by kind and status",
                                   labels=["kind", "status"])
        for x in query(self.db, "SELECT kind, status, COUNT(*) AS n FROM jobs GROUP BY kind, status"
                                " ORDER BY kind, status"):
            family.add_metric([x["kind"], x["status"]], float(x["n"]))
        yield family

    def _queues(self):
        depth = GaugeMetricFamily("borgfleet_queue_depth", "Jobs waiting in each RQ queue", labels=["queue"])
        for name in queue_names():
            depth.add_metric([name], float(Queue(name, connection=self.r, serializer=SERIALIZER).count))
        yield depth
        # Worker.all, not Worker.count: it drops registry entries of workers that died without a goodbye.
        yield GaugeMetricFamily("borgfleet_workers", "Workers in RQ's registry",
                                value=float(len(Worker.all(connection=self.r, serializer=SERIALIZER))))

    def _recovery_sessions(self):
        counts = dict.fromkeys(HEALTH, 0)
        for x in query(self.db, "SELECT state, health_json FROM recovery_sessions"):
            counts[health_label({"state": x["state"], "health": json.loads(x["health_json"] or "{}")})] += 1
        family = GaugeMetricFamily("borgfleet_recovery_sessions",
                                   "Instant recovery sessions by health as their hosts last reported it",
                                   labels=["health"])
        for h, n in counts.items():
            family.add_metric([h], float(n))
        yield family
