"""Worker control: state from RQ's own registry and from what each process publishes about itself
(CPU, memory, uptime: ProcessReporter); start/stop/restart/logs through systemd where it is PID 1
(the sudoers snippet in ui/systemd allows exactly these commands), else through the supervisor of
`borgfleet-ui serve` (desired states in Redis), else a clear reason.

A worker seen once stays listed (stopped) until it has been gone for FORGET_AFTER."""
import json
import os
import re
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

from flask_babel import gettext as _
from rq import Worker
from rq.command import send_shutdown_command

from .queue import SERIALIZER

WORKER_NAME = "borgfleet-{host}-{instance}"
LOG_DIR_ENV = "BORGFLEET_LOG_DIR"
# Every process's own figures (pid, CPU %, memory, started), refreshed every REPORT_EVERY seconds.
PROCESS_KEY = "borgfleet:process:{name}"
REPORT_EVERY, REPORT_TTL = 5, 30
KNOWN_KEY = "borgfleet:workers:known"          # name -> {hostname, instance, last_seen}
FORGET_AFTER = timedelta(days=7)
# `borgfleet-ui serve` on a host: alive key (TTL), and the desired state of each of its instances.
SUPERVISOR_ALIVE = "borgfleet:supervisor:{host}:alive"
SUPERVISOR_DESIRED = "borgfleet:supervisor:{host}:desired"   # instance -> running|stopped|restart
SCHEDULER_NAME = "scheduler-{host}"


class Unavailable(RuntimeError):
    pass


def worker_name(instance):
    return WORKER_NAME.format(host=socket.gethostname(), instance=instance)


def systemd_running():
    return os.path.isdir("/run/systemd/system")


def list_workers(r):
    """Every worker RQ knows, and every one seen before that is gone (state "stopped"), with the
    figures its process last published, and whether it can be started from here."""
    out, now = {}, datetime.now(timezone.utc)
    for w in Worker.all(connection=r, serializer=SERIALIZER):
        job = w.get_current_job_id()
        out[w.name] = {
            "name": w.name, "state": w.get_state(), "pid": w.pid, "hostname": w.hostname,
            "queues": w.queue_names(), "current_job": job,
            "started": w.birth_date.isoformat() if w.birth_date else None,
            "last_heartbeat": w.last_heartbeat.isoformat() if w.last_heartbeat else None,
            "successful_jobs": w.successful_job_count, "failed_jobs": w.failed_job_count,
        }
    for name, raw in (r.hgetall(KNOWN_KEY) or {}).items():
        name, known = _text(name), json.loads(raw)
        if name in out:
            continue
        last_seen = datetime.fromisoformat(known["last_seen"])
        if now - last_seen > FORGET_AFTER:
            r.hdel(KNOWN_KEY, name)
            continue
        out[name] = {"name": name, "state": "stopped", "pid": None, "hostname": known.get("hostname"),
                     "queues": [], "current_job": None, "started": None, "last_heartbeat": known["last_seen"],
                     "successful_jobs": None, "failed_jobs": None}
    for w in out.values():
        w.update(process_figures(r, w["name"]) if w["state"] != "stopped" else {})
        w["control"] = control_mode(r, w["hostname"], w["name"])
    return sorted(out.values(), key=lambda w: w["name"])


def scheduler_status(r):
    """The active scheduler (the Redis lock's holder) with its process figures, or None."""
    from .scheduler import LOCK   # the scheduler imports the fleet, which imports the queue only
    holder = r.get(LOCK)
    if not holder:
        return None
    host, _sep, pid = _text(holder).rpartition(":")
    return {"name": SCHEDULER_NAME.format(host=host), "hostname": host, "pid": int(pid) if pid.isdigit() else None,
            "state": "active", **process_figures(r, SCHEDULER_NAME.format(host=host))}


def process_figures(r, name):
    """What the process last published about itself, its uptime counted now."""
    raw = r.get(PROCESS_KEY.format(name=name))
    if not raw:
        return {}
    figures = json.loads(raw)
    started = datetime.fromisoformat(figures["started_at"])
    figures["uptime_seconds"] = int((datetime.now(timezone.utc) - started).total_seconds())
    return figures


