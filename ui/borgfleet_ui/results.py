"""What a finished run reported becomes rows and the job's result (worker side).

A run's report is what its playbook recorded with set_stats under its kind's result_key
(kinds.py; the stats keys and entries are in docs/contract.md): a list with one entry per
backup ({backup, client, repository, failed, msg, error_kind, ...} and the kind's own keys),
or, for per-host results, {host: value}.
"""
import json
import logging
import os

from . import backup_latest
from .db import execute, query
from .fleet import facts, pools
from .fleet.archives import OWNER_KEYS, sort_keys
from .notifications import alerts

log = logging.getLogger(__name__)


class ResultError(Exception):
    """The playbook succeeded but its report lacks what its kind needs."""


_RECORDERS = {}


def recorder(kind, on_failure=None, partial=False):
    """Register fn(db, job, params, report) -> the job's result, for a successful run of `kind`;
    on_failure(report) -> the result of a failed one (default: its failed entries). partial: a
    failed run's report is recorded by fn too (what the hosts that answered reported is true)."""
    def register(fn):
        _RECORDERS[kind] = (fn, on_failure, partial)
        return fn
    return register


def record(db, job, params, report):
    """The job's result after a successful run (its rows written on the way); None for a kind
    without a recorder."""
    fn, _, _ = _RECORDERS.get(job["kind"], (None, None, False))
    return fn(db, job, params, report) if fn else None


def failed(job, report, db=None, params=None):
    """What a failed run still reported worth keeping: which backups failed and the class of each
    failure (error_kind: wrong_passphrase, locked, unreachable, no_space ... docs/contract.md)."""
    fn, on_failure, partial = _RECORDERS.get(job["kind"], (None, None, False))
    if on_failure:
        return on_failure(report)
    if partial and db is not None:
        try:
            return fn(db, job, params, report)
        except ResultError:
            return None
    failed_entries = [{k: e.get(k) for k in ("backup", "client", "error_kind", "msg")}
                      for e in _entries(report) if e.get("failed")]
    return {"failed": failed_entries} if failed_entries else None


def _entries(report):
    """The per-backup entries of a list report."""
    return [e for e in report if isinstance(e, dict)] if isinstance(report, list) else []


def _is_archive(a):
    return isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("stats"), dict)


@recorder("backup")
def _backup(db, job, params, report):
    archives = [e["archive"] for e in _entries(report) if _is_archive(e.get("archive"))]
    if not archives:
        raise ResultError("backup.yml succeeded but reported no archive (no entry with an archive name and"
                          " stats under its stats key borgfleet_backup)")
    # Its backup job's newest figures are recomputed when the job ends (queue.finish), archives included.
    ids = [upsert_archive(db, params["repository_id"], a) for a in archives]
    execute(db, "UPDATE jobs SET archive_id=%s WHERE id=%s", (ids[-1], job["id"]))
    return {"archives": [a["name"] for a in archives]}


@recorder("delete_archive")
def _delete_archive(db, job, params, report):
    # The playbook succeeded, so borg no longer has the archive.
    row = query(db, "SELECT repository_id FROM archives WHERE id=%s", (job["archive_id"],), one=True)
    execute(db, "DELETE FROM archives WHERE id=%s", (job["archive_id"],))
    if row:
        backup_latest.archives_changed(db, row["repository_id"])
        _collect_index_garbage(db, row["repository_id"])
    return {"deleted": params["extravars"]["borgfleet_archive"]}


def _collect_index_garbage(db, repository_id):
    """Archive rows went (their index rows with them): drop the index listings no archive reaches now.
    What borg did stays recorded if this fails; the next collection removes what this one left."""
    from .fleet import archive_index   # imported here: the fleet package pulls in the web side's modules
    try:
        archive_index.collect_garbage(db, repository_id)
    except Exception as e:
        log.warning("index listings of repository %s not collected: %s", repository_id, e)


def fetched_path(run_dir):
    """Where a kind that fetches a file (kinds.py `fetches`) has its playbook put it, in its run directory."""
    return os.path.join(run_dir, "fetched", "items.jsonl.gz")


