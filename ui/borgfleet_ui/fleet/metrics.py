"""What /metrics reports (docs/service.md, Monitoring): read from MariaDB and Redis at each scrape,
so the web process keeps no metric state and every worker process answers the same."""
import calendar
import json

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.utils import floatToGoString
from rq import Queue, Worker

from ..db import query
from ..queue import FINAL, SERIALIZER, queue_names
from .pools import usage as pool_usage
from .recovery import health_label

HEALTH = ("running", "stopped", "broken")   # recovery.health_label's words


# (name, help, column of BACKUPS_SQL) of the per-backup-job families; the last one is the status.
BACKUP_FAMILIES = (
    ("borgfleet_backup_last_success_timestamp_seconds", "End of the newest succeeded backup run (unix time)",
     "success_us"),
    ("borgfleet_backup_last_duration_seconds", "borg create's duration of the newest archive", "duration"),
    ("borgfleet_backup_last_original_size_bytes", "Original size of the newest archive", "original_size"),
    ("borgfleet_backup_last_deduplicated_size_bytes",
     "Deduplicated size of the newest archive (what it added to the repository)", "deduplicated_size"),
    ("borgfleet_backup_last_status", "1 for the status of the newest finished backup run, 0 for the others",
     "last_status"))
# Each backup job with its newest success (microseconds since the epoch: DB times are naive UTC), the
# status of its newest finished backup run, and its newest archive by start time (then id): one index
# dive each (ix_jobs_backup_kind, ix_jobs_backup_newest of migration 0962, ix_archives_repo_start). The
# optimizer would rather read the newest finished run through ix_jobs_backup_kind and sort a job's whole
# history (the status list reads as a range on it): 2.5 times slower at 5,000 backup jobs.
BACKUPS_SQL = (
    "SELECT x.client, x.backup, x.success_us, x.last_status, a.duration, a.original_size, a.deduplicated_size"
    " FROM (SELECT s.name AS client, bj.name AS backup,"
    " (SELECT TIMESTAMPDIFF(MICROSECOND, TIMESTAMP'1970-01-01 00:00:00', j.finished_at) FROM jobs j"
    "  WHERE j.backup_job_id=bj.id AND j.kind='backup' AND j.status='succeeded' AND j.finished_at IS NOT NULL"
    "  ORDER BY j.finished_at DESC LIMIT 1) AS success_us,"
    " (SELECT j.status FROM jobs j FORCE INDEX (ix_jobs_backup_newest)"
    "  WHERE j.backup_job_id=bj.id AND j.kind='backup' AND j.status IN %s"
    "  ORDER BY j.seq DESC LIMIT 1) AS last_status,"
    " (SELECT a.id FROM archives a WHERE a.repository_id=r.id AND a.start_at IS NOT NULL"
    "  ORDER BY a.start_at DESC, a.id DESC LIMIT 1) AS newest"
    " FROM backup_jobs bj JOIN servers s ON s.id=bj.client_id LEFT JOIN repositories r ON r.backup_job_id=bj.id) x"
    " LEFT JOIN archives a ON a.id=x.newest")


def _escape(value):
    """A label value escaped as the text format wants it (as prometheus_client does)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _unix(t):
    return float(calendar.timegm(t.utctimetuple())) + t.microsecond / 1e6   # DB times are naive UTC


class FleetCollector:
    """A prometheus_client collector over one database connection and one Redis client."""

    def __init__(self, db, r):
        self.db, self.r = db, r

    def collect(self):
        """Every family but the per-backup-job ones (backups_text)."""
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

    def backups_text(self):
        """The per-backup-job families in the Prometheus text format, as prometheus_client's
        generate_latest writes gauges (labels sorted, escaped alike), but written here: a fleet of
        5,000 backup jobs makes ~40,000 samples, and building a Sample and escaping its labels for
        each cost more than the whole scrape may; here each job's labels are escaped once, and one
        query reads each job's figures through its indexes."""
        out = {name: [f"# HELP {name} {doc}\n# TYPE {name} gauge\n"] for name, doc, _ in BACKUP_FAMILIES}
        # In client and backup order, sorted here: an ORDER BY over the derived rows costs the query a third more.
        for row in sorted(query(self.db, BACKUPS_SQL, (FINAL,)), key=lambda r: (r["client"], r["backup"])):
            labels = f'backup="{_escape(row["backup"])}",client="{_escape(row["client"])}"'
            for name, _, col in BACKUP_FAMILIES[:4]:
                if row[col] is not None:
                    value = row[col]
                    if col == "success_us":   # as _unix: whole seconds, then the microseconds
                        secs, us = divmod(int(value), 10 ** 6)
                        value = float(secs) + us / 1e6
                    out[name].append(f"{name}{{{labels}}} {floatToGoString(float(value))}\n")
            if row["last_status"] is not None:
                name = BACKUP_FAMILIES[4][0]
                out[name] += [f'{name}{{{labels},status="{s}"}} {"1.0" if row["last_status"] == s else "0.0"}\n'
                              for s in FINAL]
        return "".join(line for name, _, _ in BACKUP_FAMILIES for line in out[name])

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
