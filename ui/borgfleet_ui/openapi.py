"""The OpenAPI 3 document of /api, built from one table. tests/ui checks it covers every route."""
from . import forms
from .fleet import archives, backup_jobs, recovery, runs, servers

_JOB = {"$ref": "#/components/schemas/Accepted"}
_LIST = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}},
                                          "next_before": {"type": "integer", "nullable": True}}}
PAGE = [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 200, "default": 50}},
        {"name": "before", "in": "query", "description": "keyset cursor: next_before of the previous page",
         "schema": {"type": "integer"}}]



def list_params(listing, extra=()):
    """The sort and filter parameters of a list route, read from its Listing (fleet/common.py): the
    sort keys and filter values it accepts are exactly these; anything else is refused (400)."""
    params = [
        {"name": "sort", "in": "query", "schema": {"type": "string", "enum": sorted(listing.sorts)},
         "description": "column to sort by (default: " + (listing.default or "newest first") + ");"
                        " ties in the order of creation"},
        {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]},
         "description": "default: the column's natural order (names ascending, times and sizes newest/largest first)"},
        {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 100},
         "description": "text found anywhere in " + ", ".join(listing.search) + " (% and _ are taken literally)"}]
    for name, spec in listing.choices.items():
        params.append({"name": name, "in": "query",
                       "schema": {"type": "string", "enum": list(spec if isinstance(spec, dict) else spec[1])}})
    for name in listing.ids:
        params.append({"name": name, "in": "query", "schema": {"type": "integer"}})
    return params + list(extra)


# Query parameters of the sortable, filterable lists.
LIST_PARAMS = {
    "/api/servers": list_params(servers.LISTING),
    "/api/backup-jobs": list_params(backup_jobs.LISTING),
    "/api/archives": list_params(archives.LISTING),
    "/api/jobs": list_params(runs.LISTING),
    "/api/recovery-sessions": list_params(recovery.LISTING, [
        {"name": "health", "in": "query", "schema": {"type": "string", "enum": list(recovery.HEALTH)}}]),
}
_VERDICT = {"type": "object", "properties": {
    "valid": {"type": "boolean"},
    "errors": {"type": "object", "additionalProperties": {"type": "string"},
               "description": "input name -> the message the form's operation gives it; _form: a refusal"
                              " that names no field"}}}

# (method, path, role, summary, request body schema name or None, 2xx code, response schema)
_SERVER_EDIT = (" (absent fields keep their value; vars: admins only). A client with backup jobs keeps its"
     " name and backup server; the role changes only when nothing depends on the old one (a client without backup jobs; a"
     " backup server without clients nor repositories, whose empty pools then go), else 400 saying what to move"
     " or delete first. A new connection (address, port, ssh_user, connection) or role marks the server"
     " setup_status 'needs setup'; a new address or port drops the host key pinned for the old endpoint (pin"
     " the new one with .../trust-host-key). test_connection: true runs Test connection on the new connection"
     " first and saves nothing when it fails (400 {error, connection_test}); setup: true queues setup.yml when"
     " the connection or role changed. 200: the Server with connection_test (verdict or null) and setup_job_id"
     " (or null)")

