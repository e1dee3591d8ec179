"""Storage pools of backup servers, as the playbooks see them (the contract's server settings)."""
import json

from ..contract import contract
from ..db import execute, query
from .common import Invalid, NotFound, by_contract, field


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
        raise Invalid("storage pools belong to backup servers")
    pool = {"name": field(data, "name", "main"), "path": field(data, "path", required=True)}
    # The server's pools with this one, as the playbooks will see them: names, paths, no nesting.
    settings = by_contract(contract.server_settings, s["name"], backup_server_vars(db, s, pool))
    path = next(p["path"] for p in settings["pools"] if p["name"] == pool["name"])
    pid = execute(db, "INSERT INTO storage_pools (server_id, name, path) VALUES (%s,%s,%s)",
                  (sid, pool["name"], path))
    return query(db, "SELECT * FROM storage_pools WHERE id=%s", (pid,), one=True)


def delete_pool(db, pool_id):
    if not query(db, "SELECT id FROM storage_pools WHERE id=%s", (pool_id,), one=True):
        raise NotFound(f"pool {pool_id} not found")
    if query(db, "SELECT id FROM backup_jobs WHERE pool_id=%s LIMIT 1", (pool_id,), one=True):
        raise Invalid("backup jobs use this pool")
    execute(db, "DELETE FROM storage_pools WHERE id=%s", (pool_id,))
