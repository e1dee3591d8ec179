"""The service's job kinds, one row each.

Read by the web side and the queue (fleet/ queues runs through queue.create_job, which takes
the kind's queue, RQ timeout, retry and repository lock from here), the worker (jobs.py: its
playbook, budget and result key; results.py: what the result becomes) and the scheduler
(scheduler.py: the backup job columns of a scheduled kind).

A new kind: a row here; if its result becomes rows, a recorder in results.py; and the
playbook reports under `result_key` with set_stats (docs/contract.md).
"""
from typing import NamedTuple, Optional, Tuple


class Schedule(NamedTuple):
    """A kind run on a backup job's own cron expression: its columns in backup_jobs."""
    cron: str    # the cron expression (NULL: not scheduled)
    next: str    # the next due time (UTC)
    last: str    # the due time of the last run queued


class Kind(NamedTuple):
    name: str
    playbook: str
    queue: str
    # The job's time budget in seconds: the wait for its repository lock and the playbook both count.
    timeout: int
    # Whether a failed run is run again (idempotent playbooks only).
    retry: bool
    # One run at a time per repository (client/backup): the worker waits for the lock first.
    locks_repository: bool
    # The set_stats key the playbook reports its result under (runner's playbook_on_stats event).
    result_key: Optional[str]
    schedule: Optional[Schedule] = None
    # Run the playbook in check mode (--check): a dry run that changes nothing.
    check_mode: bool = False
    # The kinds queued after each successful run of this one: for the same backup job when it asks
    # for them (fleet/backup_jobs.py follow_up), or for the same server (fleet/facts.py follow_up).
    then: Tuple[str, ...] = ()
    # A file the playbook fetches to the controller (the worker's run directory; extra var
    # borgfleet_index_dest): the recorder reads it before the run directory is removed.
    fetches: bool = False


def _recovery(action, timeout, retry, locks_repository):
    """An instant recovery kind: one playbook for all, its borgfleet_recovery_state set by the run
    (fleet/recovery.py), one queue, the module's result per host under one stats key."""
    return Kind(f"recovery_{action}", "instant_recovery.yml", "borgfleet-recovery", timeout, retry=retry,
                locks_repository=locks_repository, result_key="borgfleet_instant_recovery")


# In the order workers take their queues: user-facing quick work first, long backups last.
_ROWS = (
    # Read-only looks into a repository for the restore pages: no service lock (borg's own shared
    # lock is enough), and no retry, so a page waiting for the listing hears of a failure at once.
    Kind("browse", "browse.yml", "borgfleet-browse", 900, retry=False,
         locks_repository=False, result_key="borgfleet_browse"),
    Kind("search", "search.yml", "borgfleet-browse", 1800, retry=False,
         locks_repository=False, result_key="borgfleet_search"),
    # Every item of one archive into the service's index (fleet/archive_index.py): after each backup and
    # on the first browse of an archive. Read-only like browse, and idempotent (a load replaces nothing).
    Kind("index_archive", "index_archive.yml", "borgfleet-browse", 1800, retry=True,
         locks_repository=False, result_key="borgfleet_index", fetches=True),
    Kind("delete_archive", "delete_archive.yml", "borgfleet-delete_archive", 1800, retry=False,
         locks_repository=True, result_key="borgfleet_delete_archive"),
    # What a retention would keep (and by which rule) and prune: prune.yml --check, a real
    # borg prune --dry-run, possibly of a retention not saved yet (extra var borgfleet_retention).
    Kind("prune_preview", "prune.yml", "borgfleet-prune_preview", 900, retry=True,
         locks_repository=True, result_key="borgfleet_prune", check_mode=True),
    # A server set up is then asked what it runs (databases, storage), unless settings say not to.
    Kind("setup", "setup.yml", "borgfleet-setup", 3600, retry=True,
         locks_repository=False, result_key="borgfleet_repository", then=("detect_capabilities",)),
    Kind("list_archives", "list_archives.yml", "borgfleet-list_archives", 900, retry=True,
         locks_repository=True, result_key="borgfleet_list_archives"),
    # Writes files on a client (a dry run: check mode, params "check"): never retried.
    Kind("restore", "restore_anywhere.yml", "borgfleet-restore", 6 * 3600, retry=False,
         locks_repository=True, result_key="borgfleet_restore_anywhere"),
    Kind("collect_stats", "collect_stats.yml", "borgfleet-collect_stats", 900, retry=True,
         locks_repository=False, result_key="borgfleet_stats"),
    Kind("detect_capabilities", "detect_capabilities.yml", "borgfleet-collect_stats", 900, retry=True,
         locks_repository=False, result_key="borgfleet_capabilities"),
    # Reads pools (df, du) and repositories (borg info, borg's shared lock): no service lock.
    Kind("analyze_pools", "analyze_pools.yml", "borgfleet-collect_stats", 1800, retry=True,
         locks_repository=False, result_key="borgfleet_pools"),
    # Instant recovery: start and resume mount the archive (borg), so they hold the repository's lock,
    # and so do stop and remove, so that no two actions on a session of one repository overlap.
    # Query and cleanup read or tear down the host's own sessions only.
    _recovery("start", 1800, retry=False, locks_repository=True),
    _recovery("resume", 1800, retry=False, locks_repository=True),
    _recovery("stop", 600, retry=True, locks_repository=True),
    _recovery("remove", 600, retry=True, locks_repository=True),
    _recovery("cleanup", 900, retry=True, locks_repository=False),
    # A query is not run again: a host that does not answer would hold its result back for minutes,
    # and what the others answered is recorded anyway (results.py).
    _recovery("query", 600, retry=False, locks_repository=False),
    # A retry could turn a flaky restore into a pass: a verification runs once.
    Kind("verify", "verify.yml", "borgfleet-verify", 2 * 3600, retry=False,
         locks_repository=True, result_key="borgfleet_verify",
         schedule=Schedule("verify_schedule", "verify_next_run_at", "verify_last_run_at")),
    # Prune then compact: on its own schedule, or (no prune_schedule) after each successful backup.
    Kind("prune", "prune.yml", "borgfleet-prune", 3600, retry=True,
         locks_repository=True, result_key="borgfleet_prune",
         schedule=Schedule("prune_schedule", "prune_next_run_at", "prune_last_run_at")),
    # A failed check stays failed: a retry would only hide a flaky disk.
    Kind("check", "check.yml", "borgfleet-check", 6 * 3600, retry=False,
         locks_repository=True, result_key="borgfleet_check",
         schedule=Schedule("check_schedule", "check_next_run_at", "check_last_run_at")),
    Kind("backup", "backup.yml", "borgfleet-backup", 6 * 3600, retry=False,
         locks_repository=True, result_key="borgfleet_backup",
         schedule=Schedule("schedule", "next_run_at", "last_run_at"), then=("prune", "index_archive")),
)
KINDS = {k.name: k for k in _ROWS}


def queue_order():
    """The queues in the order workers take them (each once)."""
    return list(dict.fromkeys(k.queue for k in KINDS.values()))


def scheduled():
    """The kinds run on a backup job's cron expression."""
    return [k for k in KINDS.values() if k.schedule]
