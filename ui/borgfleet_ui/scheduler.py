"""The scheduler: one active process (Redis lock), cron + time zone per backup job (a backup
schedule and, for database backups, a verification schedule: the kinds with a `schedule` in
kinds.py), sleeping until the next due time (woken early when a schedule changes), missed runs
reported.

Due times live in the kind's columns of backup_jobs, e.g. next_run_at and verify_next_run_at (UTC). A due time more than
MISSED_GRACE in the past means the scheduler was down: the run is recorded as a 'missed' job
(visible on the dashboard) and one catch-up run is queued.

A due time fires at most once: it is claimed by a compare-and-set on backup_jobs before anything
is enqueued, so a second or stale scheduler (a tick that outlived the lock) enqueues nothing.

Many jobs due at once (a fleet scheduled at 02:00) are fired in batches of queue.BATCH: one
transaction claims them, one INSERT writes their job rows, one Redis pipeline enqueues them.
"""
import logging
import os
import socket
import time
from datetime import datetime, timedelta, timezone

import pymysql
from redis.exceptions import RedisError

from . import queue as q
from .db import connect, connect_redis, execute, query, retrying
from .fleet import Invalid, backup_jobs, pools, runs, servers, settings
from .kinds import scheduled
from .notifications import alerts, digest, stale

log = logging.getLogger("borgfleet.scheduler")

