"""RQ job functions (worker side): run one playbook with ansible-runner for one job row.

One job = one synchronous ansible_runner.run() in its own private data dir. The inventory is
the collection's `borgfleet.backup.fleet` plugin reading this service's MariaDB, so the run
sees exactly the fleet the UI shows, through the same contract as the CLI and AWX.
"""
import json
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

import ansible_runner
import ansible_runner.interface
import pymysql
import yaml
from redis.exceptions import RedisError
from rq import get_current_job

from . import queue as q
from . import results
from .config import load_config
from .db import connect, connect_redis, connection_lost, execute, query
from .fleet import backup_jobs, facts
from .kinds import KINDS
from .notifications import events

log = logging.getLogger(__name__)


class JobError(Exception):
    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = result  # what the run reported before it failed, kept with the job


class Heartbeat(threading.Thread):
    """Refreshes the job's Redis heartbeat; when the worker dies the key expires.

    While Redis is down or restarting it keeps trying every second, so the job is never judged
    abandoned for an outage its worker survived (a restarted Redis has lost the key)."""

    RETRY = 1.0

    def __init__(self, r, job_id):
        super().__init__(daemon=True)
        self.r, self.key, self.stop = r, q.heartbeat_key(job_id), threading.Event()
        self.job_id = job_id
        self.lock = None   # (name, ttl) of the repository lock this job holds, once it holds it

    def run(self):
        while True:
            try:
                self.r.set(self.key, "1", ex=q.HEARTBEAT_TTL)
                if self.lock:
                    self.keep_lock(*self.lock)
                wait = q.HEARTBEAT_TTL / 3
            except RedisError as e:
                log.warning("heartbeat %s not written (%s); retrying", self.key, e)
                wait = self.RETRY
            if self.stop.wait(wait):
                try:
                    self.r.delete(self.key)
                except RedisError:
                    pass   # it expires by itself
                return

    def keep_lock(self, name, ttl):
        """A Redis restarted without persistence has lost the repository lock: take it again, so a
        second job of the same repository keeps waiting (borg's own lock is the last guard)."""
        holder = q.try_lock(self.r, name, self.job_id, ttl)
        if holder not in (None, self.job_id):
            log.warning("repository lock %s is now held by job %s while job %s still runs", name, holder, self.job_id)


def run_job(job_id):
    cfg = load_config()
    db = connect(cfg)
    r = connect_redis(cfg)
    joblog = q.JobLog(db, job_id)
    hb = Heartbeat(r, job_id)
    lock = row = None
    try:
        row = query(db, "SELECT * FROM jobs WHERE id=%s", (job_id,), one=True)
        if row is None or row["status"] in q.FINAL:
            return "skipped"
        params = json.loads(row["params_json"] or "{}")
        spec = KINDS[row["kind"]]
        # One budget for the whole job, the wait for the repository lock included; RQ's own
        # timeout (q.rq_timeout) is longer, so RQ never kills a running playbook.
        deadline = time.monotonic() + spec.timeout
        rq_job = get_current_job()
        execute(db, "UPDATE jobs SET status='waiting', started_at=UTC_TIMESTAMP(3), worker=%s,"
                    " error=NULL WHERE id=%s", (rq_job.worker_name if rq_job else None, job_id))
        hb.start()
        run = PlaybookRun(cfg, db, r, row, params, spec, joblog)
        if params.get("lock"):
            if not _wait_for_lock(joblog, r, params["lock"], deadline, run.cancelled):
                q.finish(db, job_id, "canceled", error="canceled by a user while waiting for the repository", r=r)
                return "canceled"
            lock = params["lock"]
            hb.lock = (lock, int(deadline - time.monotonic()) + q.RQ_MARGIN + 60)
        execute(db, "UPDATE jobs SET status='running' WHERE id=%s", (job_id,))
        events.job_started(db, r, job_id)   # a backup's ping URL hears /start
        try:
            run.run(timeout=max(MIN_RUN, int(deadline - time.monotonic())))
            if lock and run.status in ("canceled", "timeout"):
                _let_borg_stop(joblog)
            if run.status == "canceled":
                q.finish(db, job_id, "canceled", error="canceled by a user", rc=run.rc, r=r)
                return "canceled"
            if run.status != "successful" or run.rc != 0:
                raise JobError(run.failure_message(), result=results.failed(row, run.report(), db, params))
            # The recorder reads what the playbook fetched into the run directory (kinds.py `fetches`).
            result = results.record(db, row, dict(params, run_dir=run.pdd), run.report())
            for kind in spec.then:
                if kind != "index_archive" or cfg["INDEX_AFTER_BACKUP"]:
                    _follow_up(db, r, joblog, kind, row)
            q.finish(db, job_id, "succeeded", rc=0, result=result, r=r)
            return "succeeded"
        finally:
            run.remove_dir()
    except Exception as e:
        _failed(db, r, joblog, row["kind"] if row else "", str(e) or repr(e), getattr(e, "result", None))
        raise
    finally:
        if lock:
            q.release_lock(r, lock, job_id)
        hb.stop.set()
        db.close()


