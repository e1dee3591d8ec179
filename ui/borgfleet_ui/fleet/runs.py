"""Runs (the jobs table): their rows, logs and cancellation. They are queued by the area they act on."""
import json
from datetime import timedelta

from flask_babel import gettext as _

from .. import queue as q
from ..db import execute, query
from ..kinds import KINDS
from .common import Invalid, ListArgs, Listing, NotFound, list_query

JOB_COLS = ("j.id, j.seq, j.kind, j.status, j.server_id, s.name AS server_name, j.backup_job_id,"
            " b.name AS backup_name, j.archive_id, j.created_by, j.created_at, j.started_at, j.playbook_started_at,"
            " j.finished_at,"
            " j.worker, j.rc, j.error, j.result_json, j.log_purged_at")


def job_out(row):
    row = dict(row)
    row["result"] = json.loads(row.pop("result_json") or "null")
    return row


JOB_FROM = "FROM jobs j LEFT JOIN servers s ON s.id=j.server_id LEFT JOIN backup_jobs b ON b.id=j.backup_job_id"
LISTING = Listing(
    source=JOB_FROM, key="j.seq",
    # status: an ENUM, sorted in the order a job lives (queued, waiting, running, then the final ones).
    sorts={"kind": ("j.kind", "asc"), "status": ("j.status", "asc"),
           "target": ("CONCAT(COALESCE(s.name, ''), ' ', COALESCE(b.name, ''))", "asc"),
           "created": ("j.created_at", "desc"), "finished": ("COALESCE(j.finished_at, '1000-01-01')", "desc")},
    search=("j.id", "j.kind", "s.name", "b.name", "j.error", "j.created_by"),
    choices={"status": ("j.status", q.STATUSES), "kind": ("j.kind", tuple(sorted(KINDS)))},
    ids={"backup_job_id": "j.backup_job_id", "server_id": "j.server_id"})


def list_jobs(db, status=None, backup_job_id=None, limit=50, before=None, kind=None, largs=None):
    """A page of jobs, newest first, or as `largs` (ListArgs of LISTING) sorts and filters."""
    largs = largs or ListArgs("", "desc", "", {})
    given = {"status": status, "backup_job_id": backup_job_id, "kind": kind}
    largs = largs._replace(filters={**largs.filters, **{k: v for k, v in given.items() if v}})
    sql, args = list_query(LISTING, JOB_COLS, largs, before, limit)
    return [job_out(r) for r in query(db, sql, args)]


def get_job(db, job_id):
    row = query(db, f"SELECT {JOB_COLS} FROM jobs j LEFT JOIN servers s ON s.id=j.server_id"
                    " LEFT JOIN backup_jobs b ON b.id=j.backup_job_id WHERE j.id=%s", (job_id,), one=True)
    if not row:
        raise NotFound(_("job %(job_id)s not found", job_id=job_id))
    return job_out(row)


def job_log(db, job_id, after=0, limit=1000):
    rows = query(db, "SELECT n, line FROM job_log WHERE job_id=%s AND n > %s ORDER BY n LIMIT %s",
                 (job_id, after, limit))
    return rows


def cancel_job(db, r, job_id):
    job = get_job(db, job_id)
    if job["status"] in q.FINAL:
        raise Invalid(_("job is already %(status)s", status=job['status']))
    r.set(q.cancel_key(job_id), "1", ex=86400)
    if job["status"] == "queued":
        # Not started: the worker skips rows already final.
        q.finish(db, job_id, "canceled", error="canceled by a user before it started", r=r)


DEFAULT_LOG_RETENTION_DAYS = 90
PURGE_JOBS_PER_BATCH = 50       # jobs whose logs one batch deletes
PURGE_LINES_PER_DELETE = 5000   # rows one DELETE removes: each statement's locks are short


def purge_job_logs(db, days, max_lines=50_000, now=None):
    """Delete the log lines of finished jobs that finished more than `days` days ago (0: keep all),
    at most about `max_lines` lines a call, in small DELETEs; the job rows stay, marked
    log_purged_at. Queued, waiting and running jobs are never touched. Returns the lines deleted."""
    if days <= 0:
        return 0
    cutoff = query(db, "SELECT UTC_TIMESTAMP() - INTERVAL %s DAY AS t", (days,), one=True)["t"] if now is None \
        else now - timedelta(days=days)
    final = tuple(q.FINAL)
    deleted = 0
    while deleted < max_lines:
        jobs = query(db, "SELECT id FROM jobs WHERE log_purged_at IS NULL AND finished_at < %s AND status IN %s"
                         " ORDER BY finished_at LIMIT %s", (cutoff, final, PURGE_JOBS_PER_BATCH))
        if not jobs:
            break
        # The lines of the whole batch of jobs in a few DELETEs (most logs are short), then the jobs
        # left without a line marked: one left half done (max_lines reached) is taken up next time.
        ids = tuple(j["id"] for j in jobs)
        while deleted < max_lines:
            limit = min(PURGE_LINES_PER_DELETE, max_lines - deleted)
            n = execute(db, "DELETE FROM job_log WHERE job_id IN %s ORDER BY job_id, n LIMIT %s", (ids, limit))
            deleted += n
            if n < limit:
                break
        execute(db, "UPDATE jobs SET log_purged_at=UTC_TIMESTAMP() WHERE id IN %s"
                    " AND NOT EXISTS (SELECT 1 FROM job_log l WHERE l.job_id=jobs.id)", (ids,))
    return deleted
