"""Worker control: state from RQ's own registry; start/stop/restart/logs through systemd
where it is PID 1 (the sudoers snippet in ui/systemd allows exactly these commands)."""
import os
import re
import socket
import subprocess

from rq import Worker
from rq.command import send_shutdown_command

WORKER_NAME = "borgfleet-{host}-{instance}"
LOG_DIR_ENV = "BORGFLEET_LOG_DIR"


class Unavailable(RuntimeError):
    pass


def worker_name(instance):
    return WORKER_NAME.format(host=socket.gethostname(), instance=instance)


def systemd_running():
    return os.path.isdir("/run/systemd/system")


def list_workers(r):
    out = []
    for w in Worker.all(connection=r):
        job = w.get_current_job_id()
        out.append({
            "name": w.name, "state": w.get_state(), "pid": w.pid, "hostname": w.hostname,
            "queues": w.queue_names(), "current_job": job,
            "started": w.birth_date.isoformat() if w.birth_date else None,
            "last_heartbeat": w.last_heartbeat.isoformat() if w.last_heartbeat else None,
            "successful_jobs": w.successful_job_count, "failed_jobs": w.failed_job_count,
        })
    return sorted(out, key=lambda w: w["name"])


def _instance(name):
    """Instance number of one of *this host's* workers, or Unavailable."""
    m = re.fullmatch(r"borgfleet-(.+)-(\d{1,3})", name)
    if not m or m.group(1) != socket.gethostname():
        raise Unavailable(f"{name} is not a worker of this host; control it on its own host")
    return m.group(2)


def _systemctl(action, instance):
    if not systemd_running():
        raise Unavailable("systemd is not running on this host; start workers with `borgfleet-ui serve` "
                          "or `borgfleet-ui worker`")
    argv = ["sudo", "-n", "/usr/bin/systemctl", action, f"borgfleet-worker@{instance}.service"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise Unavailable(f"systemctl {action} failed: {p.stderr.strip()}")


def control(r, name, action):
    if action == "stop":
        # RQ's own command works everywhere: the worker finishes its current job, then exits.
        # Under systemd the unit must also be stopped or Restart= would bring it back.
        if systemd_running():
            _systemctl("stop", _instance(name))
        else:
            send_shutdown_command(r, name)
        return
    if action in ("start", "restart"):
        _systemctl(action, _instance(name))
        return
    raise ValueError(action)


def logs(name, lines=200):
    instance = _instance(name)
    if systemd_running():
        p = subprocess.run(["sudo", "-n", "/usr/bin/journalctl", "-u", f"borgfleet-worker@{instance}.service",
                            "-n", str(lines), "--no-pager"], capture_output=True, text=True, timeout=30)
        if p.returncode:
            raise Unavailable(f"journalctl failed: {p.stderr.strip()}")
        return p.stdout.splitlines()
    path = os.path.join(os.environ.get(LOG_DIR_ENV, ""), f"worker-{instance}.log")
    if not os.environ.get(LOG_DIR_ENV) or not os.path.isfile(path):
        raise Unavailable("no log for this worker here (not under systemd nor `borgfleet-ui serve`)")
    with open(path, errors="replace") as f:
        return f.read().splitlines()[-lines:]
