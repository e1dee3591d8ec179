"""The OpenAPI 3 document of /api, built from one table. tests/ui checks it covers every route."""

_JOB = {"$ref": "#/components/schemas/Accepted"}
_LIST = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}},
                                          "next_before": {"type": "integer", "nullable": True}}}
PAGE = [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 200, "default": 50}},
        {"name": "before", "in": "query", "description": "keyset cursor: next_before of the previous page",
         "schema": {"type": "integer"}}]

# (method, path, role, summary, request body schema name or None, 2xx code, response schema)
ROUTES = [
    ("get", "/api/health", None, "Database and Redis reachability (no login)", None, 200, None),
    ("get", "/api/openapi.json", "viewer", "This document", None, 200, None),
    ("get", "/metrics", "viewer", "Prometheus text format (docs/service.md, Monitoring); also without a token"
     " from BORGFLEET_METRICS_ALLOW's networks", None, 200, None),
    ("get", "/api/me", "viewer", "The caller", None, 200, None),
    ("get", "/api/servers", "viewer", "List servers (paginated; ?role=client|backup_server)", None, 200, _LIST),
    ("post", "/api/servers", "operator", "Add a server (optionally with pools; vars: admins only)", "Server", 201,
     None),
    ("get", "/api/servers/{id}", "viewer", "One server", None, 200, None),
    ("put", "/api/servers/{id}", "operator", "Change a server (vars: admins only; a client with backup jobs"
     " keeps its name and backup server)", "Server", 200, None),
    ("delete", "/api/servers/{id}", "operator", "Remove a server", None, 204, None),
    ("post", "/api/servers/{id}/setup", "operator", "Queue setup.yml for the server (and its peer)", None, 202, _JOB),
    ("post", "/api/servers/{id}/collect-stats", "operator", "Queue collect_stats.yml", None, 202, _JOB),
    ("get", "/api/servers/{id}/stats", "viewer", "Stats history (latest 100)", None, 200, None),
    ("get", "/api/storage-pools", "viewer", "List storage pools (?server_id=)", None, 200, None),
    ("post", "/api/storage-pools", "operator", "Add a pool to a backup server", "Pool", 201, None),
    ("delete", "/api/storage-pools/{id}", "operator", "Remove an unused pool", None, 204, None),
    ("get", "/api/backup-jobs", "viewer", "List backup jobs (paginated; ?client_id=)", None, 200, _LIST),
    ("post", "/api/backup-jobs", "operator", "Define a backup (and its repository)", "BackupJob", 201, None),
    ("get", "/api/backup-jobs/{id}", "viewer", "One backup job (passphrase never returned)", None, 200, None),
    ("put", "/api/backup-jobs/{id}", "operator", "Change a backup job", "BackupJob", 200, None),
    ("delete", "/api/backup-jobs/{id}", "operator", "Remove a backup job from the service", None, 204, None),
    ("post", "/api/backup-jobs/{id}/run", "operator", "Run now: queue backup.yml for this backup", None, 202, _JOB),
    ("post", "/api/backup-jobs/{id}/verify", "operator",
     "Verify now: queue verify.yml (newest archive started, queried, torn down; report in the job's result)",
     None, 202, _JOB),
    ("post", "/api/backup-jobs/{id}/refresh-archives", "operator", "Queue list_archives.yml to resync archives",
     None, 202, _JOB),
    ("post", "/api/backup-jobs/{id}/prune", "operator",
     "Prune now: queue prune.yml (the saved retention, then borg compact if something was pruned)", None, 202, _JOB),
    ("post", "/api/backup-jobs/{id}/prune-preview", "operator",
     "Queue prune.yml --check (borg prune --dry-run) of the retention given (or the saved one); the job's"
     " result lists the archives kept, with their rule, and those that would be pruned", "RetentionPreview",
     202, _JOB),
    ("post", "/api/backup-jobs/{id}/check", "operator",
     "Check now: queue check.yml (borg check; the job's options unless given); result: ok and duration",
     "CheckOptions", 202, _JOB),
    ("get", "/api/archives", "viewer", "List archives with server and repository names (paginated)", None, 200, _LIST),
    ("get", "/api/archives/{id}", "viewer", "One archive", None, 200, None),
    ("delete", "/api/archives/{id}", "operator", "Queue delete_archive.yml for this archive", None, 202, _JOB),
    ("post", "/api/archives/{id}/browse", "viewer",
     "Queue browse.yml: one level of the archive (body {path}; the job's result: archive, path, entries"
     " [{name, path, type, size, mtime, mode, user, group, linktarget}], truncated)", "Browse", 202, _JOB),
    ("post", "/api/backup-jobs/{id}/search", "viewer",
     "Queue search.yml: which archives hold a path or glob and when it changed (body {path, last}; the"
     " job's result: found [{path, archives, changes}], archives_searched)", "Search", 202, _JOB),
    ("post", "/api/archives/{id}/index", "viewer",
     "Index the archive: queue index_archive.yml (every item, borg list on the client, loaded into the"
     " service's archive index; 202), or 200 {indexed, items, dirs, new_listings, seconds, indexed_at} when"
     " it is indexed already. Archives are also indexed after each backup", None, 202, _JOB),
    ("get", "/api/archives/{id}/tree", "viewer",
     "One level of an indexed archive from the index (?path=&page=&per_page=, at most 1000): archive, path,"
     " entries [{name, path, type, size, mtime, mode, user, group, linktarget}] (directories first), total,"
     " page, pages; 409 {error, index_job} while the archive is not indexed", None, 200, None),
    ("get", "/api/backup-jobs/{id}/versions", "viewer",
     "From the index: which archives hold a path or glob (?path=&last=) and when it changed: path, found"
     " [{path, archives, changes}], archives_searched, archives_not_indexed, truncated", None, 200, None),
    ("post", "/api/archives/{id}/restore", "operator",
     "Queue restore_anywhere.yml under the repository's lock: paths of the archive to the original place"
     " (target /: a differing file refuses the restore unless overwrite, which keeps a copy), another"
     " directory or another client; dry_run lists what would be written (the job's result: files, nfiles,"
     " skipped, conflicts, replaced, backup_dir, bytes)", "Restore", 202, _JOB),
    ("get", "/api/jobs", "viewer", "List jobs (paginated by seq; ?status=&backup_job_id=)", None, 200, _LIST),
    ("get", "/api/jobs/{id}", "viewer", "One job: status, error, result", None, 200, None),
    ("get", "/api/jobs/{id}/log", "viewer", "Log lines after N (?after=N); poll with next", None, 200, None),
    ("post", "/api/jobs/{id}/cancel", "operator", "Cancel a queued or running job", None, 202, None),
    ("get", "/api/workers", "admin", "RQ workers: state, pid, current job, started", None, 200, None),
    ("post", "/api/workers/{name}/start", "admin", "Start a worker unit (systemd)", None, 202, None),
    ("post", "/api/workers/{name}/stop", "admin", "Stop a worker (systemd, or RQ shutdown)", None, 202, None),
    ("post", "/api/workers/{name}/restart", "admin", "Restart a worker unit (systemd)", None, 202, None),
    ("get", "/api/workers/{name}/logs", "admin", "Worker log (journal or serve log file)", None, 200, None),
    ("get", "/api/settings", "viewer", "Settings", None, 200, None),
    ("put", "/api/settings", "admin", "Change settings (app_name, stats_interval_minutes)", "Settings", 200, None),
    ("get", "/api/users", "admin", "List users", None, 200, None),
    ("post", "/api/users", "admin", "Add a user (password generated and returned once if not given)", "User",
     201, None),
    ("put", "/api/users/{id}", "admin",
     "Change a user's password, role or disabled flag (a new password or disabling ends its login sessions)",
     "UserUpdate", 200, None),
    ("get", "/api/tokens", "viewer", "The caller's API tokens (created_at, expires_at, last_used_at)", None, 200, None),
    ("post", "/api/tokens", "viewer", "New API token for the caller (shown once; optional expires_at)", "Token",
     201, None),
    ("delete", "/api/tokens/{id}", "viewer", "Revoke a token", None, 204, None),
    # Instant recovery (api_recovery.py)
    ("post", "/api/archives/{id}/instant-recovery", "operator",
     "Start instant recovery of an archive of a database backup (on its client, or host_id: another client)",
     "InstantRecovery", 202, _JOB),
    ("get", "/api/recovery-sessions", "viewer",
     "Instant recovery sessions as their hosts last reported them (?server_id=), with health and connection",
     None, 200, None),
    ("post", "/api/recovery-sessions/refresh", "operator",
     "Queue a query of the sessions of every client (?server_id= one client)", None, 202, _JOB),
    ("get", "/api/recovery-sessions/{id}", "viewer", "One session: health, connection details", None, 200, None),
    ("post", "/api/recovery-sessions/{id}/stop", "operator", "Stop the session's engine (its layer is kept)",
     None, 202, _JOB),
    ("post", "/api/recovery-sessions/{id}/resume", "operator", "Start a stopped session again on its layer",
     None, 202, _JOB),
    ("post", "/api/recovery-sessions/{id}/refresh", "operator", "Queue a query of the session's host (its health)",
     None, 202, _JOB),
    ("delete", "/api/recovery-sessions/{id}", "operator",
     "Remove the session: engine stopped, mounts and layer removed", None, 202, _JOB),
    ("post", "/api/servers/{id}/recovery-cleanup", "operator",
     "Tear down what failures left on a client: broken sessions and unowned mounts", None, 202, _JOB),
]