@recorder("index_archive")
def _index_archive(db, job, params, report):
    """Load the items index_archive.yml fetched (gzip of borg list --json-lines) into the archive index,
    then delete the file."""
    from .fleet import archive_index
    values = [v for v in report.values() if isinstance(v, dict)] if isinstance(report, dict) else []
    if len(values) != 1 or not isinstance(values[0].get("items"), int):
        raise ResultError("index_archive.yml succeeded but reported no items of one host under borgfleet_index")
    path = fetched_path(params["run_dir"])
    if not os.path.isfile(path):
        raise ResultError("index_archive.yml succeeded but fetched no file of items")
    try:
        stats = archive_index.load(db, job["archive_id"], path)
    finally:
        os.unlink(path)
    if stats["items"] != values[0]["items"]:
        raise ResultError(f"the items file holds {stats['items']} items where borg listed {values[0]['items']}")
    return dict(stats, archive=values[0].get("archive"))


@recorder("setup")
def _setup(db, job, params, report):
    for sid in params.get("server_ids", []):
        execute(db, "UPDATE servers SET setup_status='ok', setup_at=UTC_TIMESTAMP() WHERE id=%s", (sid,))
    return {"servers": params.get("limit")}


@recorder("collect_stats")
def _collect_stats(db, job, params, report):
    """{host: server_facts' `system` dict} (docs/contract.md, Facts), one server_stats row each."""
    names = {s["name"]: s["id"] for s in query(db, "SELECT id, name FROM servers")}
    recorded = []
    for host, system in (report or {}).items():
        if host in names and isinstance(system, dict):
            execute(db, "INSERT INTO server_stats (server_id, data_json) VALUES (%s, %s)",
                    (names[host], json.dumps(system, default=str)))
            facts.thin_stats(db, names[host])
            recorded.append(names[host])
    if not recorded:
        raise ResultError("collect_stats.yml succeeded but reported no system stats of a known server")
    alerts.stats_collected(db, None, recorded)   # disk / memory / CPU above their thresholds
    return {"servers": len(recorded)}


@recorder("detect_capabilities", partial=True)
def _detect_capabilities(db, job, params, report):
    """{host: server_facts' `capabilities`} (docs/contract.md, Facts): the newest detection per server."""
    n = facts.record_capabilities(db, report)
    if not n:
        raise ResultError("detect_capabilities.yml reported no capabilities of a known server"
                          " (stats key borgfleet_capabilities)")
    return {"servers": n}


@recorder("analyze_pools", partial=True)
def _analyze_pools(db, job, params, report):
    """{host: {warn_percent, pools, alerts}} (docs/contract.md): a usage sample per pool. A run that
    failed on some hosts (one unreadable repository, an unreachable client) still records the pools
    it saw."""
    n = pools.record_analysis(db, report)
    if not n:
        raise ResultError("analyze_pools.yml reported no pool of a known server (stats key borgfleet_pools)")
    alerts.pools_analysed(db, None, report)   # above the threshold or forecast full
    return {"pools": n}


@recorder("list_archives")
def _list_archives(db, job, params, report):
    """Make the repository's archive rows match borg's list: add new ones, drop vanished ones."""
    repo_id, backup = params["repository_id"], params["extravars"]["borgfleet_backup"]
    entries = [e for e in _entries(report) if e.get("backup") == backup and "archives" in e]
    if not entries or not isinstance(entries[-1]["archives"], list):
        raise ResultError(f"list_archives.yml reported no archive list for backup {backup}")
    listed = entries[-1]["archives"]
    for a in listed:
        upsert_archive(db, repo_id, a)
    names = [a["name"] for a in listed]
    gone = [r["id"] for r in query(db, "SELECT id, name FROM archives WHERE repository_id=%s", (repo_id,))
            if r["name"] not in names]
    for archive_id in gone:
        execute(db, "DELETE FROM archives WHERE id=%s", (archive_id,))
    backup_latest.archives_changed(db, repo_id)
    if gone:
        _collect_index_garbage(db, repo_id)
    return {"archives": len(names), "removed": len(gone)}