ROUTES = [
    ("get", "/api/health", None, "Database and Redis reachability (no login)", None, 200, None),
    ("get", "/api/openapi.json", "viewer", "This document", None, 200, None),
    ("get", "/metrics", "viewer", "Prometheus text format (docs/service.md, Monitoring); also without a token"
     " from BORGFLEET_METRICS_ALLOW's networks", None, 200, None),
    ("get", "/api/me", "viewer", "The caller (with its language and theme)", None, 200, None),
    ("put", "/api/me/preferences", "viewer", "The caller's language (en|fr|null: the browser's) and theme"
     " (light|dark|null: the system's)", None, 200, None),
    ("get", "/api/servers", "viewer", "List servers (paginated; sort and filter: ?sort=&order=&q=&role=&setup=)",
     None, 200, _LIST),
    ("post", "/api/servers", "operator", "Add a server (optionally with pools; vars: admins only)", "Server", 201,
     None),
    ("post", "/api/servers/test-connection", "operator", "Test connection of a server to add (nothing saved):"
     " TCP, then ssh with BatchMode and the key/known_hosts Ansible would use, sudo for a non-root user, and a"
     " backup server's pool paths (exists or creatable, free space). 200 with {ok, verdict: ok|unknown_host|"
     "port_closed|unreachable|timeout|not_ssh|host_key_changed|host_key_unknown|auth_refused|sudo_missing|"
     "ssh_failed, title, message, public_key (auth_refused), host_keys (host key verdicts), uid, sudo, pools:"
     " [{name, path, state, usable, message, mount, total_bytes, free_bytes}], seconds}", "ConnectionTest", 200,
     None),
    ("post", "/api/servers/trust-host-key", "operator", "Pin the host key whose fingerprint (SHA256:...)"
     " Test connection showed, in the known_hosts the connection uses (the server's UserKnownHostsFile, else"
     " the service account's ~/.ssh/known_hosts); 400 when a key of that host is pinned already (a changed key"
     " is replaced by hand) or the host no longer offers it. 200 {pinned, fingerprint, type, known_hosts}",
     "TrustHostKey", 200, None),
    ("get", "/api/servers/{id}", "viewer", "One server", None, 200, None),
    ("put", "/api/servers/{id}", "operator", "Change a server" + _SERVER_EDIT, "ServerEdit", 200, None),
    ("patch", "/api/servers/{id}", "operator", "Change some fields of a server (as PUT)" + _SERVER_EDIT, "ServerEdit",
     200, None),
    ("post", "/api/servers/{id}/test-connection", "operator", "Test connection of the server as the body would"
     " change it (nothing saved): its new address, port, ssh_user, with its saved key and known_hosts (vars);"
     " a backup server's pools checked on that host. 200 with the verdict (as /api/servers/test-connection);"
     " 400 for a local server or a refused change", "ServerEdit", 200, None),
    ("post", "/api/servers/{id}/trust-host-key", "operator", "Pin the host key Test connection showed for the"
     " server's (edited) endpoint in the known_hosts its connection uses; only while none is pinned there"
     " (400 otherwise: a changed key is replaced by hand). 200 {pinned, fingerprint, type, known_hosts}",
     "ServerEdit", 200, None),
    ("get", "/api/servers/{id}/deletion", "viewer", "What deleting the server takes with it in the service:"
     " counts of backup_jobs, archives (rows), pools, clients; its repositories on the backup server stay", None,
     200, None),
    ("delete", "/api/servers/{id}", "operator", "Remove a server and, in the service, its backup jobs and their"
     " archive rows (its repositories on the backup server stay; refused while it holds repositories or has"
     " clients)", None, 204, None),
    ("post", "/api/servers/{id}/setup", "operator", "Queue setup.yml for the server (and its peer)", None, 202, _JOB),
    ("post", "/api/servers/{id}/collect-stats", "operator", "Queue collect_stats.yml", None, 202, _JOB),
    ("get", "/api/servers/{id}/stats", "viewer", "Stats history (latest 100)", None, 200, None),
    ("get", "/api/servers/{id}/stats/history", "viewer", "The charted figures (cpu, ram, disk %, load) over"
     " ?range=day|week|month|year: {range, t: [unix seconds], cpu, ram, disk, load}", None, 200, None),
    ("get", "/api/servers/{id}/capabilities", "viewer", "The newest capabilities detection: {detected_at,"
     " capabilities (docs/contract.md Facts), databases: one row per database found}; 404 before the first",
     None, 200, None),
    ("post", "/api/servers/{id}/detect-capabilities", "operator", "Queue detect_capabilities.yml (Reload"
     " capabilities; also queued after each successful setup)", None, 202, _JOB),
    ("get", "/api/storage-pools", "viewer", "List storage pools (?server_id=)", None, 200, None),
    ("post", "/api/storage-pools", "operator", "Add a pool to a backup server", "Pool", 201, None),
    ("delete", "/api/storage-pools/{id}", "operator", "Remove an unused pool", None, 204, None),
    ("get", "/api/storage-pools/usage", "viewer", "Every analysed pool: capacity, used, free, warn, growth a day,"
     " full_in_days, repositories with size on disk and borg's original/compressed/deduplicated sizes,"
     " repository_count, repositories_original_size, repositories_deduplicated_size", None, 200,
     None),
    ("post", "/api/storage-pools/analyze", "operator", "Queue analyze_pools.yml over the servers set up", None, 202,
     _JOB),
    ("get", "/api/backup-jobs", "viewer",
     "List backup jobs (paginated; sort and filter: ?sort=&order=&q=&client_id=&enabled=)", None, 200, _LIST),
    ("post", "/api/backup-jobs", "operator", "Define a backup (and its repository); with setup: true the client's"
     " setup is queued too (it creates the repository), its job id returned as setup_job_id", "BackupJob", 201, None),
    ("post", "/api/backup-jobs/check-draft", "operator", "Check a backup job as POST /api/backup-jobs would,"
     " the passphrase apart, saving nothing (the backup wizard's steps): {name, repository, local, pool, paths,"
     " exclude, compression, retention} as the collection resolves them, or 400 with the same message",
     "BackupJob", 200, None),
    ("get", "/api/schedules/next-runs", "viewer", "The next runs of ?cron= in ?timezone= (default UTC) as the"
     " scheduler computes them (DST-aware): {cron, timezone, runs: [{utc, local (ISO 8601 with the zone's offset),"
     " text, utc_text}]}; ?count=1..50 (5), ?after= ISO 8601 time (now); 400 for a bad cron or zone", None, 200,
     None),
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
    ("get", "/api/archives", "viewer", "List archives with server and repository names (paginated; sort and"
     " filter: ?sort=&order=&q=&backup_job_id=)", None, 200, _LIST),
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
    ("get", "/api/jobs", "viewer", "List jobs (paginated by seq; sort and filter:"
     " ?sort=&order=&q=&status=&kind=&backup_job_id=&server_id=)", None, 200, _LIST),
    ("get", "/api/jobs/{id}", "viewer", "One job: status, error, result", None, 200, None),
    ("get", "/api/jobs/{id}/log", "viewer", "Log lines after N (?after=N); poll with next", None, 200, None),
    ("post", "/api/jobs/{id}/cancel", "operator", "Cancel a queued or running job", None, 202, None),
    ("post", "/api/validate/{form}", "operator",
     "Judge a page form's typed values as its operation would (its dry run: nothing saved, nothing queued):"
     " form is one of " + ", ".join(sorted(forms.FORMS)) + "; the answer names each refused input", "Validate",
     200, _VERDICT),
    ("get", "/api/workers", "admin", "Workers (RQ's registry, and those seen before: state stopped): state, pid,"
     " cpu_percent, rss_bytes, uptime_seconds, current job, control (systemd|serve|null); and the active"
     " scheduler", None, 200, None),
    ("post", "/api/workers/{name}/start", "admin", "Start a worker (systemd unit, or the supervisor of"
     " `borgfleet-ui serve`; 409 with the reason elsewhere)", None, 202, None),
    ("post", "/api/workers/{name}/stop", "admin", "Stop a worker after its current job (systemd, serve, or RQ's"
     " shutdown command)", None, 202, None),
    ("post", "/api/workers/{name}/restart", "admin", "Restart a worker (systemd or serve)", None, 202, None),
    ("get", "/api/workers/{name}/logs", "admin", "Worker log (journal or serve log file); ?lines=1..5000 (200),"
     " ?since=UTC time or age (15m, 2h, 1d)", None, 200, None),
    ("get", "/api/settings", "viewer", "Settings", None, 200, None),
    ("put", "/api/settings", "admin", "Change settings (app_name, default_timezone, stats_interval_minutes,"
     " pool_warn_percent, detect_after_setup); all are checked before any is saved", "Settings", 200, None),
    ("get", "/api/users", "admin", "List users", None, 200, None),
    ("post", "/api/users", "admin", "Add a user (password generated and returned once if not given)", "User",
     201, None),
    ("put", "/api/users/{id}", "admin",
     "Change a user's password, role or disabled flag (a new password or disabling ends its login sessions)",
     "UserUpdate", 200, None),
    ("post", "/api/users/{id}/reset-password", "admin", "A new generated password for the user, returned once"
     " (the old one is refused from now on, its login sessions end)", None, 200, None),
    ("get", "/api/tokens", "viewer", "The caller's API tokens (created_at, expires_at, last_used_at)", None, 200, None),
    ("post", "/api/tokens", "viewer", "New API token for the caller (shown once; optional expires_at)", "Token",
     201, None),
    ("delete", "/api/tokens/{id}", "viewer", "Revoke a token", None, 204, None),
    # Notifications (api_notifications.py)
    ("get", "/api/notifications/settings", "admin",
     "SMTP, base URL, webhook, Apprise and digest settings (secrets never returned: smtp_password_set,"
     " webhook_secret_set, apprise_urls_set)",
     None, 200, None),
    ("put", "/api/notifications/settings", "admin",
     "Change notification settings (a secret: a string sets it, encrypted; '' or null clears it; absent keeps it)",
     "NotificationSettings", 200, None),
    ("post", "/api/notifications/test-email", "admin",
     "Send a test message now with the saved settings (to: default the caller's subscription); 502 with the"
     " reason in words when the mail server fails", "TestEmail", 200, None),
    ("post", "/api/notifications/test-apprise", "admin",
     "Send a test message now to every saved Apprise URL (sent, urls: how many); 400 when none is set; 502"
     " naming the URLs that failed by their line (never their text: they carry tokens)", None, 200, None),
    ("post", "/api/notifications/digest", "admin", "Queue a digest of the last period to its subscribers now",
     None, 202, None),
    ("get", "/api/notifications/subscription", "viewer", "The caller's subscription (null: none)", None, 200, None),
    ("put", "/api/notifications/subscription", "viewer", "Create or replace the caller's subscription",
     "Subscription", 200, None),
    ("delete", "/api/notifications/subscription", "viewer", "Unsubscribe the caller", None, 204, None),
    ("get", "/api/notifications/subscriptions", "admin", "Everyone's subscriptions", None, 200, None),
    ("put", "/api/notifications/subscriptions/{id}", "admin", "Create or replace a user's subscription",
     "Subscription", 200, None),
    ("delete", "/api/notifications/subscriptions/{id}", "admin", "Remove a user's subscription", None, 204, None),
    ("get", "/api/notifications/deliveries", "admin",
     "Messages queued, sent or failed, newest first (?limit=, at most 200): event, channel, recipient, status,"
     " attempts, error", None, 200, None),
    ("get", "/api/notifications/incidents", "viewer",
     "Incidents, newest first (?open=1: those still failing): a backup job's (backup_job, client, kind, first"
     " and last failed job) or a pool's / a server's (kind pool or server, server_id, server, subject: the pool"
     " or disk/memory/cpu); failures, opened and closed", None, 200, None),
    ("get", "/api/notifications/pings", "operator", "The backup jobs' ping URLs (healthchecks style)", None, 200,
     None),
    ("put", "/api/notifications/pings/{id}", "operator",
     "Set the ping URL of a backup job ({url}): each backup POSTs <url>/start, <url> on success, <url>/fail on"
     " failure", "PingUrl", 200, None),
    ("delete", "/api/notifications/pings/{id}", "operator", "Remove a backup job's ping URL", None, 204, None),
    # Instant recovery (api_recovery.py)
    ("post", "/api/archives/{id}/instant-recovery", "operator",
     "Start instant recovery of an archive of a database backup (on its client, or host_id: another client)",
     "InstantRecovery", 202, _JOB),
    ("get", "/api/recovery-sessions", "viewer",
     "Instant recovery sessions as their hosts last reported them, with health and connection (not paged;"
     " sort and filter: ?sort=&order=&q=&server_id=&engine=&health=)", None, 200, None),
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
    "ConnectionTest": {"type": "object", "required": ["address"], "properties": {
        "name": {"type": "string"}, "role": {"type": "string", "enum": ["client", "backup_server"]},
        "address": {"type": "string"}, "port": {"type": "integer", "default": 22},
        "ssh_user": {"type": "string", "default": "root"},
        "vars": {"type": "object", "description": "as a Server's (admins only): its key file and known_hosts"},
        "pools": {"type": "array", "items": {"$ref": "#/components/schemas/Pool"},
                  "description": "backup servers: paths checked on the host after the contract's pool rules"}}},
    "ServerEdit": {"type": "object", "description": "a Server's fields, each optional (absent: unchanged)",
                   "properties": {
        "name": {"type": "string"}, "role": {"type": "string", "enum": ["client", "backup_server"]},
        "address": {"type": "string"}, "port": {"type": "integer"}, "ssh_user": {"type": "string"},
        "connection": {"type": "string", "enum": ["ssh", "local"], "description": "local: admins only"},
        "backup_server_id": {"type": "integer", "nullable": True}, "local_pool_path": {"type": "string"},
        "vars": {"type": "object", "description": "as a Server's (admins only)"},
        "test_connection": {"type": "boolean", "default": False, "description": "PUT/PATCH: test a new"
                            " connection first; nothing saved when it fails"},
        "setup": {"type": "boolean", "default": False, "description": "PUT/PATCH: queue setup.yml when the"
                  " connection or role changed"},
        "fingerprint": {"type": "string", "description": "trust-host-key: SHA256:... as Test connection showed"}}},
    "TrustHostKey": {"type": "object", "required": ["address", "fingerprint"], "properties": {
        "address": {"type": "string"}, "port": {"type": "integer", "default": 22},
        "ssh_user": {"type": "string", "default": "root"}, "role": {"type": "string"},
        "vars": {"type": "object", "description": "as a Server's (admins only)"},
        "fingerprint": {"type": "string", "description": "SHA256:... as Test connection showed it"}}},
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
        "check_verify_data": {"type": "boolean", "description": "borg check --verify-data (reads every chunk)"},
        "setup": {"type": "boolean", "default": False, "writeOnly": True,
                  "description": "POST only: queue the client's setup too (creates the repository)"}}},
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
    "Validate": {"type": "object", "required": ["values"], "properties": {
        "values": {"type": "object", "additionalProperties": {"oneOf": [
            {"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "description": "each input's name and text as the form would post it"},
        "backup_job_id": {"type": "integer", "description": "forms retention and check: the backup job edited"},
        "archive_id": {"type": "integer", "description": "form restore: the archive restored from"}}},
    "Settings": {"type": "object", "properties": {
        "app_name": {"type": "string"}, "stats_interval_minutes": {"type": "integer"},
        "default_timezone": {"type": "string", "description": "IANA time zone of new backup jobs that name none"},
        "pool_warn_percent": {"type": "integer", "minimum": 1, "maximum": 100},
        "detect_after_setup": {"type": "integer", "enum": [0, 1]},
        "job_log_retention_days": {"type": "integer", "description": "log lines of finished jobs older than this"
                                   " are deleted (0: kept forever; default 90)"}}},
    "NotificationSettings": {"type": "object", "additionalProperties": False, "properties": {
        "smtp_host": {"type": "string"}, "smtp_port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "smtp_security": {"type": "string", "enum": ["none", "starttls", "tls"]},
        "smtp_user": {"type": "string"}, "smtp_password": {"type": "string", "nullable": True, "writeOnly": True},
        "smtp_sender": {"type": "string", "format": "email"},
        "base_url": {"type": "string", "description": "http(s) URL of this service; messages link under it"},
        "webhook_url": {"type": "string", "description": "http(s) URL; empty: no webhook"},
        "webhook_secret": {"type": "string", "nullable": True, "writeOnly": True,
                           "description": "signs each POST: X-BorgFleet-Signature: sha256=<hex HMAC-SHA256 of"
                                          " the body>; X-BorgFleet-Timestamp: Unix seconds (also in the body)"},
        "apprise_urls": {"type": "string", "nullable": True, "writeOnly": True,
                         "description": "Apprise URLs of chat services (slack://, matrix://, json:// ...), one per"
                                        " line (or a list); stored encrypted; '' or null: none. They hear the"
                                        " webhook's events with the mail's subject and text"},
        "stale_margin_minutes": {"type": "integer", "minimum": 0, "description":
                                 "a scheduled backup without success by its next due run plus this is stale; 0: off"},
        "digest_frequency": {"type": "string", "enum": ["off", "daily", "weekly"]},
        "digest_time": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
        "digest_weekday": {"type": "integer", "minimum": 0, "maximum": 6, "description": "0 = Monday"},
        "digest_timezone": {"type": "string", "description": "IANA zone"},
        "pool_full_days": {"type": "integer", "minimum": 0, "maximum": 366, "description":
                           "a pool forecast full within this many days is reported; 0: off"},
        **{f"server_{r}_percent": {"type": "integer", "minimum": 0, "maximum": 100, "description":
                                   f"a server's {r} use at or above this in two samples in a row is reported; 0: off"}
           for r in ("disk", "memory", "cpu")}}},
    "PingUrl": {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
    "TestEmail": {"type": "object", "properties": {"to": {"type": "string", "format": "email"}}},
    "Subscription": {"type": "object", "required": ["email"], "properties": {
        "email": {"type": "string", "format": "email"},
        "events": {"type": "array", "items": {"type": "string", "enum": ["failure", "recovery", "stale", "digest", "missed",
                                                                        "pool", "server", "session"]},
                   "description": "default: all"},
        "backup_job_ids": {"type": "array", "nullable": True, "items": {"type": "integer"},
                           "description": "null or absent: all backup jobs"},
        "enabled": {"type": "boolean", "default": True}}},
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
        if method == "get":
            params += LIST_PARAMS.get(path, [])
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