SCHEMAS = {
    "Accepted": {"type": "object", "properties": {"job_id": {"type": "string"}, "status": {"type": "string"},
                                                  "url": {"type": "string"}}},
    "Server": {"type": "object", "required": ["name", "role"], "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
        "role": {"type": "string", "enum": ["client", "backup_server"]},
        "address": {"type": "string"}, "port": {"type": "integer"}, "ssh_user": {"type": "string"},
        "connection": {"type": "string", "enum": ["ssh", "local"]},
        "backup_server_id": {"type": "integer", "nullable": True},
        "local_pool_path": {"type": "string", "nullable": True},
        "vars": {"type": "object", "additionalProperties": False,
                 "description": "extra host variables, set or changed by admins only (403 otherwise);"
                                " only these names, each checked (400 naming the variable)",
                 "properties": {
                     "borgfleet_server_user": {"type": "string", "description": "backup servers"},
                     "borgfleet_server_user_home": {"type": "string", "description": "backup servers; absolute"},
                     "borgfleet_server_ssh_host": {"type": "string", "description": "backup servers; host name or IP"},
                     "borgfleet_server_ssh_port": {"type": "integer", "minimum": 1, "maximum": 65535},
                     "borgfleet_ssh_key": {"type": "string", "description": "clients; absolute path"},
                     "borgfleet_known_hosts": {"type": "string", "description": "clients; absolute path"},
                     "borgfleet_borg_base_dir": {"type": "string", "description": "clients; absolute path"},
                     "borgfleet_lock_wait": {"type": "integer", "minimum": 1, "maximum": 86400},
                     "ansible_python_interpreter": {"type": "string", "description": "absolute path; ssh only"},
                     "ansible_ssh_private_key_file": {"type": "string", "description": "absolute path"},
                     "ansible_ssh_common_args": {"type": "string", "description":
                                                 "only -o UserKnownHostsFile=, StrictHostKeyChecking=yes,"
                                                 " IdentitiesOnly=, ConnectTimeout=, ServerAliveInterval=,"
                                                 " ServerAliveCountMax="}}},
        "pools": {"type": "array", "items": {"$ref": "#/components/schemas/Pool"}}}},
    "Pool": {"type": "object", "required": ["path"], "properties": {
        "server_id": {"type": "integer"}, "name": {"type": "string"}, "path": {"type": "string"}}},
    "BackupJob": {"type": "object", "required": ["client_id", "name", "passphrase"], "properties": {
        "client_id": {"type": "integer"}, "name": {"type": "string"},
        "paths": {"type": "array", "items": {"type": "string"}, "description": "files; none with databases"},
        "databases": {"type": "array", "maxItems": 1, "items": {"type": "object", "required": ["engine"]},
                      "description": "one database (docs/contract.md; no login_password)"},
        "verify_schedule": {"type": "string", "description": "cron expression for verify.yml (database backups)"},
        "exclude": {"type": "array", "items": {"type": "string"}},
        "compression": {"type": "string"}, "passphrase": {"type": "string", "writeOnly": True},
        "retention": {"type": "object"}, "pool_id": {"type": "integer"},
        "schedule": {"type": "string", "description": "cron expression"},
        "timezone": {"type": "string", "description": "IANA zone, e.g. Europe/Berlin"},
        "enabled": {"type": "boolean"},
        "prune_schedule": {"type": "string", "nullable": True, "description":
                           "cron expression for prune.yml; null: prune after each successful backup"
                           " (only with a retention)"},
        "check_schedule": {"type": "string", "nullable": True, "description": "cron expression for check.yml"},
        "check_scope": {"type": "string", "enum": ["all", "repository", "archives"]},
        "check_verify_data": {"type": "boolean", "description": "borg check --verify-data (reads every chunk)"}}},
    "RetentionPreview": {"type": "object", "properties": {
        "retention": {"type": "object", "description": "as a backup's retention; absent: the saved one"}}},
    "CheckOptions": {"type": "object", "properties": {
        "scope": {"type": "string", "enum": ["all", "repository", "archives"]},
        "verify_data": {"type": "boolean"}}},
    "Browse": {"type": "object", "properties": {
        "path": {"type": "string", "description": "directory inside the archive (no leading /); empty = top"}}},
    "Search": {"type": "object", "required": ["path"], "properties": {
        "path": {"type": "string", "description": "path inside the archive or a glob (etc/nginx/*.conf)"},
        "last": {"type": "integer", "minimum": 0, "description": "only the newest N archives (0 = all)"}}},
    "Restore": {"type": "object", "required": ["paths"], "properties": {
        "paths": {"type": "array", "minItems": 1, "maxItems": 200, "items": {"type": "string"},
                  "description": "files and directories inside the archive"},
        "client_id": {"type": "integer", "description": "client restored onto (default: the one backed up; another"
                                                        " reads the repository with its own key)"},
        "target": {"type": "string", "default": "/", "description": "/ = the original place; else a directory"},
        "overwrite": {"type": "boolean", "default": False,
                      "description": "replace files that differ (a copy of each is kept under backup_dir)"},
        "backup_dir": {"type": "string", "description": "where copies of replaced files go (absolute)"},
        "dry_run": {"type": "boolean", "default": False, "description": "only list what would be written"}}},
    "InstantRecovery": {"type": "object", "properties": {
        "host_id": {"type": "integer", "description": "the client that runs the session (default: the archive's"
                                                      " own client; another one reads the repository with its"
                                                      " own key)"},
        "address": {"type": "string", "description": "IP address the engine listens on (default 127.0.0.1)"},
        "port": {"type": "integer", "minimum": 0, "maximum": 65535,
                 "description": "0 or absent: the first free from 55432 (PostgreSQL) / 53306 (MariaDB)"},
        "name": {"type": "string", "description": "session name (default from the archive name)"}}},
    "Settings": {"type": "object", "properties": {"app_name": {"type": "string"},
                                                  "stats_interval_minutes": {"type": "integer"}}},
    "User": {"type": "object", "required": ["username", "role"], "properties": {
        "username": {"type": "string"}, "role": {"type": "string", "enum": ["admin", "operator", "viewer"]},
        "password": {"type": "string", "minLength": 10, "maxLength": 1024, "writeOnly": True}}},
    "UserUpdate": {"type": "object", "properties": {
        "password": {"type": "string", "minLength": 10, "maxLength": 1024, "writeOnly": True},
        "role": {"type": "string", "enum": ["admin", "operator", "viewer"]}, "disabled": {"type": "boolean"}}},
    "Token": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"},
        "expires_at": {"type": "string", "format": "date-time", "nullable": True,
                       "description": "ISO 8601, in the future (UTC when no offset); the token is refused after it"}}},
}


def document():
    paths = {}
    for method, path, role, summary, req, code, resp in ROUTES:
        op = {"summary": summary, "responses": {str(code): {"description": "OK"}}}
        if role:
            op["description"] = f"Requires role {role} or higher."
            op["responses"].update({"401": {"description": "not logged in"},
                                    "403": {"description": "role too low"}})
        else:
            op["security"] = []
        if resp:
            op["responses"][str(code)]["content"] = {"application/json": {"schema": resp}}
        if req:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{req}"}}}}
        params = [{"name": p.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in path.split("/") if p.startswith("{")]
        if resp is _LIST:
            params += PAGE
        if params:
            op["parameters"] = params
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "BorgFleet API", "version": "1"},
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "token": {"type": "http", "scheme": "bearer", "description": "API token from POST /api/tokens"},
            "session": {"type": "apiKey", "in": "cookie", "name": "session",
                        "description": "page login; writes need the X-CSRF-Token header"}}},
        "security": [{"token": []}, {"session": []}],
        "paths": paths,
    }
