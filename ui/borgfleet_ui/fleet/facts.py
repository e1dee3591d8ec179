"""What servers report about themselves: system stats over time (collect_stats.yml, server_stats)
and capabilities (detect_capabilities.yml, server_capabilities), read for the server page and its
history charts, and the detection queued after a setup."""
import json
from datetime import datetime, timedelta

from .. import queue as q
from ..db import execute, query
from .servers import get_server
from .settings import get_settings

# A chart's range: how far back, and the spacing of its points (the thinned samples allow it).
RANGES = {"day": (timedelta(days=1), None), "week": (timedelta(days=7), 3600),
          "month": (timedelta(days=31), 3 * 3600), "year": (timedelta(days=366), 86400)}
# server_stats thinning: every sample younger than FULL, one an hour younger than HOURLY, one a day
# younger than KEEP, nothing older.
FULL, HOURLY, KEEP = timedelta(days=2), timedelta(days=31), timedelta(days=400)


def detect(db, r, server_id, user):
    """Queue detect_capabilities.yml for the server (Reload capabilities)."""
    s = get_server(db, server_id)
    return q.create_job(db, r, "detect_capabilities", {"limit": [s["name"]]}, server_id=server_id, user=user)


def follow_up(db, r, kind, job):
    """After a successful setup (kinds.py `then`): the detection of the server set up, unless the
    setting detect_after_setup is "0". Returns the job id or None."""
    if kind != "detect_capabilities" or not job["server_id"]:
        return None
    if get_settings(db).get("detect_after_setup", "1") == "0":
        return None
    return detect(db, r, job["server_id"], None)


def record_capabilities(db, report):
    """{host: capabilities} → the newest detection of each known server; how many were stored."""
    names = {s["name"]: s["id"] for s in query(db, "SELECT id, name FROM servers")}
    n = 0
    for host, caps in (report or {}).items():
        if host in names and isinstance(caps, dict):
            execute(db, "INSERT INTO server_capabilities (server_id, detected_at, data_json)"
                        " VALUES (%s, UTC_TIMESTAMP(), %s) ON DUPLICATE KEY UPDATE"
                        " detected_at=VALUES(detected_at), data_json=VALUES(data_json)",
                    (names[host], json.dumps(caps, default=str)))
            n += 1
    return n


def capabilities(db, server_id):
    """{detected_at, data} of the server's newest detection, or None."""
    row = query(db, "SELECT detected_at, data_json FROM server_capabilities WHERE server_id=%s", (server_id,),
                one=True)
    return {"detected_at": row["detected_at"], "data": json.loads(row["data_json"])} if row else None


# Where Debian keeps the MariaDB maintenance login (capabilities.mysql.auth.debian_cnf).
DEBIAN_CNF = "/etc/mysql/debian.cnf"


def databases(caps):
    """The databases a detection found, one flat row each, as the server page and the backup wizard
    list them: engine, version, where (cluster / port / socket), datadir, running, which login works
    (never a password) and the storage under its datadir (snapshot capable or why not); key names
    the row, entry is the `databases` entry of a backup of it (docs/contract.md) with the login
    detection found working, its method left to choose."""
    out = []
    if not caps:
        return out
    my = caps.get("mysql") or {}
    if my.get("server_installed"):
        auth = my.get("auth") or {}
        engine = my.get("flavor") or "mysql"
        entry = {"engine": engine}
        if auth.get("method") == "socket" and my.get("socket"):
            entry["login_unix_socket"] = my["socket"]
        elif auth.get("method") == "debian_cnf":
            entry["defaults_file"] = DEBIAN_CNF
        out.append({"key": engine, "engine": engine, "version": my.get("server_version") or my.get("version"),
                    "where": my.get("socket") or (f"port {my['port']}" if my.get("port") else ""),
                    "datadir": my.get("datadir"), "running": my.get("running"),
                    "login": auth.get("method"), "storage": my.get("storage"), "entry": entry})
    pg = caps.get("postgresql") or {}
    for c in pg.get("clusters") or []:
        entry = {"engine": "postgresql"}
        for key, value in (("login_port", c.get("port")), ("login_unix_socket", c.get("socket_directory")),
                           ("os_user", c.get("owner"))):
            if value:
                entry[key] = value
        out.append({"key": f"postgresql-{c.get('version')}-{c.get('name')}", "engine": "postgresql",
                    "version": c.get("version"),
                    "where": f"cluster {c.get('version')}/{c.get('name')}, port {c.get('port')}",
                    "datadir": c.get("data_directory"), "running": c.get("status") == "online",
                    "login": "peer" if c.get("peer_auth") else None, "storage": c.get("storage"),
                    "cluster": f"{c.get('version')}/{c.get('name')}", "port": c.get("port"), "entry": entry})
    mongo = caps.get("mongodb") or {}
    if mongo.get("server_installed"):
        entry = {"engine": "mongodb"}
        if mongo.get("port"):
            entry["login_port"] = mongo["port"]
        out.append({"key": "mongodb", "engine": "mongodb", "version": mongo.get("version"),
                    "where": f"port {mongo.get('port')}",
                    "datadir": mongo.get("datadir"), "running": mongo.get("running"), "login": None,
                    "storage": mongo.get("storage"), "entry": entry})
    return out


