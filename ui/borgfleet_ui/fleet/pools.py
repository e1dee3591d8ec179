"""Storage pools of backup servers, as the playbooks see them (the contract's server settings), and
their usage over time as analyze_pools.yml measures it (pool_samples, pool_latest), with the growth
and the "full in N days" forecast drawn from it."""
import json
from datetime import timedelta

from flask_babel import gettext as _

from .. import queue as q
from ..contract import contract
from ..db import execute, query
from .common import Invalid, NotFound, by_contract, field
from .settings import get_settings

# Samples older than this are thinned to the first of each day; older than KEEP_DAYS, dropped.
FULL_RESOLUTION = timedelta(days=2)
KEEP_DAYS = 400
# The growth is the slope of the used bytes over this window (a least-squares line).
GROWTH_WINDOW = timedelta(days=30)
DEFAULT_WARN_PERCENT = 80


def list_pools(db, server_id=None):
    if server_id:
        return query(db, "SELECT * FROM storage_pools WHERE server_id=%s ORDER BY id", (server_id,))
    return query(db, "SELECT * FROM storage_pools ORDER BY id LIMIT 1000")


def backup_server_vars(db, server, new_pool=None):
    """A backup server's variables as the inventory plugin hands them to Ansible (saved vars win)."""
    pools = [{"name": p["name"], "path": p["path"]} for p in
             query(db, "SELECT name, path FROM storage_pools WHERE server_id=%s ORDER BY id", (server["id"],))]
    hv = {"ansible_host": server["address"], "ansible_port": server["port"],
          "borgfleet_storage_pools": pools + ([new_pool] if new_pool else [])}
    hv.update(json.loads(server["vars_json"] or "{}"))
    return hv


def create_pool(db, data):
    sid = field(data, "server_id", required=True)
    s = query(db, "SELECT * FROM servers WHERE id=%s", (sid,), one=True)
    if not s or s["role"] != "backup_server":
        raise Invalid(_("storage pools belong to backup servers"))
    pool = {"name": field(data, "name", "main"), "path": field(data, "path", required=True)}
    # The server's pools with this one, as the playbooks will see them: names, paths, no nesting.
    settings = by_contract(contract.server_settings, s["name"], backup_server_vars(db, s, pool))
    path = next(p["path"] for p in settings["pools"] if p["name"] == pool["name"])
    pid = execute(db, "INSERT INTO storage_pools (server_id, name, path) VALUES (%s,%s,%s)",
                  (sid, pool["name"], path))
    return query(db, "SELECT * FROM storage_pools WHERE id=%s", (pid,), one=True)


def delete_pool(db, pool_id):
    if not query(db, "SELECT id FROM storage_pools WHERE id=%s", (pool_id,), one=True):
        raise NotFound(_("pool %(pool_id)s not found", pool_id=pool_id))
    if query(db, "SELECT id FROM backup_jobs WHERE pool_id=%s LIMIT 1", (pool_id,), one=True):
        raise Invalid(_("backup jobs use this pool"))
    execute(db, "DELETE FROM storage_pools WHERE id=%s", (pool_id,))


def warn_percent(db):
    return int(get_settings(db).get("pool_warn_percent") or DEFAULT_WARN_PERCENT)


def analyze(db, r, user):
    """Queue analyze_pools.yml over the servers set up (clients read their repositories with borg,
    hosts holding pools measure them)."""
    names = [s["name"] for s in query(db, "SELECT name FROM servers WHERE setup_status='ok' ORDER BY id")]
    if not names:
        raise Invalid(_("no server is set up yet: nothing to analyse"))
    return q.create_job(db, r, "analyze_pools", {
        "limit": names, "extravars": {"borgfleet_pool_warn_percent": warn_percent(db)}}, user=user)


def record_analysis(db, report):
    """Store analyze_pools.yml's report ({host: {warn_percent, pools, alerts}}): a sample per pool of
    a known server, its whole entry as the pool's latest; returns how many pools were recorded."""
    servers = {s["name"]: s["id"] for s in query(db, "SELECT id, name FROM servers")}
    n = 0
    for host, result in (report or {}).items():
        if host not in servers or not isinstance(result, dict):
            continue
        for pool in result.get("pools") or []:
            if not isinstance(pool, dict) or not isinstance(pool.get("name"), str):
                continue
            key = (servers[host], pool["name"])
            execute(db, "INSERT INTO pool_samples (server_id, pool_name, total_bytes, used_bytes, free_bytes,"
                        " repositories_size_bytes) VALUES (%s, %s, %s, %s, %s, %s)",
                    key + tuple(pool.get(k) for k in ("total_bytes", "used_bytes", "free_bytes",
                                                      "repositories_size_bytes")))
            execute(db, "INSERT INTO pool_latest (server_id, pool_name, sampled_at, warn_percent, data_json)"
                        " VALUES (%s, %s, UTC_TIMESTAMP(), %s, %s) ON DUPLICATE KEY UPDATE"
                        " sampled_at=VALUES(sampled_at), warn_percent=VALUES(warn_percent), data_json=VALUES(data_json)",
                    key + (int(result.get("warn_percent") or DEFAULT_WARN_PERCENT), json.dumps(pool, default=str)))
            thin_samples(db, *key)
            n += 1
    return n