def control_mode(r, host, name):
    """How worker `name` of `host` is started and stopped from here: systemd (this host runs it),
    serve (a live `borgfleet-ui serve` on that host supervises this instance), or None (only RQ's stop)."""
    if host == socket.gethostname() and systemd_running():
        return "systemd"
    if not host or not r.exists(SUPERVISOR_ALIVE.format(host=host)):
        return None
    m = re.fullmatch(r"borgfleet-(.+)-(\d{1,3})", name)
    return "serve" if m and m.group(1) == host and r.hexists(SUPERVISOR_DESIRED.format(host=host), m.group(2)) else None


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def _instance(name, host=None):
    """Instance number of one of `host`'s workers (default: this host's), or Unavailable."""
    host = host or socket.gethostname()
    m = re.fullmatch(r"borgfleet-(.+)-(\d{1,3})", name)
    if not m or m.group(1) != host:
        raise Unavailable(_("%(name)s is not a worker of %(host)s; control it on its own host", name=name, host=host))
    return m.group(2)


# The only privileged commands the workers page runs; `borgfleet-ui sudoers` allows exactly these.
MAX_LOG_LINES = 5000


def systemctl_argv(action, instance):
    return ["/usr/bin/systemctl", action, f"borgfleet-worker@{instance}.service"]


def journalctl_argv(instance):
    # One fixed command line (sudoers allows exactly it): the lines and since filters apply after.
    return ["/usr/bin/journalctl", "-u", f"borgfleet-worker@{instance}.service", "-n", str(MAX_LOG_LINES),
            "--no-pager", "--utc", "-o", "short-iso"]


def sudoers(user, instances):
    cmds = [" ".join(systemctl_argv(a, i)) for i in instances for a in ("start", "stop", "restart")]
    cmds += [" ".join(journalctl_argv(i)) for i in instances]
    return ("# BorgFleet workers page: exactly the commands it runs (generated by `borgfleet-ui sudoers`).\n"
            "Cmnd_Alias BORGFLEET_WORKERS = " + ", \\\n    ".join(cmds) + "\n"
            f"{user} ALL=(root) NOPASSWD: BORGFLEET_WORKERS\n")


def _systemctl(action, instance):
    if not systemd_running():
        raise Unavailable(_("systemd is not running on this host; start workers with `borgfleet-ui serve` "
                            "or `borgfleet-ui worker`"))
    argv = ["sudo", "-n"] + systemctl_argv(action, instance)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise Unavailable(_("systemctl %(action)s failed: %(error)s", action=action, error=p.stderr.strip()))


def control(r, name, action):
    host = next((w["hostname"] for w in list_workers(r) if w["name"] == name), None)
    if host is None:
        raise Unavailable(_("no worker %(name)s is known", name=name))
    mode = control_mode(r, host, name)
    if mode == "systemd":
        # Under systemd the unit is stopped (Restart= would bring back a worker that exited).
        _systemctl(action, _instance(name))
    elif mode == "serve":
        # The supervisor of that host acts within a second (cli.py serve).
        instance = _instance(name, host)
        r.hset(SUPERVISOR_DESIRED.format(host=host), instance, "running" if action == "start" else
               "stopped" if action == "stop" else "restart")
    elif action == "stop":
        # RQ's own command works everywhere: the worker finishes its current job, then exits.
        send_shutdown_command(r, name)
    else:
        raise Unavailable(_("%(name)s runs neither under systemd nor under `borgfleet-ui serve` on %(host)s: "
                            "nothing here can %(action)s it; start it on %(host)s with `borgfleet-ui worker "
                            "--instance N`, or run the workers as systemd units (ui/systemd) or with "
                            "`borgfleet-ui serve`", name=name, host=host, action=action))


