"""The archive index: every item of an archive, read once by the index_archive job (the client runs
`borg list --json-lines` into a compressed file the worker fetches), loaded into MariaDB, and from
then on every level of the archive and every "which archives hold this path, when did it change"
answered from it, without borg. Archives never change, so an index never goes stale; it goes with
its archive (a foreign key), and listings no archive reaches any more with collect_garbage.

Layout (migrations/0501_archive_index.sql): a tree of directory listings addressed by their content.
A listing shared by several archives of a repository (a directory unchanged between backups) is
stored once, so each new archive costs only the directories that changed and their parents.
"""
import fnmatch
import gzip
import hashlib
import json
import re
import sys
import time

import pymysql
from flask_babel import gettext as _

from .. import queue as q
from ..db import execute, query
from .archives import get_archive
from .backup_jobs import get_backup_job
from .common import Invalid, NotFound

BATCH = 2000            # rows per INSERT / ids per IN (...) list
LOCK_WAIT = 600         # seconds a load or a collection waits for the repository's index lock
SEARCH_VISIT_MAX = 500_000   # entries a glob search reads at most before it stops (truncated)
ENTRY_COLS = "listing_id, pos, name, type, mode, user, grp, size, mtime, linktarget, child_id"
GLOB_RE = re.compile(r"[*?\[]")
_ACTIVE = ("queued", "waiting", "running")


# --- state and queueing ------------------------------------------------------------------------

def indexed(db, archive_id):
    """The archive's index row (root_id, items, dirs, new_listings, seconds, indexed_at), or None."""
    return query(db, "SELECT * FROM index_archives WHERE archive_id=%s", (archive_id,), one=True)


def last_index_job(db, archive_id):
    """The newest index_archive job of this archive (any status), or None."""
    return query(db, "SELECT id, status, error FROM jobs WHERE archive_id=%s AND kind='index_archive'"
                     " ORDER BY seq DESC LIMIT 1", (archive_id,), one=True)


def not_indexed(db, backup_job_id):
    """The ids of the backup job's archives that are not indexed."""
    return [r["id"] for r in query(db, "SELECT a.id FROM archives a JOIN repositories r ON r.id=a.repository_id"
                                       " LEFT JOIN index_archives i ON i.archive_id=a.id"
                                       " WHERE r.backup_job_id=%s AND i.archive_id IS NULL", (backup_job_id,))]


def queue_index(db, r, archive_id, user=None):
    """Queue index_archive for the archive unless it is indexed or an index job of it is pending.
    Returns the pending or new job id, or None when the archive is indexed already."""
    if indexed(db, archive_id):
        return None
    last = last_index_job(db, archive_id)
    if last and last["status"] in _ACTIVE:
        return last["id"]
    a = get_archive(db, archive_id)
    client_id = query(db, "SELECT client_id FROM backup_jobs WHERE id=%s", (a["backup_job_id"],), one=True)["client_id"]
    return q.create_job(db, r, "index_archive",
                        {"limit": [a["client_name"]], "repository_id": a["repository_id"],
                         "extravars": {"borgfleet_backup": a["backup_name"], "borgfleet_archive": a["name"]}},
                        server_id=client_id, backup_job_id=a["backup_job_id"], archive_id=archive_id, user=user)


# --- loading ---------------------------------------------------------------------------------

def read_items(path):
    """The tree of a gzip file of `borg list --json-lines`: nested [attrs, children] nodes, where attrs is
    (type, mode, user, group, size, mtime, linktarget) as borg printed them (None for an implied
    parent of a backed-up path) and children a dict by name (None for anything but a directory).
    Returns (root, number of items)."""
    root = [None, {}]
    n = 0
    intern = sys.intern
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            n += 1
            node = root
            parts = item["path"].split("/")
            for part in parts[:-1]:
                if node[1] is None:   # a non-directory holding items: borg never lists one
                    node[1] = {}
                nxt = node[1].get(part)
                if nxt is None:
                    nxt = node[1][part] = [None, {}]
                node = nxt
            if node[1] is None:
                node[1] = {}
            children = node[1]
            user, group = item.get("user"), item.get("group")
            attrs = (intern(item["type"]), intern(item.get("mode") or ""),
                     intern(str(user)) if user is not None else None,
                     intern(str(group)) if group is not None else None,
                     item.get("size"), (item.get("mtime") or "").replace("T", " ") or None,
                     item.get("linktarget") or None)
            leaf = children.get(parts[-1])
            if leaf is None:
                children[parts[-1]] = [attrs, {} if attrs[0] == "d" else None]
            else:   # an implied directory met before its own item
                leaf[0] = attrs
                if attrs[0] != "d":
                    leaf[1] = None
    return root, n