def verify_report(report):
    """{host: [entry per backup verified]} (docs/contract.md, verify.yml) as the job's result; a
    failed verification keeps it too: it says which backup did not restore and why."""
    backups = [e for entries in (report or {}).values() if isinstance(entries, list)
               for e in entries if isinstance(e, dict)]
    return {"passed": bool(backups) and all(e.get("passed") for e in backups), "backups": backups}


@recorder("verify", on_failure=verify_report)
def _verify(db, job, params, report):
    result = verify_report(report)
    if not result["backups"]:
        raise ResultError("verify.yml succeeded but verified nothing (no entry under its stats key borgfleet_verify)")
    return result


def _prune_entry(params, report, playbook):
    """The report's entry of the one backup a prune run was limited to."""
    backup = params["extravars"]["borgfleet_backup"]
    entries = [e for e in _entries(report) if e.get("backup") == backup and isinstance(e.get("kept"), list)]
    if not entries:
        raise ResultError(f"{playbook} succeeded but reported no kept archives for backup {backup}"
                          " (none under its stats key borgfleet_prune)")
    return entries[-1]


@recorder("prune")
def _prune(db, job, params, report):
    """borg pruned these archives (and compacted when it pruned some): their rows go; the kept ones
    are this backup's whole archive list now, so any the service had not seen yet is added."""
    entry = _prune_entry(params, report, "prune.yml")
    pruned = [a["name"] for a in entry.get("pruned") or []]
    for name in pruned:
        execute(db, "DELETE FROM archives WHERE repository_id=%s AND name=%s", (params["repository_id"], name))
    for a in entry["kept"]:
        upsert_archive(db, params["repository_id"], {"name": a["name"]})
    backup_latest.archives_changed(db, params["repository_id"])
    if pruned:
        _collect_index_garbage(db, params["repository_id"])
    return {"kept": entry["kept"], "pruned": pruned, "compacted": bool(entry.get("compacted"))}


@recorder("prune_preview")
def _prune_preview(db, job, params, report):
    """What the retention previewed would keep (with the rule keeping each) and prune: nothing changed."""
    entry = _prune_entry(params, report, "prune.yml --check")
    return {"retention": params["retention"], "kept": entry["kept"],
            "pruned": [a["name"] for a in entry.get("pruned") or []]}


@recorder("check")
def _check(db, job, params, report):
    backups = [{k: e.get(k) for k in ("backup", "ok", "duration")} for e in _entries(report)]
    if not backups:
        raise ResultError("check.yml succeeded but checked nothing (no entry under its stats key borgfleet_check)")
    return {"ok": all(b["ok"] for b in backups), "backups": backups,
            "scope": params["extravars"]["borgfleet_check_scope"],
            "verify_data": params["extravars"]["borgfleet_check_verify_data"]}


def upsert_archive(db, repo_id, a):
    """Add or update one archive row (backup_latest is refreshed by its recorder or, for a backup, at the job's end)."""
    s = a.get("stats") or {}
    # The names the list sorts by, copied onto the row (fleet/archives.py OWNER_KEYS); a repository gone
    # meanwhile leaves them empty and the foreign key refuses the row.
    keys = sort_keys(db, repo_id) or dict.fromkeys(OWNER_KEYS, "")
    execute(db, "INSERT INTO archives (repository_id, name, borg_id, start_at, end_at, duration, nfiles,"
                " original_size, compressed_size, deduplicated_size, sort_client, sort_server)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                # A plain listing has no figures: keep the ones recorded at backup time.
                " ON DUPLICATE KEY UPDATE sort_client=VALUES(sort_client), sort_server=VALUES(sort_server),"
                " borg_id=COALESCE(VALUES(borg_id), borg_id),"
                " start_at=COALESCE(VALUES(start_at), start_at), end_at=COALESCE(VALUES(end_at), end_at),"
                " duration=COALESCE(VALUES(duration), duration), nfiles=COALESCE(VALUES(nfiles), nfiles),"
                " original_size=COALESCE(VALUES(original_size), original_size),"
                " compressed_size=COALESCE(VALUES(compressed_size), compressed_size),"
                " deduplicated_size=COALESCE(VALUES(deduplicated_size), deduplicated_size)",
            (repo_id, a["name"], a.get("id"), _dt(a.get("start")), _dt(a.get("end")), a.get("duration"),
             s.get("nfiles"), s.get("original_size"), s.get("compressed_size"), s.get("deduplicated_size"),
             keys["sort_client"], keys["sort_server"]))
    return query(db, "SELECT id FROM archives WHERE repository_id=%s AND name=%s", (repo_id, a["name"]),
                 one=True)["id"]


