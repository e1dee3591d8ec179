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


# (name, help) of the per-backup-job families, in the order of BACKUP_LINE's values; the last one is the status.
BACKUP_FAMILIES = (
    ("borgfleet_backup_last_success_timestamp_seconds", "End of the newest succeeded backup run (unix time)"),
    ("borgfleet_backup_last_duration_seconds", "borg create's duration of the newest archive"),
    ("borgfleet_backup_last_original_size_bytes", "Original size of the newest archive"),
    ("borgfleet_backup_last_deduplicated_size_bytes",
     "Deduplicated size of the newest archive (what it added to the repository)"),
    ("borgfleet_backup_last_status", "1 for the status of the newest finished backup run, 0 for the others"))


def _escaped(col):
    """A label value escaped as the text format wants it (backslash, newline, double quote: as
    prometheus_client does), in SQL."""
    return f"REPLACE(REPLACE(REPLACE({col}, '\\\\', '\\\\\\\\'), '\\n', '\\\\n'), '\"', '\\\\\"')"


# One line a backup job, fields split by spaces, its labels last (escaped: no newline in them): the end
# of its newest succeeded backup run (microseconds since the epoch: DB times are naive UTC), the status of
# its newest finished backup run, its newest archive's duration and sizes (backup_latest.py keeps them
# where jobs end and archives are written; empty when none), then its labels as the text format writes
# them. A DOUBLE reads back from CONCAT's text exactly as from the protocol's.
BACKUP_LINE = (
    "CONCAT(IFNULL(TIMESTAMPDIFF(MICROSECOND, TIMESTAMP'1970-01-01 00:00:00', l.success_at), ''), ' ',"
    " IFNULL(l.status, ''), ' ', IFNULL(l.duration, ''), ' ', IFNULL(l.original_size, ''), ' ',"
    " IFNULL(l.deduplicated_size, ''), ' backup=\"', " + _escaped("bj.name") + ", '\",client=\"', "
    + _escaped("s.name") + ", '\"')")
BACKUPS_FROM = (" FROM backup_jobs bj JOIN servers s ON s.id=bj.client_id"
                " LEFT JOIN backup_job_latest l ON l.backup_job_id=bj.id")
# In client and backup order, as Python orders strings (by code point).
BACKUPS_ORDER = " ORDER BY s.name COLLATE utf8mb4_bin, bj.name COLLATE utf8mb4_bin"
# All the lines as one value: the driver (pure Python) decodes one row instead of thousands, ~10 ms instead of
# ~35 at 5,000 backup jobs.
# Each line ends with a newline: a value cut short (past max_bytes) lacks the last one, or lines.
BACKUPS_SQL = ("SET STATEMENT group_concat_max_len=%s FOR SELECT COUNT(*) AS n, GROUP_CONCAT(CONCAT("
               + BACKUP_LINE + ", '\\n')" + BACKUPS_ORDER + " SEPARATOR '') AS text" + BACKUPS_FROM)
BACKUPS_MAX_BYTES = 16 << 20   # ~200,000 backup jobs; longer, or longer than max_allowed_packet: row by row


def backup_lines(db, max_bytes=BACKUPS_MAX_BYTES):
    """BACKUP_LINE of every backup job, in client and backup order."""
    x = query(db, BACKUPS_SQL, (max_bytes,), one=True)
    if not x["n"]:
        return []
    lines = (x["text"] or "").split("\n")
    if len(lines) == x["n"] + 1 and lines[-1] == "":
        return lines[:-1]
    # Cut at max_bytes (or NULL past max_allowed_packet), with a warning only.
    return [r["line"] for r in query(db, "SELECT " + BACKUP_LINE + " AS line" + BACKUPS_FROM + BACKUPS_ORDER)]


# The status family's lines of a backup job for each last status, its labels at \0.
STATUS_LINES = {last: "".join(f'{BACKUP_FAMILIES[4][0]}{{\0,status="{s}"}} {"1.0" if s == last else "0.0"}\n'
                              for s in FINAL) for last in FINAL}


def _go(v):
    """prometheus_client's floatToGoString for the finite floats a database holds, without its checks
    for infinities and NaN: 20,000 calls a scrape."""
    s = repr(v)
    dot = s.find(".")
    if dot > 6 and v > 0:   # Go switches to exponents sooner than Python
        return f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.") + f"e+0{dot - 1}"
    return s


def _write(line):
    """A BACKUP_LINE's samples, one string per family in BACKUP_FAMILIES' order (empty where it has none)."""
    us, last, dur, orig, dd, labels = line.split(" ", 5)
    (success, _), (duration, _), (original, _), (dedup, _), _ = BACKUP_FAMILIES
    if us:   # as _unix: whole seconds, then the microseconds
        whole, frac = divmod(int(us), 10 ** 6)
        us = f"{success}{{{labels}}} {_go(float(whole) + frac / 1e6)}\n"
    return (us, dur and f"{duration}{{{labels}}} {_go(float(dur))}\n",
            orig and f"{original}{{{labels}}} {_go(float(orig))}\n",
            dd and f"{dedup}{{{labels}}} {_go(float(dd))}\n",
            last and STATUS_LINES[last].replace("\0", labels))


# BACKUP_LINE -> _write's strings, of this process's previous scrape. Not metric state: each scrape reads
# every line afresh, and a line is written the same whenever it is written (a cache of a pure function of
# it); between two scrapes few backup jobs change, so most lines are not written again.
_written = {}


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
        5,000 backup jobs makes ~45,000 samples, and building a Sample and escaping its labels for
        each cost more than the whole scrape may; here each job's labels come escaped from the one
        query, which reads one row a backup job, and a job's lines are written again only when its
        BACKUP_LINE changed since this process's previous scrape."""
        global _written
        previous, written, jobs = _written, {}, []
        for line in backup_lines(self.db):
            lines = previous.get(line) or _write(line)
            written[line] = lines
            jobs.append(lines)
        _written = written   # the lines of the jobs of this scrape only: it never grows past the fleet
        return "".join(f"# HELP {name} {doc}\n# TYPE {name} gauge\n" + "".join(family)
                       for (name, doc), family in zip(BACKUP_FAMILIES, zip(*jobs) if jobs else [()] * 5))

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
