"""Instant recovery: sessions (a database started from an archive, on a client or a recovery host)
as the hosts last reported them, and the runs that start, stop, resume, remove, clean up and query
them (kinds.py recovery_*, all playbooks/instant_recovery.yml). The rows are written by the worker
from the playbook's report (results.py); this module reads them and queues the runs.

What a session is, where it lives and how it is checked is the instant_recovery module's
(docs/contract.md, "Restore and instant recovery"): nothing of it is re-stated here.
"""
import ipaddress
import json
import shlex

from flask_babel import gettext as _

from .. import queue as q
from ..db import query
from .archives import get_archive
from .backup_jobs import get_backup_job
from .common import Invalid, ListArgs, Listing, NotFound, field, int_between, list_query
from .servers import get_server

SESSION_COLS = (
    "rs.id, rs.server_id, s.name AS host, rs.name, rs.backup_job_id, b.name AS backup_name,"
    " c.name AS client_name, rs.archive_id, rs.archive, rs.repository, rs.engine, rs.address, rs.port,"
    " rs.socket_dir, rs.datadir, rs.state, rs.pid, rs.started_at, rs.layer_bytes, rs.health_json,"
    " rs.checked_at, b.databases_json")
SESSION_FROM = ("FROM recovery_sessions rs JOIN servers s ON s.id=rs.server_id"
                " LEFT JOIN backup_jobs b ON b.id=rs.backup_job_id LEFT JOIN servers c ON c.id=b.client_id")
SESSION_SELECT = f"SELECT {SESSION_COLS} {SESSION_FROM}"
LISTING = Listing(
    source=SESSION_FROM, key="rs.id", default="host",
    sorts={"host": ("CONCAT(s.name, ' ', rs.name)", "asc"), "name": ("rs.name", "asc"),
           "archive": ("COALESCE(rs.archive, '')", "asc"), "engine": ("COALESCE(rs.engine, '')", "asc"),
           "started": ("COALESCE(rs.started_at, '1000-01-01')", "desc"), "layer": ("COALESCE(rs.layer_bytes, -1)", "desc"),
           "checked": ("rs.checked_at", "desc")},
    search=("s.name", "rs.name", "rs.archive", "b.name"),
    choices={"engine": ("rs.engine", ("postgresql", "mariadb", "mysql"))}, ids={"server_id": "rs.server_id"})
HEALTH = ("running", "stopped", "broken")

# The runs that change a session on its host; a cleanup waits until none is queued or running there.
CHANGING = ("recovery_start", "recovery_resume", "recovery_stop", "recovery_remove")


def health_label(session):
    """One word for a session's health as its host reported it: running, stopped or broken."""
    h = session.get("health") or {}
    if h.get("intact") and h.get("engine_running"):
        return "running"
    if h.get("intact") and session.get("state") == "stopped":
        return "stopped"
    return "broken"


def os_user(databases):
    """The account a PostgreSQL cluster runs as, by which psql authenticates over its socket (peer):
    the backup's `os_user` (docs/contract.md, databases), postgres by default."""
    db = (databases or [{}])[0]
    return db.get("os_user") or "postgres"


def connection(session, databases=None):
    """How to reach a running session: engine, address, port, socket directory, and ready-to-copy
    command lines, one run on the host itself (socket; PostgreSQL by peer authentication as the
    cluster's owner, MariaDB as root by unix socket) and one over TCP (a role with a password)."""
    engine, address, port, sock = (session.get(k) for k in ("engine", "address", "port", "socket_dir"))
    out = {"engine": engine, "address": address, "port": port, "socket_dir": sock}
    if not engine or not port or not sock:
        return out
    if engine == "postgresql":
        user = os_user(databases)
        local = ["sudo", "-u", user, "psql", "-h", sock, "-p", str(port), "-d", "postgres"]
        tcp = ["psql", "-h", address, "-p", str(port), "-U", user, "-d", "postgres"]
    else:
        # mysqld.sock: the socket file the module starts MariaDB with, in the session's socket directory.
        local = ["sudo", "mariadb", f"--socket={sock}/mysqld.sock", "-u", "root"]
        tcp = ["mariadb", "-h", address, "-P", str(port), "-u", "root", "-p"]
    out.update(local_command=shlex.join(local), tcp_command=shlex.join(tcp))
    return out


def session_out(row):
    row = dict(row)
    row["health"] = json.loads(row.pop("health_json") or "{}")
    databases = json.loads(row.pop("databases_json") or "[]")
    row["health_label"] = health_label(row)
    row["connect"] = connection(row, databases) if row["health_label"] == "running" else None
    return row


def list_sessions(db, server_id=None, largs=None, health=None):
    """Every session (hosts hold a few each: not paged), by host and name or as `largs` (ListArgs
    of LISTING) sorts and filters; `health`: only those of that health_label."""
    largs = largs or ListArgs("host", "asc", "", {})
    if server_id:
        largs = largs._replace(filters={**largs.filters, "server_id": server_id})
    if health and health not in HEALTH:
        raise Invalid(_("health must be one of %(choices)s", choices=', '.join(HEALTH)), "health")
    sql, args = list_query(LISTING, SESSION_COLS, largs)
    sessions = [session_out(r) for r in query(db, sql, args)]
    # The label is health_label's rule, read from the host's report: filtered here, not restated in SQL.
    return [s for s in sessions if not health or s["health_label"] == health]


def get_session(db, session_id):
    row = query(db, SESSION_SELECT + " WHERE rs.id=%s", (session_id,), one=True)
    if not row:
        raise NotFound(_("instant recovery session %(session_id)s not found", session_id=session_id))
    return session_out(row)