def _dt(v):
    # borg prints ISO times like 2026-11-25T23:40:01.000000; MariaDB takes them without the 'T'.
    return v.replace("T", " ")[:26] if isinstance(v, str) else None


def _look(playbook, key):
    """The recorder of a restore page's look into a repository (browse.yml: `entries` of one level;
    search.yml: what was `found` across archives, docs/contract.md): the result of the one host the
    run was limited to, as the page shows it."""
    def record_look(db, job, params, report):
        values = [v for v in report.values() if isinstance(v, dict)] if isinstance(report, dict) else []
        if len(values) != 1 or not isinstance(values[0].get(key), list):
            raise ResultError(f"{playbook} succeeded but reported no {key} of one host under its stats key")
        return values[0]
    return record_look


recorder("browse")(_look("browse.yml", "entries"))
recorder("search")(_look("search.yml", "found"))


def restore_report(report):
    """What a restore wrote, or would write (dry_run), or why it refused: {host, target, dry_run,
    refused, files, nfiles, skipped, conflicts, replaced, backup_dir, bytes, duration, msg}, and what
    was asked (paths, overwrite, backup_dir_requested). A refused restore keeps it too: its conflicts
    say which files differ, and its page can ask again, replacing them."""
    if not isinstance(report, dict) or not report:
        return None
    host, entry = next(iter(report.items()))
    if not isinstance(entry, dict):
        return None
    entry = dict(entry, host=host)
    # "failed" of a job's result is the per-backup list of the job page (failed()); here it is a flag.
    entry["refused"] = bool(entry.pop("failed", False))
    return entry


@recorder("restore", on_failure=restore_report)
def _restore(db, job, params, report):
    result = restore_report(report)
    if result is None:
        raise ResultError("restore_anywhere.yml succeeded but reported no result under borgfleet_restore_anywhere")
    return result


# --- instant recovery (kinds recovery_*): {host: the instant_recovery module's result} ---------

def _host_report(job, params, report):
    """The module's result on the job's one host (start, resume, stop, remove, cleanup)."""
    entry = (report or {}).get(params["host"]) if isinstance(report, dict) else None
    if not isinstance(entry, dict):
        raise ResultError(f"instant_recovery.yml reported nothing for host {params['host']}"
                          " (stats key borgfleet_instant_recovery)")
    return entry


def save_session(db, server_id, s, backup_job_id=None):
    """Upsert a session as its host reported it; its backup job and archive are found by repository
    (or given: the job that started it knows them). Returns the row id."""
    repo = query(db, "SELECT id, backup_job_id FROM repositories WHERE location=%s", (s.get("repository") or "",),
                 one=True)
    if repo:
        backup_job_id = repo["backup_job_id"]
    archive = query(db, "SELECT a.id FROM archives a JOIN repositories r ON r.id=a.repository_id"
                        " WHERE r.backup_job_id=%s AND a.name=%s", (backup_job_id, s.get("archive")),
                    one=True) if backup_job_id else None
    execute(db, "INSERT INTO recovery_sessions (server_id, name, backup_job_id, archive_id, archive, repository,"
                " engine, address, port, socket_dir, datadir, state, pid, started_at, layer_bytes, health_json,"
                " checked_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,UTC_TIMESTAMP(3))"
                " ON DUPLICATE KEY UPDATE backup_job_id=VALUES(backup_job_id), archive_id=VALUES(archive_id),"
                " archive=VALUES(archive), repository=VALUES(repository), engine=VALUES(engine),"
                " address=VALUES(address), port=VALUES(port), socket_dir=VALUES(socket_dir),"
                " datadir=VALUES(datadir), state=VALUES(state), pid=VALUES(pid), started_at=VALUES(started_at),"
                " layer_bytes=VALUES(layer_bytes), health_json=VALUES(health_json), checked_at=VALUES(checked_at)",
            (server_id, s["name"], backup_job_id, archive["id"] if archive else None, s.get("archive"),
             s.get("repository"), s.get("engine"), s.get("address"), s.get("port"), s.get("socket_dir"),
             s.get("datadir"), s.get("state"), s.get("pid"), _dt((s.get("started_at") or "").rstrip("Z") or None),
             s.get("layer_bytes"), json.dumps(s.get("health") or {})))
    return query(db, "SELECT id FROM recovery_sessions WHERE server_id=%s AND name=%s", (server_id, s["name"]),
                 one=True)["id"]