def thin_stats(db, server_id):
    """Keep server_stats small (FULL / HOURLY / KEEP above): a year of 15-minute samples of a server
    becomes ~600 rows."""
    execute(db, "DELETE FROM server_stats WHERE server_id=%s AND collected_at < UTC_TIMESTAMP() - INTERVAL %s DAY",
            (server_id, KEEP.days))
    for older_than, newer_than, bucket in ((FULL, HOURLY, "%Y-%m-%d %H"), (HOURLY, KEEP, "%Y-%m-%d")):
        execute(db, "DELETE s FROM server_stats s JOIN ("
                    " SELECT DATE_FORMAT(collected_at, %s) AS b, MIN(id) AS keep FROM server_stats"
                    " WHERE server_id=%s AND collected_at < UTC_TIMESTAMP() - INTERVAL %s HOUR"
                    " AND collected_at >= UTC_TIMESTAMP() - INTERVAL %s HOUR GROUP BY b) k"
                    " ON DATE_FORMAT(s.collected_at, %s)=k.b AND s.id<>k.keep"
                    " WHERE s.server_id=%s AND s.collected_at < UTC_TIMESTAMP() - INTERVAL %s HOUR"
                    " AND s.collected_at >= UTC_TIMESTAMP() - INTERVAL %s HOUR",
                (bucket, server_id, _hours(older_than), _hours(newer_than),
                 bucket, server_id, _hours(older_than), _hours(newer_than)))


def _hours(delta):
    return int(delta.total_seconds() // 3600)


def _figures(system):
    """The charted figures of one stats sample: CPU %, RAM %, the fullest filesystem's %, load 1m."""
    cpu = system.get("cpu") or {}
    mem = system.get("memory") or {}
    disks = [f.get("used_percent") for f in system.get("filesystems") or [] if f.get("used_percent") is not None]
    load = cpu.get("load") or [None]
    return {"cpu": cpu.get("usage_percent"), "ram": mem.get("used_percent"),
            "disk": max(disks) if disks else None, "load": load[0]}


def stats_history(db, server_id, range_="day", now=None):
    """The server's charted figures over the range (RANGES), oldest first, one point per spacing:
    {range, t: [unix seconds], cpu, ram, disk, load: [values]} — the columns uPlot draws."""
    get_server(db, server_id)
    if range_ not in RANGES:
        raise ValueError(range_)
    span, step = RANGES[range_]
    now = now or datetime.utcnow()
    rows = query(db, "SELECT collected_at, data_json FROM server_stats WHERE server_id=%s AND collected_at >= %s"
                     " ORDER BY collected_at", (server_id, now - span))
    out = {"range": range_, "t": [], "cpu": [], "ram": [], "disk": [], "load": []}
    last_bucket = None
    for row in rows:
        t = int((row["collected_at"] - datetime(1970, 1, 1)).total_seconds())
        if step and last_bucket == t // step:
            continue
        last_bucket = t // step if step else None
        fig = _figures(json.loads(row["data_json"]))
        out["t"].append(t)
        for k in ("cpu", "ram", "disk", "load"):
            out[k].append(fig[k])
    return out


def latest_stats(db, server_id):
    """{collected_at, data} of the server's newest stats sample, or None."""
    row = query(db, "SELECT collected_at, data_json FROM server_stats WHERE server_id=%s"
                    " ORDER BY collected_at DESC, id DESC LIMIT 1", (server_id,), one=True)
    return {"collected_at": row["collected_at"], "data": json.loads(row["data_json"])} if row else None