def log_filters(lines, since):
    """The logs viewer's filters as typed (?lines=200&since=2026-12-02T13:00 or "15m", "2h", "1d"):
    (lines, since as a naive UTC datetime or None); ValueError with the reason."""
    if not str(lines).isdigit() or not 1 <= int(lines) <= MAX_LOG_LINES:
        raise ValueError(_("lines must be a number from 1 to %(max_log_lines)s", max_log_lines=MAX_LOG_LINES))
    since = (since or "").strip()
    if not since:
        return int(lines), None
    m = re.fullmatch(r"(\d{1,4})\s*(m|h|d)", since)
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return int(lines), datetime.utcnow() - timedelta(**{unit: int(m.group(1))})
    try:
        return int(lines), datetime.fromisoformat(since.replace("Z", "")).replace(tzinfo=None)
    except ValueError:
        raise ValueError(_("since must be a UTC time (2026-12-02T13:00) or an age (15m, 2h, 1d)")) from None


def logs(name, lines=200, since=None):
    """The worker's last `lines` log lines (at most MAX_LOG_LINES), only those since `since` (a UTC
    datetime) when given, by the lines' own timestamps (journalctl's short-iso, the serve log's; a line without
    one belongs to the stamped line above it)."""
    lines = max(1, min(int(lines), MAX_LOG_LINES))
    instance = _instance(name)
    if systemd_running():
        p = subprocess.run(["sudo", "-n"] + journalctl_argv(instance), capture_output=True, text=True, timeout=30)
        if p.returncode:
            raise Unavailable(_("journalctl failed: %(error)s", error=p.stderr.strip()))
        text = p.stdout.splitlines()
        return (lines_since(text, since) if since is not None else text)[-lines:]
    path = os.path.join(os.environ.get(LOG_DIR_ENV, ""), f"worker-{instance}.log")
    if not os.environ.get(LOG_DIR_ENV) or not os.path.isfile(path):
        raise Unavailable(_("no log for this worker here (not under systemd nor `borgfleet-ui serve`)"))
    with open(path, errors="replace") as f:
        text = f.read().splitlines()
    if since is not None:
        text = lines_since(text, since)
    return text[-lines:]


# A line's UTC time: the serve log's "2026-12-02 13:45:12" or journalctl's short-iso "2026-12-02T13:45:12+00:00".
LOG_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})")
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"   # the workers' log timestamps (cli.py worker), UTC


def lines_since(text, since):
    """The lines stamped at or after `since` (naive UTC), with the unstamped lines that follow them."""
    keep, out = False, []
    for line in text:
        m = LOG_TIME.match(line)
        if m:
            keep = datetime.strptime(f"{m.group(1)} {m.group(2)}", LOG_DATE_FORMAT) >= since
        if keep:
            out.append(line)
    return out


class ProcessReporter(threading.Thread):
    """Publishes this process's figures every REPORT_EVERY s (pid, CPU % since the last report of
    it and its children — a job's playbook runs in a forked work horse —, resident memory, start
    time), and for a worker keeps it in the known list so that it stays listed once stopped."""

    def __init__(self, r, name, worker=False):
        super().__init__(daemon=True, name="process-reporter")
        self.r, self.name, self.worker = r, name, worker
        self.stop = threading.Event()
        self.started = datetime.now(timezone.utc)

    def run(self):
        last = (time.monotonic(), _cpu_seconds(os.getpid()))
        while not self.stop.wait(REPORT_EVERY):
            now = (time.monotonic(), _cpu_seconds(os.getpid()))
            cpu = 100 * (now[1] - last[1]) / max(now[0] - last[0], 1e-6)
            last = now
            self.report(cpu)

    def report(self, cpu_percent=0.0):
        figures = {"pid": os.getpid(), "cpu_percent": round(cpu_percent, 1), "rss_bytes": _rss_bytes(os.getpid()),
                   "started_at": self.started.isoformat(),
                   "uptime_seconds": int((datetime.now(timezone.utc) - self.started).total_seconds())}
        try:
            self.r.set(PROCESS_KEY.format(name=self.name), json.dumps(figures), ex=REPORT_TTL)
            if self.worker:
                self.r.hset(KNOWN_KEY, self.name, json.dumps({
                    "hostname": socket.gethostname(), "last_seen": datetime.now(timezone.utc).isoformat()}))
        except Exception:  # Redis restarting: the next report catches up
            pass


def _descendants(pid):
    """pid and every process below it (from /proc's parent links)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _cpu_seconds(pid):
    """User + system CPU seconds of pid and its live descendants."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            pass
    return total


def _rss_bytes(pid):
    total = 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total