def _follow_up(db, r, joblog, kind, row):
    """Queue a kind that follows a successful run (kinds.py `then`) when its backup job (or, for a run
    of no backup job, its server) asks for it; this run succeeded whatever happens here."""
    try:
        if row["backup_job_id"]:
            archive = query(db, "SELECT archive_id FROM jobs WHERE id=%s", (row["id"],), one=True)["archive_id"]
            follow = backup_jobs.follow_up(db, r, kind, row["backup_job_id"], archive)
        else:
            follow = facts.follow_up(db, r, kind, row)
    except Exception as e:  # a deleted job, Redis away: the run itself stays a success
        joblog.append([f"*** {kind} not queued: {e} ***"])
        return
    if follow:
        joblog.append([f"*** {kind} queued as job {follow} ***"])


def _failed(db, r, joblog, kind, msg, result=None):
    rq_job = get_current_job()
    if rq_job is not None and kind in KINDS and KINDS[kind].retry and (rq_job.retries_left or 0) > 0:
        joblog.append([f"*** attempt failed: {msg}; retrying ({rq_job.retries_left} left) ***"])
        execute(db, "UPDATE jobs SET status='queued', error=%s WHERE id=%s", (msg, joblog.job_id))
    else:
        joblog.append([f"*** job failed: {msg} ***"])
        q.finish(db, joblog.job_id, "failed", error=msg, result=result, r=r)


# A playbook gets at least this many seconds; a lock wait leaving less fails the job instead.
MIN_RUN = 60


def _wait_for_lock(joblog, r, name, deadline, cancelled):
    """Wait (status 'waiting') until no other job holds this repository's lock; False if the job
    was canceled meanwhile. The wait counts in the job's budget (it ends at ``deadline``)."""
    said = None
    while True:
        # The lock outlives anything this job can do: past RQ's timeout the job is dead.
        holder = q.try_lock(r, name, joblog.job_id, int(deadline - time.monotonic()) + q.RQ_MARGIN + 60)
        if holder is None:
            return True
        if cancelled():
            return False
        if holder != said:
            joblog.append([f"waiting: repository {name} is in use by job {holder}"])
            said = holder
        if deadline - time.monotonic() < MIN_RUN:
            raise JobError(f"repository {name} stayed locked by job {holder} for this job's whole time budget; "
                           "try again later")
        time.sleep(1)


def _let_borg_stop(joblog):
    """The playbook was stopped (canceled, timed out). On each host borg gets SIGINT, then SIGKILL
    after the contract's BORG_STOP_GRACE s (plugins/module_utils/_process.py); over SSH the worker
    cannot see it end, so the repository stays locked (heartbeat on) until that bound has passed."""
    joblog.append([f"*** playbook stopped: the repository stays locked {q.STOP_HOLD} s while borg "
                   "stops on the hosts (SIGINT, then SIGKILL) ***"])
    time.sleep(q.STOP_HOLD)


# ansible-playbook runs as the child of this small program, which ansible-runner starts in a
# session of its own: when the work horse dies (SIGKILL, OOM), the kernel sends the program
# SIGTERM (PR_SET_PDEATHSIG) and it kills the playbook's whole process group, as a cancel does,
# instead of leaving an orphaned playbook running on.
PLAYBOOK_GUARD = """#!{python}
import ctypes, os, signal, subprocess, sys

def die(*_):
    os.killpg(0, signal.SIGKILL)

signal.signal(signal.SIGTERM, die)
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != {horse}:
    die()
proc = subprocess.Popen([{playbook!r}] + sys.argv[1:])
rc = proc.wait()
sys.exit(rc if rc >= 0 else 128 - rc)
"""