def thin_samples(db, server_id, pool_name):
    """Keep every sample of the last FULL_RESOLUTION, the first of each day before, nothing past
    KEEP_DAYS: a year of 15-minute analyses of a pool stays a few hundred rows."""
    execute(db, "DELETE FROM pool_samples WHERE server_id=%s AND pool_name=%s"
                " AND sampled_at < UTC_TIMESTAMP() - INTERVAL %s DAY", (server_id, pool_name, KEEP_DAYS))
    execute(db, "DELETE s FROM pool_samples s JOIN ("
                " SELECT DATE(sampled_at) AS day, MIN(id) AS keep FROM pool_samples"
                " WHERE server_id=%s AND pool_name=%s AND sampled_at < UTC_TIMESTAMP() - INTERVAL %s HOUR"
                " GROUP BY DATE(sampled_at)) d ON DATE(s.sampled_at)=d.day AND s.id<>d.keep"
                " WHERE s.server_id=%s AND s.pool_name=%s AND s.sampled_at < UTC_TIMESTAMP() - INTERVAL %s HOUR",
            (server_id, pool_name, int(FULL_RESOLUTION.total_seconds() // 3600),
             server_id, pool_name, int(FULL_RESOLUTION.total_seconds() // 3600)))


def growth_per_day(samples):
    """Bytes a day the pool's used space grows by: the least-squares slope of (time, used_bytes) of
    samples [(datetime, used_bytes)]; None with fewer than two usable samples or no time between them."""
    points = [(t, u) for t, u in samples if t is not None and u is not None]
    if not points:
        return None
    t0 = min(t for t, _ in points)
    xy = [((t - t0).total_seconds(), float(u)) for t, u in points]
    return _slope_per_day(len(xy), sum(x for x, _ in xy), sum(y for _, y in xy), sum(x * x for x, _ in xy),
                          sum(x * y for x, y in xy))


def _slope_per_day(n, sx, sy, sxx, sxy):
    """The least-squares slope a day of n points (x in seconds since the first one) from their sums;
    None with fewer than two points or no time between them. The sums are floats (growth_per_day) or
    exact integers (usage, summed in SQL)."""
    if n < 2:
        return None
    spread = n * sxx - sx * sx
    if spread <= 0:
        return None
    return float((n * sxy - sx * sy) / spread) * 86400


def full_in_days(free_bytes, growth):
    """Days until a pool growing `growth` bytes a day fills its free space; None when it does not grow."""
    if growth is None or growth <= 0 or free_bytes is None:
        return None
    return free_bytes / growth


def usage(db, server_id=None, top=None):
    """Every analysed pool (or a server's): its newest analysis (capacity, used, free, repositories with
    borg's figures), whether it is above the warning threshold, its growth a day and "full in N days".

    top: only the `top` largest repositories on disk (0: none), for pages and figures that do not list
    a fleet's thousands; repository_count and the original / deduplicated totals count them all."""
    rows = query(db, "SELECT l.*, s.name AS server_name, s.role AS server_role FROM pool_latest l"
                     " JOIN servers s ON s.id=l.server_id" + (" WHERE l.server_id=%s" if server_id else "")
                 + " ORDER BY s.name, l.pool_name", (server_id,) if server_id else ())
    # The growth window of each pool summed in SQL, one row a pool (a month of 15-minute samples of
    # many pools is thousands of rows to read otherwise). x: whole seconds since the window's start, so
    # the sums are exact integers and no spread of time is exactly 0.
    window = {(x["server_id"], x["pool_name"]): x for x in query(
        db, "SELECT server_id, pool_name, COUNT(*) AS samples, COUNT(y) AS n, SUM(x) AS sx, SUM(y) AS sy,"
            " SUM(x * x) AS sxx, SUM(x * y) AS sxy FROM (SELECT server_id, pool_name, used_bytes AS y,"
            " IF(used_bytes IS NULL, NULL, TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP() - INTERVAL %s DAY, sampled_at)) AS x"
            " FROM pool_samples WHERE sampled_at >= UTC_TIMESTAMP() - INTERVAL %s DAY"
            + (" AND server_id=%s" if server_id else "") + ") w GROUP BY server_id, pool_name",
        (GROWTH_WINDOW.days, GROWTH_WINDOW.days) + ((server_id,) if server_id else ()))}
    out = []
    for row in rows:
        pool = json.loads(row["data_json"])
        repos = pool.get("repositories") or []
        figures = [((r.get("borg") or {}).get("stats") or {}) for r in repos]
        w = window.get((row["server_id"], row["pool_name"])) or {"samples": 0, "n": 0}
        growth = _slope_per_day(w["n"], *(int(w[k]) if w.get(k) is not None else None
                                          for k in ("sx", "sy", "sxx", "sxy")))
        used = pool.get("used_percent")
        out.append({
            "server_id": row["server_id"], "server_name": row["server_name"], "name": row["pool_name"],
            "path": pool.get("path"), "exists": pool.get("exists"), "fstype": pool.get("fstype"),
            "total_bytes": pool.get("total_bytes"), "used_bytes": pool.get("used_bytes"),
            "free_bytes": pool.get("free_bytes"), "used_percent": used,
            "repositories_size_bytes": pool.get("repositories_size_bytes"),
            "warn_percent": row["warn_percent"], "warn": used is not None and used >= row["warn_percent"],
            "growth_bytes_per_day": growth, "full_in_days": full_in_days(pool.get("free_bytes"), growth),
            "samples": w["samples"], "analysed_at": row["sampled_at"],
            "repository_count": len(repos),
            "repositories_original_size": sum(f.get("original_size") or 0 for f in figures),
            "repositories_deduplicated_size": sum(f.get("deduplicated_size") or 0 for f in figures),
            "repositories": [_repository(r) for r in (repos if top is None else largest(repos, top) if top else [])]})
    return out


def largest(repos, n):
    """The n largest repositories on disk (None: all) of a pool's analysis, largest first (unmeasured last)."""
    return sorted(repos, key=lambda r: (r.get("size_on_disk_bytes") is None, -(r.get("size_on_disk_bytes") or 0)))[:n]


def _repository(r):
    borg = r.get("borg") or {}
    stats = borg.get("stats") or {}
    return {"client": r.get("client"), "backup": r.get("backup"), "path": r.get("path"),
            "exists": r.get("exists"), "size_on_disk_bytes": r.get("size_on_disk_bytes"),
            "original_size": stats.get("original_size"), "compressed_size": stats.get("compressed_size"),
            "deduplicated_size": stats.get("deduplicated_size"), "archive_count": borg.get("archive_count"),
            "last_archive": borg.get("last_archive"), "borg_error": r.get("borg_error")}


def history(db, server_id=None, days=90):
    """{(server id, pool name): its used space of the last `days` days, one point a day (the day's
    last sample: t in unix seconds, total_bytes, used_bytes), oldest first} of every pool or a
    server's (for their growth charts, in one query). A row a pool, its points concatenated: a
    fleet's pools have thousands of points, and the driver's decoding of a row each cost more than
    the query itself."""
    out = {}
    for x in query(db, "SET STATEMENT group_concat_max_len=%s FOR SELECT p.server_id, p.pool_name,"
                       " GROUP_CONCAT(CONCAT_WS(' ', UNIX_TIMESTAMP(p.sampled_at), IFNULL(p.total_bytes, '-'),"
                       " IFNULL(p.used_bytes, '-')) ORDER BY p.sampled_at SEPARATOR ',') AS points"
                       " FROM pool_samples p JOIN (SELECT MAX(id) AS id FROM pool_samples"
                       " WHERE sampled_at >= UTC_TIMESTAMP() - INTERVAL %s DAY"
                       + (" AND server_id=%s" if server_id else "")
                       + " GROUP BY server_id, pool_name, DATE(sampled_at)) d ON d.id=p.id"
                       " GROUP BY p.server_id, p.pool_name",
                   (POINTS_MAX_BYTES, days) + ((server_id,) if server_id else ())):
        out[(x["server_id"], x["pool_name"])] = [
            {"t": int(t), "total_bytes": _figure(total), "used_bytes": _figure(used)}
            for t, total, used in (point.split(" ") for point in x["points"].split(","))]
    return out


# A point is "<unix time> <total> <used>", under 50 bytes: room for years of daily points.
POINTS_MAX_BYTES = 1 << 20


def _figure(text):
    return None if text == "-" else int(text)