LOCK = "borgfleet:scheduler:lock"
WAKE = "borgfleet:scheduler:wake"
LOCK_TTL = 15
RENEW = 5            # seconds between lock renewals (and the longest single sleep)
MISSED_GRACE = 60    # seconds late before a run counts as missed
SWEEP_EVERY = q.HEARTBEAT_TTL
STALE_EVERY = 60     # seconds between checks for stale backups
MISSED_STEPS = 10    # cron evaluations spent counting missed runs (beyond them: an estimate)
_EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Scheduler:
    def __init__(self, cfg):
        self.cfg = cfg
        # Its BLPOP waits up to RENEW s: a read timeout configured shorter must not cut that wait.
        self.r = connect_redis(dict(cfg, REDIS_SOCKET_TIMEOUT=max(float(cfg.get("REDIS_SOCKET_TIMEOUT", 30)), RENEW + 5)))
        self.db = connect(cfg)
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        self.next_sweep = 0.0
        self.next_stats = None
        self.next_stale_check = 0.0

    def hold_lock(self):
        """True while this process is the active scheduler (takes the lock or extends its own)."""
        if self.r.set(LOCK, self.me, nx=True, ex=LOCK_TTL):
            log.info("scheduler %s is active", self.me)
            return True
        # Extend only if still ours: a get then expire could extend a lock another process just took.
        return bool(self.r.eval(_EXTEND, 1, LOCK, self.me, LOCK_TTL))

    def release(self):
        q.release_lock_raw(self.r, LOCK, self.me)

    def tick(self):
        """Enqueue everything due; return seconds until the next due time."""
        now = utcnow()
        for kind in scheduled():
            self.fire_due(kind, now)
        if time.monotonic() >= self.next_sweep:
            q.sweep_abandoned(self.db, self.r)
            q.sweep_lost(self.db, self.r)
            self.purge_job_logs()
            self.next_sweep = time.monotonic() + SWEEP_EVERY
        self.maybe_collect_stats(now)
        self.maybe_send_digest(now)
        self.maybe_check_stale(now)
        # The next due time of every scheduled kind in one scan of backup_jobs.
        row = query(self.db, "SELECT " + ", ".join(f"MIN(CASE WHEN {k.schedule.cron} IS NOT NULL THEN {k.schedule.next}"
                                                   f" END) AS `{k.name}`" for k in scheduled())
                    + " FROM backup_jobs WHERE enabled=1", one=True)
        soonest = [t for t in (row or {}).values() if t]
        wait = (min(soonest) - utcnow()).total_seconds() if soonest else RENEW
        return max(0.0, min(wait, RENEW))

    def fire_due(self, kind, now):
        cols = kind.schedule
        rows = query(self.db, f"SELECT b.id, b.{cols.cron} AS schedule, b.timezone, b.{cols.next} AS next_run_at"
                              f" FROM backup_jobs b WHERE b.enabled=1 AND b.{cols.cron} IS NOT NULL AND"
                              f" (b.{cols.next} IS NULL OR b.{cols.next} <= %s) ORDER BY b.id", (now,))
        for i in range(0, len(rows), q.BATCH):
            # A tick slower than the lock's TTL (slow database, many jobs) stops as soon as another
            # scheduler has taken over; the compare-and-set in claim makes a double fire impossible.
            if not self.hold_lock():
                log.warning("lost the scheduler lock during a tick; leaving the rest to the active scheduler")
                return
            self.fire_rows(kind, rows[i:i + q.BATCH], now)

    def fire_row(self, kind, b, now):
        """fire_rows of one row: False when another scheduler claimed it first (or it was new)."""
        return bool(self.fire_rows(kind, [b], now))

    def fire_rows(self, kind, rows, now):
        """Claim the due times read in rows (at most q.BATCH), then queue a run of each; returns the
        rows claimed with a due time (a new schedule only gets its first due time)."""
        due = [b for b in self.claim(kind, rows, now) if b["next_run_at"] is not None]
        if due:
            self.fire(kind, due, now)
        return due

    def claim(self, kind, rows, now):
        """Compare-and-set of each row's due time BEFORE anything is enqueued, all rows in one
        transaction: only the scheduler whose update moves a due time fires it; a stale or second
        one (the time changed since it read it) enqueues nothing. Returns the rows won."""
        col = kind.schedule.next
        at = now.replace(tzinfo=timezone.utc)
        nxt, evaluated = {}, {}
        for b in rows:
            # Evaluated once per schedule and time zone: many jobs share one.
            key = (b["schedule"], b["timezone"])
            if key not in evaluated:
                try:
                    evaluated[key] = backup_jobs.next_run(b["schedule"], b["timezone"], at)
                except Exception as e:  # one bad schedule must not stop the others (nor keep the row due)
                    evaluated[key] = e
            nxt[b["id"]] = evaluated[key]
            if isinstance(nxt[b["id"]], Exception):
                log.error("%s of backup job %s: schedule %r in %s cannot be evaluated: %s",
                          kind.name, b["id"], b["schedule"], b["timezone"], nxt[b["id"]])
                nxt[b["id"]] = None
        ids = [b["id"] for b in rows]
        marks = ", ".join(["%s"] * len(ids))

        def cas():
            try:
                self.db.begin()
                with self.db.cursor() as cur:
                    cur.execute(f"SELECT id, {col} AS t FROM backup_jobs WHERE id IN ({marks}) ORDER BY id FOR UPDATE",
                                ids)
                    current = {row["id"]: row["t"] for row in cur.fetchall()}
                    won = [b for b in rows if b["id"] in current and current[b["id"]] == b["next_run_at"]]
                    if won:
                        cur.execute(f"UPDATE backup_jobs SET {col} = CASE id"
                                    + " WHEN %s THEN %s" * len(won) + f" END WHERE id IN ({', '.join(['%s'] * len(won))})",
                                    [v for b in won for v in (b["id"], nxt[b["id"]])] + [b["id"] for b in won])
                self.db.commit()
            except BaseException:
                try:
                    self.db.rollback()
                except pymysql.err.Error:
                    pass   # the connection is gone: so is the transaction
                raise
            return won
        won = retrying(self.db, cas)
        claimed = {b["id"] for b in won}
        for b in rows:
            if b["id"] not in claimed:
                log.info("%s of backup job %s due %s was claimed by another scheduler", kind.name, b["id"],
                         b["next_run_at"])
        return won

    def fire(self, kind, rows, now):
        """Queue one run of each due time already claimed (at most once: a failed enqueue is not
        retried), all in one insert and one Redis pipeline (queue.create_jobs)."""
        missed = []
        for b in rows:
            due = b["next_run_at"]
            if (now - due).total_seconds() > MISSED_GRACE:
                n, exact = self.count_missed(b, due, now)
                missed.append((b, f"{'' if exact else 'about '}{n} scheduled run(s) missed between"
                                  f" {due:%Y-%m-%d %H:%M:%S} and {now:%Y-%m-%d %H:%M:%S} UTC (scheduler not running);"
                                  " one catch-up run queued"))
        if missed:
            jids = q.create_job_rows(self.db, [dict(kind=kind.name, backup_job_id=b["id"], status="missed", error=msg)
                                               for b, msg in missed])
            for (b, msg), jid in zip(missed, jids):
                log.warning("%s of backup job %s: %s (%s)", kind.name, b["id"], msg, jid)
                alerts.run_missed(self.db, self.r, jid)
        bjs = {bj["id"]: bj for bj in backup_jobs.get_backup_jobs(self.db, [b["id"] for b in rows])}
        runs, firing = [], []
        for b in rows:
            try:
                if b["id"] not in bjs:
                    raise Invalid("it was deleted")
                runs.append(backup_jobs.run_of(kind.name, bjs[b["id"]]))
            except Invalid as e:   # one job that cannot run must not stop the others
                log.error("%s of backup job %s could not be queued: %s", kind.name, b["id"], e)
                continue
            firing.append(b)
        if not firing:
            return
        try:
            job_ids = q.create_jobs(self.db, self.r, kind.name, runs)
        except Exception as e:  # create_jobs marked their rows failed
            log.error("%s of backup jobs %s could not be queued: %s", kind.name, [b["id"] for b in firing], e)
            return
        last = kind.schedule.last
        execute(self.db, f"UPDATE backup_jobs SET {last} = CASE id" + " WHEN %s THEN %s" * len(firing)
                         + f" END WHERE id IN ({', '.join(['%s'] * len(firing))})",
                [v for b in firing for v in (b["id"], b["next_run_at"])] + [b["id"] for b in firing])
        for b, job_id in zip(firing, job_ids):
            log.info("queued %s of backup job %s due %s (%.3f s late) as %s", kind.name, b["id"], b["next_run_at"],
                     (now - b["next_run_at"]).total_seconds(), job_id)

    def count_missed(self, b, due, now):
        """(runs due from `due` to `now`, exact?) in at most MISSED_STEPS cron evaluations.

        Counted one by one up to MISSED_STEPS; beyond that estimated from the mean interval of
        those steps, so a job down for years costs the same as one down for an hour."""
        n, t = 0, due
        while t <= now and n < MISSED_STEPS:
            n += 1
            t = backup_jobs.next_run(b["schedule"], b["timezone"], t.replace(tzinfo=timezone.utc))
        if t > now:
            return n, True
        step = (t - due).total_seconds() / n
        return n + int((now - t).total_seconds() // step) + 1, False

    def purge_job_logs(self):
        """Job-log retention (setting job_log_retention_days): a bounded share each sweep, so a tick
        stays short and a backlog is worked off over the following sweeps."""
        raw = settings.get_settings(self.db).get("job_log_retention_days", str(runs.DEFAULT_LOG_RETENTION_DAYS))
        try:
            n = runs.purge_job_logs(self.db, int(raw or 0))
        except pymysql.MySQLError as e:   # retention must never stop the scheduling
            log.error("job log retention failed: %s", e)
            return
        if n:
            log.info("job log retention: %s log lines of jobs older than %s days deleted", n, raw)

    def maybe_collect_stats(self, now):
        """Periodic stats of every server and analysis of the pools (settings.stats_interval_minutes),
        when the playbook exists."""
        if not os.path.isfile(os.path.join(self.cfg["COLLECTION_ROOT"], "playbooks", "collect_stats.yml")):
            return
        minutes = int(settings.get_settings(self.db).get("stats_interval_minutes", "15") or 0)
        if minutes <= 0:
            return
        if self.next_stats is None:
            self.next_stats = now + timedelta(minutes=minutes)
        if now < self.next_stats:
            return
        self.next_stats = now + timedelta(minutes=minutes)
        for s in query(self.db, "SELECT id FROM servers WHERE setup_status='ok'"):
            servers.collect_stats(self.db, self.r, s["id"], None)
        # The pools' usage with the same rhythm: its samples give the growth and the forecast.
        try:
            pools.analyze(self.db, self.r, None)
        except Invalid:
            pass   # nothing set up yet

    def maybe_send_digest(self, now):
        """The daily or weekly digest when due (claimed once; sent by the queued sender)."""
        try:
            ids = digest.tick(self.db, self.r, now)
        except (RedisError, pymysql.err.Error):
            raise   # the loop waits out an outage
        except Exception:  # a bad digest setting must not stop the schedules
            log.exception("the digest could not be queued")
            return
        if ids:
            log.info("digest queued: deliveries %s", ids)

    def maybe_check_stale(self, now):
        """Stale backups (notifications/stale.py), checked at most once a minute."""
        if time.monotonic() < self.next_stale_check:
            return
        self.next_stale_check = time.monotonic() + STALE_EVERY
        ids = stale.tick(self.db, self.r, now)
        if ids:   # a fleet's first check can find thousands: the count and the first ids
            log.warning("%s backup job(s) gone stale: %s%s", len(ids), ids[:20], " ..." if len(ids) > 20 else "")

    def run_forever(self):
        """Runs until interrupted (SIGTERM/SIGINT raise in the caller); the lock is then handed back.

        Redis or MariaDB down (restarting) is waited out: the clients retry for a while, then the
        error is logged and the loop starts again after RENEW seconds."""
        active = False
        try:
            while True:
                try:
                    if not self.hold_lock():
                        if active:
                            log.warning("lost the scheduler lock; idling")
                        active = False
                        time.sleep(RENEW)
                        continue
                    active = True
                    wait = self.tick()
                    if wait > 0:
                        # BLPOP returns at once when a schedule changes (queue.wake_scheduler).
                        self.r.blpop([WAKE], timeout=wait)
                except (RedisError, pymysql.err.Error) as e:
                    log.error("scheduler tick failed (%s); trying again in %s s", e, RENEW)
                    time.sleep(RENEW)
        finally:
            if active:
                try:
                    self.release()
                except RedisError:
                    pass   # Redis is down: the lock expires after LOCK_TTL