def write_playbook_guard(directory):
    path = os.path.join(directory, "playbook-guard")
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700), "w") as f:
        f.write(PLAYBOOK_GUARD.format(python=sys.executable, horse=os.getpid(),
                                      playbook=exe if os.path.exists(exe) else "ansible-playbook"))
    return path


class PlaybookRun:
    """One ansible_runner.run bound to one job row: streams events to the job's log, keeps the
    run's stats (set_stats, in runner's playbook_on_stats event) for the job's result."""

    def __init__(self, cfg, db, r, row, params, spec, joblog):
        self.cfg, self.db, self.r, self.row, self.params, self.spec = cfg, db, r, row, params, spec
        self.job_id, self.joblog = row["id"], joblog
        self.stats = {}        # what the playbook recorded with set_stats
        self.failures = []     # (host, task, msg)
        self.verbose = []      # output outside tasks (inventory and start-up errors)
        self.status, self.rc = None, None
        self.last_cancel_check = 0.0
        self.cancel_seen = False
        # Writes not yet in MariaDB (it was unreachable): the playbook's start time and log lines.
        self.pending_start, self.pending_log = None, []
        self.db_down_at = None   # monotonic time of the last failed write, None while MariaDB answers
        self.timeout = spec.timeout
        self.pdd = None   # the private data dir, from run() until remove_dir()

    def report(self):
        """What the playbook reported under its kind's result_key (None: nothing)."""
        return self.stats.get(self.spec.result_key)

    def run(self, timeout=None):
        self.timeout = timeout or self.timeout
        root = self.cfg["COLLECTION_ROOT"]
        playbook = os.path.join(root, "playbooks", self.spec.playbook)
        if not os.path.isfile(playbook):
            raise JobError(f"playbook {self.spec.playbook} is missing from {root}/playbooks")
        os.makedirs(self.cfg["RUN_DIR"], exist_ok=True)
        self.pdd = pdd = tempfile.mkdtemp(prefix=f"job-{self.job_id}-", dir=self.cfg["RUN_DIR"])
        password = None
        try:
            inv = write_inventory(self.cfg, os.path.join(pdd, "inventory"))
            extravars = self.params.get("extravars")
            if self.spec.fetches:
                # Where the playbook fetches its file to: inside this run's directory, removed with it.
                extravars = dict(extravars or {}, borgfleet_index_dest=results.fetched_path(pdd))
            write_extravars(pdd, extravars)
            env = {
                "ANSIBLE_CONFIG": os.path.join(root, "ansible.cfg"),
                "ANSIBLE_NOCOLOR": "1",
                # ansible-playbook of this interpreter's venv.
                "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
                # A fleet the plugin cannot read (database, key file) fails the run, never runs no hosts.
                "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
            }
            if self.cfg["DB_PASSWORD"]:
                # Runner writes the whole environment to artifacts/<id>/command: the DB password
                # goes through a FIFO instead, which never holds it on disk.
                password = SecretFifo(self.cfg["DB_PASSWORD"])
                env["BORGFLEET_DB_PASSWORD_FILE"] = password.path
            limit = self.params.get("limit")
            runner = ansible_runner.interface.init_runner(
                private_data_dir=pdd, project_dir=root, inventory=inv,
                # The playbook dies with this work horse (the guard), so it is named on the command line.
                # Check mode: a kind that always runs so (a preview), or a dry run asked in the params.
                binary=write_playbook_guard(pdd),
                cmdline=shlex.quote(playbook) + (" --check" if self.spec.check_mode or self.params.get("check") else ""),
                limit=",".join(limit) if limit else None,
                ident=self.job_id, suppress_env_files=True, envvars=env, quiet=True,
                # Runner's default caches the hosts' facts as files under artifacts/: keep them in memory.
                fact_cache_type="memory",
                timeout=self.timeout, rotate_artifacts=1,
                event_handler=self.on_event, cancel_callback=self.cancelled,
                finished_callback=self.on_finished)
            runner.config.env = playbook_env(runner.config.env, env)
            runner.run()
        finally:
            if password:
                password.close()

    def remove_dir(self):
        """Remove the run's private data dir (once what it fetched is recorded)."""
        if self.pdd:
            remove_tree(self.pdd)
            self.pdd = None

    def on_event(self, event):
        etype = event.get("event")
        if etype == "playbook_on_start":
            self.pending_start = datetime.now(timezone.utc).replace(tzinfo=None)
        stdout = event.get("stdout")
        if stdout:
            self.pending_log.extend(stdout.splitlines())
        self.save()
        if stdout and etype == "verbose":
            self.verbose.append(stdout)
        data = event.get("event_data") or {}
        name = (data.get("task") or "").strip()
        res = data.get("res")
        if etype == "playbook_on_stats":
            self.stats = data.get("artifact_data") or {}
        elif etype in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            msg = res.get("msg") if isinstance(res, dict) else None
            self.failures.append((data.get("host"), name, msg or etype))
        return False  # nothing to keep on disk: the log is in MariaDB

    def cancelled(self):
        # Runner calls this on every output chunk: ask Redis at most once a second, and once
        # canceled stay canceled (runner re-reads this until the playbook process is gone).
        now = time.monotonic()
        if not self.cancel_seen and now - self.last_cancel_check >= 1:
            self.last_cancel_check = now
            try:
                self.cancel_seen = bool(self.r.exists(q.cancel_key(self.job_id)))
            except RedisError as e:
                # Redis away (restarting): not a cancel. Raising here would make runner abandon the
                # playbook; the flag is read again in a second.
                log.warning("cancel flag of job %s not readable (%s)", self.job_id, e)
        return self.cancel_seen

    def on_finished(self, runner):
        self.status, self.rc = runner.status, runner.rc
        self.save(final=True)

    def save(self, final=False):
        """Write the pending start time and log lines.

        An event handler that raised would abort ansible-runner and leave the playbook running,
        so while MariaDB is unreachable (restarting) the writes are kept and tried again at most
        once a second; at the end of the run they wait for it (DB_RETRY_SECONDS) and then raise."""
        if not (self.pending_start or self.pending_log):
            return
        if not final and self.db_down_at is not None and time.monotonic() - self.db_down_at < 1:
            return
        try:
            if self.db_down_at is not None and not final:
                self.db.ping(reconnect=True)
            retry = None if final else 0
            if self.pending_start:
                execute(self.db, "UPDATE jobs SET playbook_started_at=%s WHERE id=%s",
                        (self.pending_start, self.job_id), retry=retry)
                self.pending_start = None
            if self.pending_log:
                self.joblog.append(self.pending_log, retry=retry)
                self.pending_log = []
        except pymysql.err.Error as e:
            if final or not connection_lost(e):
                raise
            if self.db_down_at is None:
                log.warning("job %s: MariaDB unreachable (%s); its log is kept until it answers", self.job_id, e)
            self.db_down_at = time.monotonic()
        else:
            self.db_down_at = None

    def failure_message(self):
        if self.failures:
            host, task, msg = self.failures[-1]
            return f"{host}: task '{task}' failed: {msg}"
        # Ansible wraps these warnings at 80 columns (also after a hyphen): rejoin before matching.
        text = " ".join(re.sub(r"-\n", "-", "\n".join(self.verbose)).split())
        m = re.search(r"fleet\.yml with (?:auto|borgfleet\.backup\.fleet) plugin: (.+?)(?= \[WARNING\]| ERROR!|$)", text)
        if m:
            return f"the fleet inventory failed: {m.group(1)}"
        if self.status == "timeout":
            return f"the playbook ran longer than its time budget ({self.timeout} s) and was stopped"
        return f"playbook {self.spec.playbook} ended {self.status} (rc {self.rc})"


