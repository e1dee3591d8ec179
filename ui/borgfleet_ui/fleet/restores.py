"""Restore from the service: browse an archive level by level, a file's versions across archives,
and restores (to the original place, another directory, or another client). Each is a queued run
of the collection's playbooks (browse.yml, search.yml, restore_anywhere.yml); pages and the API read
what it found from the job's result."""
from flask_babel import gettext as _

from .. import queue as q
from ..db import query
from .archives import get_archive
from .backup_jobs import get_backup_job
from .common import Invalid, NotFound, about, absolute_path, field, int_between
from .runs import get_job
from .servers import get_server

# At most this many paths in one restore (they travel as extra vars and in the page's URL).
MAX_PATHS = 200


def archive_path(value, what="path"):
    """A path inside an archive as borg stores it: relative (a leading / is dropped), no '..', no
    control character. '' is the top of the archive."""
    if not isinstance(value, str) or any(ord(c) < 32 for c in value):
        raise Invalid(_("%(what)s must be text without control characters", what=what))
    path = value.strip("/")
    if ".." in path.split("/"):
        raise Invalid(_("%(what)s %(value)r may not contain '..'", what=what, value=value))
    return path


def _repository(a):
    return f"{a['client_name']}/{a['backup_name']}"


def _client_id(db, a):
    """The id of the client an archive was backed up from."""
    return query(db, "SELECT client_id FROM backup_jobs WHERE id=%s", (a["backup_job_id"],), one=True)["client_id"]


def browse(db, r, archive_id, path, user):
    """Queue browse.yml: one level of the archive at path."""
    a = get_archive(db, archive_id)
    return q.create_job(db, r, "browse",
                        {"limit": [a["client_name"]],
                         "extravars": {"borgfleet_backup": a["backup_name"], "borgfleet_archive": a["name"],
                                       "borgfleet_browse_path": archive_path(path)}},
                        server_id=_client_id(db, a), backup_job_id=a["backup_job_id"], archive_id=archive_id,
                        user=user)


def search(db, r, backup_job_id, path, user, last=0):
    """Queue search.yml: the archives of the backup holding path (or a glob), and when it changed."""
    bj = get_backup_job(db, backup_job_id)
    path = archive_path(path)
    if not path:
        raise Invalid(_("path is required"))
    last = int_between(last, "last", 0, 100000)
    return q.create_job(db, r, "search",
                        {"limit": [bj["client_name"]],
                         "extravars": {"borgfleet_backup": bj["name"], "borgfleet_search_path": path,
                                       "borgfleet_search_last": last}},
                        server_id=bj["client_id"], backup_job_id=backup_job_id, user=user)


def restore(db, r, archive_id, data, user, judge_only=False):
    """Queue restore_anywhere.yml for paths of an archive.

    data: paths (required), client_id (default: the client backed up), target ("/" = where the files
    were, the default; else a directory), overwrite (replace differing files, keeping a copy under
    backup_dir), dry_run (check mode: what would be written and replaced).
    judge_only: only judge `data` (nothing queued, None); a refusal names its field (Invalid.field)."""
    a = get_archive(db, archive_id)
    with about("paths"):
        paths = field(data, "paths", required=True)
        if not isinstance(paths, list) or not paths or len(paths) > MAX_PATHS:
            raise Invalid(_("paths must be a list of 1 to %(max_paths)s paths inside the archive", max_paths=MAX_PATHS))
        paths = list(dict.fromkeys(archive_path(p, "each path") for p in paths))
        if "" in paths:
            raise Invalid(_("select files or directories, not the whole archive"))
    with about("target"):
        target = absolute_path(field(data, "target", "/"), "target")
        if ".." in target.split("/"):
            raise Invalid(_("target may not contain '..'"))
    overwrite, dry_run = field(data, "overwrite", False), field(data, "dry_run", False)
    if not isinstance(overwrite, bool) or not isinstance(dry_run, bool):
        raise Invalid(_("overwrite and dry_run must be true or false"), "overwrite")
    backup_dir = field(data, "backup_dir", "")
    if backup_dir:
        with about("backup_dir"):
            absolute_path(backup_dir, "backup_dir")
    client_id = field(data, "client_id", _client_id(db, a))
    try:
        client = get_server(db, client_id)
    except NotFound:
        raise Invalid(_("client_id %(client_id)s is not a server", client_id=client_id), "client_id") from None
    if client["role"] != "client":
        raise Invalid(_("%(name)s is not a client: restores go to clients", name=client['name']), "client_id")
    if judge_only:
        return None
    extravars = {"borgfleet_backup": a["backup_name"], "borgfleet_archive": a["name"],
                 "borgfleet_restore_paths": paths, "borgfleet_restore_target": target,
                 "borgfleet_restore_overwrite": overwrite}
    if backup_dir:
        extravars["borgfleet_restore_backup_dir"] = backup_dir
    if client["name"] != a["client_name"]:
        # Another client reads the backed-up client's repository with its own key (docs/contract.md).
        extravars["borgfleet_restore_source"] = a["client_name"]
    return q.create_job(db, r, "restore", {"limit": [client["name"]], "extravars": extravars, "check": dry_run},
                        server_id=client["id"], backup_job_id=a["backup_job_id"], archive_id=archive_id,
                        user=user, repository=_repository(a))


def job_of(db, job_id, kind, **owner):
    """A job of this kind for this archive or backup job (owner: archive_id= or backup_job_id=), as
    the pages show it: the row, with its result once it succeeded; NotFound for any other job."""
    job = get_job(db, job_id)
    if job["kind"] != kind or any(job[k] != v for k, v in owner.items()):
        raise NotFound(_("no %(kind)s job %(job_id)s here", kind=kind, job_id=job_id))
    return job
