"""Archives as the service last saw them in borg, and their deletion (a queued run)."""
import json

from flask_babel import gettext as _

from .. import queue as q
from ..contract import contract
from ..db import execute, query
from .common import ListArgs, Listing, NotFound, list_query, page_query

ARCHIVE_COLS = ("a.id, a.name, a.start_at, a.end_at, a.duration, a.nfiles, a.original_size,"
                " a.compressed_size, a.deduplicated_size, a.repository_id, r.location AS repository,"
                " b.id AS backup_job_id, b.name AS backup_name, c.name AS client_name,"
                " COALESCE(s.name, 'local') AS server_name, b.databases_json")
ARCHIVE_JOINS = (" JOIN repositories r ON r.id=a.repository_id"
                 " JOIN backup_jobs b ON b.id=r.backup_job_id JOIN servers c ON c.id=r.client_id"
                 " LEFT JOIN servers s ON s.id=r.server_id")
ARCHIVE_SELECT = f"SELECT {ARCHIVE_COLS} FROM archives a{ARCHIVE_JOINS}"
LISTING = Listing(
    source=f"FROM archives a{ARCHIVE_JOINS}", key="a.id",
    sorts={"name": ("a.name", "asc"), "client": ("a.sort_client", "asc"),
           "server": ("a.sort_server", "asc"), "start": ("COALESCE(a.start_at, '1000-01-01')", "desc"),
           "files": ("COALESCE(a.nfiles, -1)", "desc"), "original": ("COALESCE(a.original_size, -1)", "desc"),
           "deduplicated": ("COALESCE(a.deduplicated_size, -1)", "desc")},
    search=("a.name", "c.name", "b.name"), ids={"backup_job_id": "b.id"})
# Sorts by a column of archives alone (the listing's expression, indexed: migration 0952), paged on
# the archives table before the names are joined; the others sort through the joins.
OWN_SORTS = {"id": "id", "name": "name", "start": "sort_start", "files": "sort_files",
             "original": "sort_original", "deduplicated": "sort_deduplicated", "client": "sort_client",
             "server": "sort_server"}
# The client and server sorts' values, from the names in other tables (through ARCHIVE_JOINS), kept on
# each archive row so that an index serves those sorts (migration 0961): written with the row
# (results.upsert_archive) and refreshed when a server is renamed (refresh_sort_keys). Client and
# backup names of a repository never change (servers._check_move, backup_jobs.update_backup_job).
OWNER_KEYS = {"sort_client": "CONCAT(c.name, '/', b.name)", "sort_server": "COALESCE(s.name, 'local')"}


def sort_keys(db, repository_id):
    """{sort_client, sort_server} of the archives of a repository; None when it does not exist."""
    return query(db, "SELECT " + ", ".join(f"{expr} AS {col}" for col, expr in OWNER_KEYS.items())
                     + " FROM repositories r JOIN backup_jobs b ON b.id=r.backup_job_id JOIN servers c"
                       " ON c.id=r.client_id LEFT JOIN servers s ON s.id=r.server_id WHERE r.id=%s",
                 (repository_id,), one=True)


def refresh_sort_keys(db, server_id):
    """Rewrite the sort keys of the archives whose client or backup server is this server (after
    a rename)."""
    execute(db, f"UPDATE archives a{ARCHIVE_JOINS} SET "
                + ", ".join(f"a.{col}={expr}" for col, expr in OWNER_KEYS.items())
                + " WHERE r.client_id=%s OR r.server_id=%s", (server_id, server_id))


def archive_out(row):
    """An archive row; `recoverable`: its backup's archives hold a data directory that instant
    recovery can start (the contract's rule of what can be verified)."""
    row = dict(row)
    row["recoverable"] = contract.verifiable(json.loads(row.pop("databases_json") or "[]"))
    return row


def list_archives(db, backup_job_id=None, limit=50, before=None, largs=None):
    """A page of archives, newest first, or as `largs` (ListArgs of LISTING) sorts and filters."""
    largs = largs or ListArgs("", "desc", "", {})
    if backup_job_id:
        largs = largs._replace(filters={**largs.filters, "backup_job_id": backup_job_id})
    own = OWN_SORTS.get(largs.sort or "id")
    if own is None or largs.q:
        sql, args = list_query(LISTING, ARCHIVE_COLS, largs, before, limit)
        return [archive_out(r) for r in query(db, sql, args)]
    backup_job_id = largs.filters.get("backup_job_id")
    # Newest first: page the archives table alone on its index first, then join the names onto
    # those rows (joining first lets the optimizer sort the whole table).
    repo_id = None
    if backup_job_id:
        repo = query(db, "SELECT id FROM repositories WHERE backup_job_id=%s", (backup_job_id,), one=True)
        if not repo:
            return []
        repo_id = repo["id"]   # a constant, so ix_archives_repo_id serves filter and order
    if own == "id" and largs.order == "desc":
        inner, args = page_query("SELECT * FROM archives WHERE 1=1", [("repository_id", repo_id)], before, limit)
        return [archive_out(r) for r in
                query(db, f"SELECT {ARCHIVE_COLS} FROM ({inner}) a{ARCHIVE_JOINS} ORDER BY a.id DESC", args)]
    # A column of archives alone (indexed, migration 0952): the same page the listing's query gives,
    # read from that index; the cursor row's value is read first so the range is on constants.
    direction, cmp = ("DESC", "<") if largs.order == "desc" else ("ASC", ">")
    inner, args = "SELECT * FROM archives WHERE 1=1", []
    if repo_id is not None:
        inner += " AND repository_id=%s"
        args.append(repo_id)
    if before:
        # The listing's cursor is read through its joins: an archive whose names are gone ends the list.
        mark = query(db, f"SELECT a.{own} AS v FROM archives a{ARCHIVE_JOINS} WHERE a.id=%s", (before,), one=True)
        if mark is None:
            return []
        inner += f" AND ({own} {cmp} %s OR ({own} = %s AND id {cmp} %s))"
        args += [mark["v"], mark["v"], before]
    inner += f" ORDER BY {own} {direction}, id {direction} LIMIT %s"
    args.append(limit)
    return [archive_out(r) for r in
            query(db, f"SELECT {ARCHIVE_COLS} FROM ({inner}) a{ARCHIVE_JOINS}"
                      f" ORDER BY a.{own} {direction}, a.id {direction}", args)]


def get_archive(db, archive_id):
    row = query(db, ARCHIVE_SELECT + " WHERE a.id=%s", (archive_id,), one=True)
    if not row:
        raise NotFound(_("archive %(archive_id)s not found", archive_id=archive_id))
    return archive_out(row)


def delete_archive(db, r, archive_id, user):
    a = get_archive(db, archive_id)
    return q.create_job(db, r, "delete_archive",
                        {"limit": [a["client_name"]],
                         "extravars": {"borgfleet_backup": a["backup_name"], "borgfleet_archive": a["name"]}},
                        server_id=None, backup_job_id=a["backup_job_id"], archive_id=archive_id, user=user,
                        repository=f"{a['client_name']}/{a['backup_name']}")