def remove_tree(path, attempts=10):
    """Remove a run's private data dir, also when the playbook's last children (ssh masters, runner's
    artifact writers) still add files while it is being removed: a single rmtree then leaves it behind."""
    for _ in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            return
        time.sleep(0.2)
    log.warning("could not remove the run directory %s", path)


_RUN_DIR_RE = re.compile(r"^job-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-")


def sweep_run_dirs(cfg, db):
    """Remove the private data dirs of finished jobs: a killed work horse never reached its own
    cleanup. Dirs of jobs still queued, waiting or running (on any worker) are left alone."""
    removed = []
    try:
        names = os.listdir(cfg["RUN_DIR"])
    except FileNotFoundError:
        return removed
    for name in names:
        m = _RUN_DIR_RE.match(name)
        if not m:
            continue
        row = query(db, "SELECT status FROM jobs WHERE id=%s", (m.group(1),), one=True)
        if row is None or row["status"] in q.FINAL:
            path = os.path.join(cfg["RUN_DIR"], name)
            remove_tree(path)
            removed.append(path)
    return removed


def write_inventory(cfg, directory):
    """An inventory source for the fleet plugin pointing at this service's database and key file.

    It holds no secret: the plugin decrypts the passphrases in ansible's memory, so they are
    never written to the private data dir; the DB password comes through SecretFifo."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "borgfleet.fleet.yml")
    with open(path, "w") as f:
        json.dump({"plugin": "borgfleet.backup.fleet", "db_host": cfg["DB_HOST"],
                   "db_port": cfg["DB_PORT"], "db_user": cfg["DB_USER"], "db_name": cfg["DB_NAME"],
                   "secret_key_file": cfg["SECRET_KEY_FILE"]}, f)
    return path


class _UnsafeDumper(yaml.SafeDumper):
    """YAML with every string value tagged !unsafe (names of variables stay plain)."""


_UnsafeDumper.add_representer(str, lambda d, v: d.represent_scalar("!unsafe", v, style='"'))
_UnsafeDumper.add_representer(dict, lambda d, m: yaml.MappingNode(
    "tag:yaml.org,2002:map", [(d.represent_str(str(k)), d.represent_data(v)) for k, v in m.items()]))


def write_extravars(pdd, extravars):
    """The job's extra vars as runner's env/extravars file (passed as -e @file), each string marked
    !unsafe: archive and backup names come from the database and borg, never templates."""
    if not extravars:
        return
    os.makedirs(os.path.join(pdd, "env"), exist_ok=True)
    with open(os.path.join(pdd, "env", "extravars"), "w") as f:
        yaml.dump(extravars, f, Dumper=_UnsafeDumper, allow_unicode=True)


# What a playbook inherits from the worker's environment besides our own variables and runner's
# (ANSIBLE_*, AWX_*, RUNNER_*): never the Flask secret, the Redis URL or the DB password.
PASS_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SSH_AUTH_SOCK")


def playbook_env(runner_env, ours):
    """Runner seeds a run's environment with the worker's whole os.environ (and writes it to the
    run's artifacts): keep only what a playbook needs."""
    env = {k: v for k, v in runner_env.items()
           if k in ours or k in PASS_ENV or k == "ORIGINAL_STDOUT_CALLBACK" or k.startswith(("ANSIBLE_", "AWX_", "RUNNER_"))}
    # Runner also sets ANSIBLE_HOST_KEY_CHECKING=False unless it is set: ssh then gets
    # StrictHostKeyChecking=no ahead of a host's pinned known_hosts and connects to any host key.
    # ansible.cfg (host_key_checking = True) decides, unless the worker's own environment says otherwise.
    if "ANSIBLE_HOST_KEY_CHECKING" not in ours and "ANSIBLE_HOST_KEY_CHECKING" not in os.environ:
        env.pop("ANSIBLE_HOST_KEY_CHECKING", None)
    return env


class SecretFifo:
    """Hands one secret to one reader through a FIFO in a private directory outside the run dir:
    nothing holds it on disk. Served once, then removed, so a second reader fails instead of waiting."""

    def __init__(self, secret):
        self.dir = tempfile.mkdtemp(prefix="borgfleet-secret-")
        self.path = os.path.join(self.dir, "db_password")
        os.mkfifo(self.path, 0o600)
        self.data, self.done = secret.encode(), threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        # Non-blocking open polled: close() never has to race a writer blocked in open().
        while not self.done.wait(0.05):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:   # ENXIO: no reader yet
                continue
            try:
                os.set_blocking(fd, True)
                os.write(fd, self.data)
            except OSError:
                pass
            finally:
                os.close(fd)
                os.unlink(self.path)
                self.done.set()

    def close(self):
        self.done.set()
        self.thread.join()
        shutil.rmtree(self.dir, ignore_errors=True)