def _order(children):
    """Entries in page order: directories first (implied ones too), then by name."""
    return sorted(children.items(), key=lambda kv: ((kv[1][0] or ("d",))[0] != "d", kv[0]))


def _digests(root):
    """{id(node): (digest, ordered children)} for every directory node, children before parents
    (iterative: a deep tree must not hit the recursion limit). Returns (digests, directory nodes in
    post-order)."""
    out, post, stack = {}, [], [(root, False)]
    while stack:
        node, done = stack.pop()
        if not done:
            stack.append((node, True))
            stack.extend((child, False) for child in node[1].values() if child[1] is not None)
            continue
        ordered = _order(node[1])
        h = hashlib.blake2b(digest_size=16)
        for name, child in ordered:
            sub = out[id(child)][0] if child[1] is not None else b""
            h.update(repr((name, child[0])).encode("utf-8", "surrogatepass") + b"\0" + sub + b"\n")
        out[id(node)] = (h.digest(), ordered)
        post.append(node)
    return out, post


def _lock(db, repository_id):
    name = f"borgfleet-index-{repository_id}"
    got = query(db, "SELECT GET_LOCK(%s, %s) AS got", (name, LOCK_WAIT), one=True)["got"]
    if got != 1:
        raise RuntimeError(f"the index of repository {repository_id} stayed locked for {LOCK_WAIT} s")
    return name


def _unlock(db, name):
    try:
        query(db, "SELECT RELEASE_LOCK(%s)", (name,), retry=0)
    except pymysql.err.Error:
        pass   # a lost connection released it


def load(db, archive_id, path):
    """Load a gzip file of `borg list --json-lines` of the archive into the index (in one transaction:
    a listing is never visible without its entries). Returns {items, dirs, new_listings, seconds}."""
    started = time.monotonic()
    repository_id = query(db, "SELECT repository_id FROM archives WHERE id=%s", (archive_id,),
                          one=True)
    if repository_id is None:
        raise NotFound(_("archive %(archive_id)s not found (deleted meanwhile)", archive_id=archive_id))
    repository_id = repository_id["repository_id"]
    root, items = read_items(path)
    digests, post = _digests(root)
    by_digest = {}
    for node in post:
        by_digest.setdefault(digests[id(node)][0], node)
    lock = _lock(db, repository_id)
    try:
        db.begin()
        with db.cursor() as cur:
            ids = _existing(cur, repository_id, list(by_digest))
            new = [d for d in by_digest if d not in ids]
            for i in range(0, len(new), BATCH):
                cur.executemany("INSERT INTO index_listings (repository_id, digest, entries) VALUES (%s, %s, %s)",
                                [(repository_id, d, len(by_digest[d][1])) for d in new[i:i + BATCH]])
            ids.update(_existing(cur, repository_id, new))
            rows = []
            for d in new:   # children's listings exist: every digest has its id now
                for pos, (name, child) in enumerate(digests[id(by_digest[d])][1]):
                    a = child[0] or ("d", None, None, None, None, None, None)
                    rows.append((ids[d], pos, name, a[0], a[1] or None, a[2], a[3], a[4], a[5], a[6],
                                 ids[digests[id(child)][0]] if child[1] is not None else None))
                    if len(rows) >= BATCH:
                        _insert_entries(cur, rows)
                        rows = []
            _insert_entries(cur, rows)
            seconds = time.monotonic() - started
            cur.execute("INSERT INTO index_archives (archive_id, root_id, items, dirs, new_listings, seconds)"
                        " VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE root_id=VALUES(root_id),"
                        " items=VALUES(items), dirs=VALUES(dirs), new_listings=VALUES(new_listings),"
                        " seconds=VALUES(seconds), indexed_at=UTC_TIMESTAMP()",
                        (archive_id, ids[digests[id(root)][0]], items, len(post), len(new), seconds))
        db.commit()
    except BaseException:
        try:
            db.rollback()
        except pymysql.err.Error:
            pass
        raise
    finally:
        _unlock(db, lock)
    return {"items": items, "dirs": len(post), "new_listings": len(new), "seconds": round(seconds, 3)}


def _existing(cur, repository_id, digests):
    ids = {}
    for i in range(0, len(digests), BATCH):
        chunk = digests[i:i + BATCH]
        cur.execute("SELECT id, digest FROM index_listings WHERE repository_id=%s AND digest IN ("
                    + ",".join(["%s"] * len(chunk)) + ")", [repository_id] + chunk)
        ids.update((row["digest"], row["id"]) for row in cur.fetchall())
    return ids