def _text(value, what, max_len):
    if not isinstance(value, str) or not 0 < len(value) <= max_len or not value.isprintable():
        raise Invalid(_("%(what)s must be text of 1 to %(max_len)s printable characters", what=what, max_len=max_len))
    return value


def start(db, r, archive_id, data, user):
    """Queue recovery_start of an archive of a database backup, on its client or on another client
    (a recovery host reading the repository with its own key); optional address, port, name."""
    a = get_archive(db, archive_id)
    bj = get_backup_job(db, a["backup_job_id"])
    if not bj["verifiable"]:
        raise Invalid(_("archive %(name)s is not of a database backup taken from a snapshot: it holds no data"
                        " directory to start", name=a["name"]))
    host_id = field(data, "host_id", bj["client_id"])
    host = get_server(db, int_between(host_id, "host_id", 1, 2**31))
    if host["role"] != "client":
        raise Invalid(_("host_id must name a client (the host that runs the session)"))
    extravars = {"borgfleet_recovery_state": "started", "borgfleet_backup": bj["name"],
                 "borgfleet_archive": a["name"]}
    if host["id"] != bj["client_id"]:
        extravars["borgfleet_recovery_source"] = bj["client_name"]
    address = field(data, "address")
    if address not in (None, ""):
        try:
            extravars["borgfleet_recovery_address"] = str(ipaddress.ip_address(_text(address, "address", 64)))
        except ValueError:
            raise Invalid(_("address %(address)r is not an IP address", address=address)) from None
    port = field(data, "port")
    if port not in (None, "", 0, "0"):
        extravars["borgfleet_recovery_port"] = int_between(port, "port", 1, 65535)
    name = field(data, "name")
    if name not in (None, ""):
        extravars["borgfleet_recovery_name"] = _text(name, "name", 40)   # the module checks its characters
    return q.create_job(db, r, "recovery_start",
                        {"limit": [host["name"]], "extravars": extravars, "host": host["name"]},
                        server_id=host["id"], backup_job_id=bj["id"], archive_id=a["id"], user=user,
                        repository=f"{bj['client_name']}/{bj['name']}")


def _session_run(db, r, kind, session_id, user, extravars):
    s = get_session(db, session_id)
    # Stop and remove of a session the service holds no backup job for (started from the command line)
    # still serialise on the session itself.
    lock = f"{s['client_name']}/{s['backup_name']}" if s["backup_job_id"] else f"recovery:{s['host']}/{s['name']}"
    return q.create_job(db, r, kind,
                        {"limit": [s["host"]], "host": s["host"], "session_id": s["id"],
                         "extravars": dict(extravars, borgfleet_recovery_name=s["name"])},
                        server_id=s["server_id"], backup_job_id=s["backup_job_id"], archive_id=s["archive_id"],
                        user=user, repository=lock)


def stop(db, r, session_id, user):
    """Stop the engine cleanly; the layer (what the engine wrote) stays for a resume."""
    return _session_run(db, r, "recovery_stop", session_id, user, {"borgfleet_recovery_state": "stopped"})


def remove(db, r, session_id, user):
    """Stop the engine and remove the mounts, the layer and the session's files."""
    return _session_run(db, r, "recovery_remove", session_id, user, {"borgfleet_recovery_state": "absent"})


def resume(db, r, session_id, user):
    """Start a stopped session's engine again on its layer (a broken one is rebuilt from its archive)."""
    s = get_session(db, session_id)
    if not s["backup_job_id"]:
        raise Invalid(_("session %(name)s was not started from a backup job of this service: resume it where it"
                        " was started (playbooks/instant_recovery.yml)", name=s["name"]))
    extravars = {"borgfleet_recovery_state": "started", "borgfleet_backup": s["backup_name"],
                 "borgfleet_archive": s["archive"]}
    if s["client_name"] != s["host"]:
        extravars["borgfleet_recovery_source"] = s["client_name"]
    return _session_run(db, r, "recovery_resume", session_id, user, extravars)


def cleanup(db, r, server_id, user):
    """Tear down on one host what failures left: broken sessions, and mounts of ours no session owns."""
    host = get_server(db, server_id)
    if host["role"] != "client":
        raise Invalid(_("instant recovery runs on clients only: nothing to clean up on a backup server"))
    busy = query(db, "SELECT id FROM jobs WHERE server_id=%s AND kind IN %s"
                     " AND status IN ('queued', 'waiting', 'running') LIMIT 1", (host["id"], CHANGING), one=True)
    if busy:
        # A session being built is not yet healthy: a cleanup now would tear it down.
        raise Invalid(_("a session on %(name)s is being changed by job %(id)s: clean up after it ends",
                        name=host['name'], id=busy['id']))
    return q.create_job(db, r, "recovery_cleanup",
                        {"limit": [host["name"]], "host": host["name"],
                         "extravars": {"borgfleet_recovery_state": "cleanup"}},
                        server_id=host["id"], user=user)


def refresh(db, r, user, server_id=None):
    """Queue recovery_query: the sessions (and their health) of one client, or of every client."""
    if server_id:
        host = get_server(db, server_id)
        if host["role"] != "client":
            raise Invalid(_("instant recovery runs on clients only"))
        hosts = [host["name"]]
    else:
        hosts = [s["name"] for s in query(db, "SELECT name FROM servers WHERE role='client' ORDER BY name")]
    if not hosts:
        raise Invalid(_("no clients: no host can hold an instant recovery session"))
    return q.create_job(db, r, "recovery_query",
                        {"limit": hosts, "hosts": hosts, "extravars": {"borgfleet_recovery_state": "query"}},
                        server_id=server_id, user=user)