def _replace_sessions(db, server_id, sessions):
    """The host's sessions are exactly these now: upsert each, drop the rows of the others."""
    keep = [save_session(db, server_id, s) for s in sessions if isinstance(s, dict) and s.get("name")]
    for row in query(db, "SELECT id FROM recovery_sessions WHERE server_id=%s", (server_id,)):
        if row["id"] not in keep:
            execute(db, "DELETE FROM recovery_sessions WHERE id=%s", (row["id"],))
    return len(keep)


def _session_started(db, job, params, report):
    from .fleet.recovery import connection   # imported here: the fleet package pulls in the web side's modules
    entry = _host_report(job, params, report)
    s = entry.get("session")
    if not isinstance(s, dict) or not s.get("name"):
        raise ResultError("instant_recovery.yml started nothing: no session in its report")
    session_id = save_session(db, job["server_id"], s, job["backup_job_id"])
    alerts.session_event(db, None, "session_started", job, s, session_id)
    bj = query(db, "SELECT databases_json FROM backup_jobs WHERE id=%s", (job["backup_job_id"],), one=True)
    databases = json.loads(bj["databases_json"] or "[]") if bj else []
    return {"host": params["host"], "session_id": session_id, "session": s,
            "ready_seconds": entry.get("ready_seconds"), "connect": connection(s, databases)}


recorder("recovery_start")(_session_started)
recorder("recovery_resume")(_session_started)


@recorder("recovery_stop")
def _session_stopped(db, job, params, report):
    s = _host_report(job, params, report).get("session")
    if not isinstance(s, dict) or not s.get("name"):
        raise ResultError("instant_recovery.yml stopped nothing: no session in its report")
    session_id = save_session(db, job["server_id"], s, job["backup_job_id"])
    alerts.session_event(db, None, "session_stopped", job, s, session_id)
    return {"host": params["host"], "session_id": session_id, "session": s}


@recorder("recovery_remove")
def _session_removed(db, job, params, report):
    entry = _host_report(job, params, report)
    session = query(db, "SELECT * FROM recovery_sessions WHERE id=%s", (params["session_id"],), one=True)
    execute(db, "DELETE FROM recovery_sessions WHERE id=%s", (params["session_id"],))
    if session:
        alerts.session_event(db, None, "session_removed", job, session, params["session_id"])
    return {"host": params["host"], "removed": entry.get("removed") or []}


@recorder("recovery_cleanup")
def _sessions_cleaned(db, job, params, report):
    entry = _host_report(job, params, report)
    kept = _replace_sessions(db, job["server_id"], entry.get("sessions") or [])
    return {"host": params["host"], "removed": entry.get("removed") or [], "kept": kept}


# A host that does not answer fails the run; the sessions of those that did are still recorded.
@recorder("recovery_query", partial=True)
def _sessions_queried(db, job, params, report):
    ids = {s["name"]: s["id"] for s in query(db, "SELECT id, name FROM servers")}
    hosts = {h: e for h, e in (report or {}).items() if h in ids and isinstance(e, dict)
             and isinstance(e.get("sessions"), list)}
    if not hosts:
        raise ResultError("instant_recovery.yml (state=query) reported the sessions of no known host")
    return {"hosts": {h: _replace_sessions(db, ids[h], e["sessions"]) for h, e in sorted(hosts.items())}}