def _insert_entries(cur, rows):
    if rows:
        cur.executemany(f"INSERT INTO index_entries ({ENTRY_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)


def collect_garbage(db, repository_id):
    """Remove the listings of the repository that no indexed archive reaches any more (after archives
    were deleted or pruned). Returns how many were removed."""
    lock = _lock(db, repository_id)
    try:
        frontier = {r["root_id"] for r in query(
            db, "SELECT i.root_id FROM index_archives i JOIN archives a ON a.id=i.archive_id"
                " WHERE a.repository_id=%s", (repository_id,))}
        reached = set(frontier)
        while frontier:
            batch, nxt = list(frontier), set()
            for i in range(0, len(batch), BATCH):
                chunk = batch[i:i + BATCH]
                for row in query(db, "SELECT DISTINCT child_id FROM index_entries WHERE child_id IS NOT NULL"
                                     " AND listing_id IN (" + ",".join(["%s"] * len(chunk)) + ")", chunk):
                    if row["child_id"] not in reached:
                        nxt.add(row["child_id"])
            reached |= nxt
            frontier = nxt
        gone = [r["id"] for r in query(db, "SELECT id FROM index_listings WHERE repository_id=%s", (repository_id,))
                if r["id"] not in reached]
        for i in range(0, len(gone), BATCH):
            chunk = gone[i:i + BATCH]
            execute(db, "DELETE FROM index_listings WHERE id IN (" + ",".join(["%s"] * len(chunk)) + ")", chunk)
        return len(gone)
    finally:
        _unlock(db, lock)


# --- answering ---------------------------------------------------------------------------------

def _entry(row, prefix):
    implied = row["mode"] is None and row["type"] == "d" and row["user"] is None
    return {"name": row["name"], "path": prefix + row["name"], "type": row["type"],
            "size": row["size"], "mode": row["mode"], "user": row["user"], "group": row["grp"],
            "mtime": row["mtime"].strftime("%Y-%m-%dT%H:%M:%S.%f") if row["mtime"] else None,
            "linktarget": None if implied else (row["linktarget"] or "")}


def _split(path):
    return [p for p in path.split("/") if p] if path else []


def _walk(db, listing_id, parts, what):
    """The listing of directory parts below listing_id; NotFound when one is missing or no directory."""
    for i, part in enumerate(parts):
        row = query(db, "SELECT child_id FROM index_entries WHERE listing_id=%s AND name=%s LIMIT 1",
                    (listing_id, part), one=True)
        if not row or row["child_id"] is None:
            raise NotFound(_("%(path)s is not a directory of %(what)s", path='/'.join(parts[:i + 1]), what=what))
        listing_id = row["child_id"]
    return listing_id


def level(db, archive_id, path, page=1, per_page=100):
    """One page of one level of an indexed archive: {archive, path, entries, total, page, pages}, entries
    in the order of browse.yml's (directories first, then by name); None when the archive is not indexed."""
    a = get_archive(db, archive_id)
    ix = indexed(db, archive_id)
    if not ix:
        return None
    parts = _split(path)
    lid = _walk(db, ix["root_id"], parts, f"archive {a['name']}")
    total = query(db, "SELECT entries FROM index_listings WHERE id=%s", (lid,), one=True)["entries"]
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    rows = query(db, f"SELECT {ENTRY_COLS} FROM index_entries WHERE listing_id=%s AND pos >= %s AND pos < %s"
                     " ORDER BY pos", (lid, (page - 1) * per_page, page * per_page))
    prefix = "/".join(parts) + "/" if parts else ""
    return {"archive": a["name"], "path": "/".join(parts), "entries": [_entry(r, prefix) for r in rows],
            "total": total, "page": page, "pages": pages, "per_page": per_page}


def _archives(db, repository_id, last):
    """The repository's archives oldest first, each with its index root (None: not indexed)."""
    rows = query(db, "SELECT a.id, a.name, a.start_at, i.root_id FROM archives a"
                     " LEFT JOIN index_archives i ON i.archive_id=a.id WHERE a.repository_id=%s"
                     " ORDER BY a.start_at IS NULL, a.start_at, a.id", (repository_id,))
    return rows[-last:] if last else rows


def _in(ids):
    return "(" + ",".join(["%s"] * len(ids)) + ")"


def versions(db, backup_job_id, pattern, last=0, limit=1000):
    """Which indexed archives of a backup job hold a path (or every path matching a glob, '*' also
    across '/', as search.yml), and when it changed: {path, archives_searched, archives_not_indexed,
    found, truncated}, `found` as search.yml's (per path: archives holding it oldest first, changes)."""
    bj = get_backup_job(db, backup_job_id)
    pattern = pattern.strip("/")
    if not pattern:
        raise Invalid(_("path is required"))
    archives = _archives(db, bj["repository_id"], last) if bj["repository_id"] else []
    ready = [a for a in archives if a["root_id"] is not None]
    parts = pattern.split("/")
    fixed = []
    for part in parts:
        if GLOB_RE.search(part):
            break
        fixed.append(part)
    is_glob = len(fixed) < len(parts)
    # Walk the fixed directories for all archives at once, one query per level over distinct listings.
    at = {}   # listing id -> indexes of the archives having it at the current path
    for i, a in enumerate(ready):
        at.setdefault(a["root_id"], []).append(i)
    walk = fixed if is_glob else fixed[:-1]
    for part in walk:
        nxt = {}
        for chunk in _chunks(list(at)):
            for row in query(db, "SELECT listing_id, child_id FROM index_entries WHERE name=%s AND listing_id IN "
                                 + _in(chunk), [part] + chunk):
                if row["child_id"] is not None:
                    nxt.setdefault(row["child_id"], []).extend(at[row["listing_id"]])
        at = nxt
    hits, truncated = {}, False   # path -> {archive index: entry row}
    if not is_glob:
        for chunk in _chunks(list(at)):
            for row in query(db, f"SELECT {ENTRY_COLS} FROM index_entries WHERE name=%s AND listing_id IN "
                                 + _in(chunk), [parts[-1]] + chunk):
                for i in at[row["listing_id"]]:
                    hits.setdefault(pattern, {})[i] = row
    else:
        truncated = _glob(db, at, "/".join(fixed), pattern, hits)
    found = []
    paths = sorted(hits)
    for p in paths[:limit]:
        present = hits[p]
        changes, previous = [], None
        for i, a in enumerate(ready):
            now = present.get(i)
            when = a["start_at"].strftime("%Y-%m-%dT%H:%M:%S.%f") if a["start_at"] else None
            if now and previous is None:
                change = "added"
            elif now and (now["size"], now["mtime"], now["type"]) != (previous["size"], previous["mtime"],
                                                                      previous["type"]):
                change = "modified"
            elif now is None and previous is not None:
                change = "removed"
            else:
                change = None
            if change:
                e = _entry(now, "") if now else None
                changes.append({"archive": a["name"], "time": when, "change": change,
                                "size": e["size"] if e else None, "mtime": e["mtime"] if e else None})
            previous = now
        found.append({"path": p, "changes": changes, "archives": [
            dict(archive=ready[i]["name"], time=ready[i]["start_at"].strftime("%Y-%m-%dT%H:%M:%S.%f")
                 if ready[i]["start_at"] else None, **{k: _entry(present[i], "")[k] for k in ("size", "mtime", "type")})
            for i in sorted(present)]})
    return {"path": pattern, "archives_searched": len(ready), "archives_not_indexed": len(archives) - len(ready),
            "found": found, "truncated": truncated or len(paths) > limit}


def _glob(db, at, prefix, pattern, hits):
    """Every path below prefix matching pattern (fnmatch on the whole path), walking each distinct
    (path, listing) pair once for all archives sharing it. Returns whether the walk stopped early."""
    level_ = {(prefix, lid): idx for lid, idx in at.items()}
    visited = 0
    while level_:
        nxt = {}
        keys = list(level_)
        by_listing = {}
        for path, lid in keys:
            by_listing.setdefault(lid, []).append(path)
        for chunk in _chunks(list(by_listing)):
            for row in query(db, f"SELECT {ENTRY_COLS} FROM index_entries WHERE listing_id IN " + _in(chunk), chunk):
                visited += 1
                for path in by_listing[row["listing_id"]]:
                    full = f"{path}/{row['name']}" if path else row["name"]
                    idx = level_[(path, row["listing_id"])]
                    if fnmatch.fnmatchcase(full, pattern):
                        for i in idx:
                            hits.setdefault(full, {})[i] = row
                    if row["child_id"] is not None:
                        nxt.setdefault((full, row["child_id"]), []).extend(idx)
            if visited > SEARCH_VISIT_MAX:
                return True
        level_ = nxt
    return False


def _chunks(ids):
    for i in range(0, len(ids), BATCH):
        yield ids[i:i + BATCH]
