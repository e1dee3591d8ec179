"""REST API, auth and roles against the real MariaDB/Redis (one test drains the queue with a worker)."""
import json
import re


from borgfleet_ui import db as dbm
from borgfleet_ui.auth import hash_token
from uilib import wait_for

# Who may do what, written out here and never read from the code under test: changing an access
# rule, or adding an endpoint, means changing this table too. Endpoint -> least role; None: public.
ROLES = ("viewer", "operator", "admin")  # each may do what the ones before it may
ACCESS = {
    "auth.login": None, "api.health": None, "static": None, "vendor.static": None, "vendor_charts.static": None,
    "auth.logout": "viewer",
    "api.me": "viewer", "api.openapi": "viewer", "api.me_preferences": "viewer", "pages.preferences": "viewer",
    "i18n.language": None,
    # Prometheus scrapes: a token, or an address in BORGFLEET_METRICS_ALLOW (tests/ui/test_metrics.py).
    "metrics.scrape": "viewer",
    "api.servers_list": "viewer", "api.servers_get": "viewer", "api.servers_stats": "viewer",
    "api.servers_create": "operator", "api.servers_update": "operator", "api.servers_delete": "operator",
    "api.servers_setup": "operator", "api.servers_collect": "operator",
    "api.servers_test_connection": "operator", "api.servers_trust_host_key": "operator", "pages.server_new": "operator",
    "api.servers_edit_test_connection": "operator", "api.servers_edit_trust_host_key": "operator",
    "api.servers_stats_history": "viewer", "api.servers_capabilities": "viewer", "api.servers_detect": "operator",
    "pages.server_page": "viewer", "pages.server_detect": "operator", "pages.server_collect": "operator",
    "api.pools_list": "viewer", "api.pools_create": "operator", "api.pools_delete": "operator",
    "api.pools_usage": "viewer", "api.pools_analyze": "operator", "pages.pools_page": "viewer",
    "pages.pools_analyze": "operator",
    "api.bj_list": "viewer", "api.bj_get": "viewer",
    "api.bj_create": "operator", "api.bj_update": "operator", "api.bj_delete": "operator",
    "api.bj_run": "operator", "api.bj_verify": "operator", "api.bj_refresh": "operator",
    "api.bj_prune": "operator", "api.bj_prune_preview": "operator", "api.bj_check": "operator",
    "api.schedules_next_runs": "viewer", "api.bj_check_draft": "operator",
    # The backup wizard: operators only (it ends by creating a backup job).
    "pages.bj_wizard_start": "operator", "pages.bj_wizard": "operator", "pages.bj_wizard_post": "operator",
    "pages.bj_wizard_reload": "operator", "pages.bj_wizard_create": "operator",
    "api.archives_list": "viewer", "api.archives_get": "viewer", "api.archives_delete": "operator",
    "api.jobs_list": "viewer", "api.jobs_get": "viewer", "api.jobs_log": "viewer", "api.jobs_cancel": "operator",
    "api.settings_get": "viewer", "api.settings_put": "admin",
    "api.tokens_list": "viewer", "api.tokens_create": "viewer", "api.tokens_delete": "viewer",
    "api.users_list": "admin", "api.users_create": "admin", "api.users_update": "admin",
    "api.users_reset_password": "admin", "api.servers_deletion": "viewer",
    "api.workers_list": "admin", "api.workers_control": "admin", "api.workers_logs": "admin",
    # Inline validation of the pages' forms: every form it judges is an operator's.
    "api.validate": "operator",
    "pages.dashboard": "viewer", "pages.servers": "viewer", "pages.backup_jobs": "viewer",
    "pages.archives": "viewer", "pages.jobs": "viewer", "pages.job": "viewer",
    "pages.server_setup": "operator", "pages.backup_run": "operator", "pages.backup_verify": "operator",
    "pages.archive_delete": "operator", "pages.job_cancel": "operator",
    "pages.workers_page": "admin", "pages.worker_control": "admin", "pages.worker_logs": "admin",
    "backup_job.page": "viewer", "backup_job.preview_part": "viewer",
    "backup_job.prune": "operator", "backup_job.check": "operator", "backup_job.check_settings": "operator",
    "backup_job.settings": "operator", "backup_job.enabled": "operator", "backup_job.delete": "operator",
    "pages.server_edit": "operator", "pages.server_delete": "operator", "pages.server_pool_add": "operator",
    "pages.server_pool_delete": "operator", "pages.users_page": "admin", "pages.users_create": "admin",
    "pages.users_update": "admin", "pages.users_reset_password": "admin", "pages.tokens_page": "viewer",
    "pages.tokens_create": "viewer", "pages.tokens_revoke": "viewer", "pages.settings_page": "admin",
    "backup_job.refresh_archives": "operator", "backup_job.retention": "operator",
    # Restore: viewers browse and look for a file's versions; operators restore.
    "api.archives_browse": "viewer", "api.bj_search": "viewer", "api.archives_restore": "operator",
    "api.archives_index": "viewer", "api.archives_tree": "viewer", "api.bj_versions": "viewer",
    "pages.restore_start": "viewer", "pages.archive_browse": "viewer", "pages.archive_browse_post": "viewer",
    "pages.file_versions": "viewer", "pages.file_versions_post": "viewer",
    "pages.restore_wizard": "operator", "pages.restore_run": "operator",
    # Instant recovery: viewers see sessions; operators start, stop, resume, remove and clean up
    # (the start page is seen by viewers, its POST refused to them inside the view, as /servers does).
    "api.recovery_sessions": "viewer", "api.recovery_session": "viewer",
    "api.archive_recover": "operator", "api.recovery_cleanup": "operator", "api.recovery_refresh": "operator",
    "api.recovery_remove": "operator", "api.recovery_resume": "operator", "api.recovery_stop": "operator",
    "api.recovery_session_refresh": "operator",
    "pages.recovery_sessions": "viewer", "pages.recovery_session": "viewer", "pages.archive_recover": "viewer",
    "pages.recovery_action": "operator", "pages.recovery_cleanup": "operator", "pages.recovery_refresh": "operator",
    "pages.recovery_session_refresh": "operator",
    # Notifications: everyone manages their own subscription and sees what is failing; admins the settings,
    # the test mail, everyone's subscriptions and the delivery log (the /notifications page's POST checks
    # inside the view that a user other than the caller is only changed by an admin).
    "api.notify_settings_get": "admin", "api.notify_settings_put": "admin", "api.notify_test_email": "admin",
    "api.notify_digest_now": "admin", "api.notify_subscriptions": "admin", "api.notify_subscription_put": "admin",
    "api.notify_subscription_delete": "admin", "api.notify_deliveries": "admin",
    "api.notify_my_subscription": "viewer", "api.notify_my_subscription_put": "viewer",
    "api.notify_my_subscription_delete": "viewer", "api.notify_incidents": "viewer",
    "api.notify_pings": "operator", "api.notify_ping_put": "operator", "api.notify_ping_delete": "operator",
    "pages.notification_ping": "operator",
    "api.notify_test_apprise": "admin", "pages.notification_test_apprise": "admin",
    "pages.notifications": "viewer", "pages.notification_settings": "admin", "pages.notification_test_email": "admin",
}
PUBLIC = {endpoint for endpoint, role in ACCESS.items() if role is None}

ARGS = {"sid": 1, "pid": 1, "bid": 1, "aid": 1, "tid": 1, "uid": 1, "job_id": "x", "name": "w", "action": "stop"}


def concrete(rule):
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: str(ARGS.get(m.group(1).split(":")[-1], "start")),
                  rule.rule).replace("<any(start, stop, restart):action>", "stop")


def test_migrations_are_versioned_and_idempotent(db):
    assert dbm.upgrade(db) == []
    tables = {r[f"Tables_in_{db.db.decode()}"] for r in dbm.query(db, "SHOW TABLES")}
    for t in ("servers", "storage_pools", "repositories", "archives", "backup_jobs", "jobs", "job_log",
              "server_stats", "users", "api_tokens", "settings", "schema_migrations"):
        assert t in tables


def test_every_endpoint_needs_login_except_public(app, client):
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            resp = client.open(concrete(rule), method=method)
            if rule.rule.startswith("/api/") or rule.rule == "/metrics":   # read by programs: no redirect
                assert resp.status_code == 401, (method, rule.rule, resp.status_code)
            elif rule.endpoint == "auth.logout":
                assert resp.status_code in (302, 401), rule.rule
            else:
                assert resp.status_code == 302 and "/login" in resp.headers["Location"], (method, rule.rule)
            checked += 1
    assert checked > 40
    # The public ones do answer without a login.
    assert client.get("/api/health").json["status"] == "ok"
    assert client.get("/login").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_every_endpoint_declares_the_role_of_the_table(app):
    declared = {endpoint: getattr(fn, "min_role", None) for endpoint, fn in app.view_functions.items()}
    assert declared == ACCESS


def test_roles_are_enforced(app, api, users):
    refused = allowed = 0
    for rule in app.url_map.iter_rules():
        minimum = ACCESS[rule.endpoint]
        if not rule.rule.startswith("/api/") or minimum is None:
            continue
        url = concrete(rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for caller in ROLES[:ROLES.index(minimum)]:
                resp = getattr(api(caller), method.lower())(url, json={})
                assert resp.status_code == 403, (caller, method, url, resp.status_code)
                refused += 1
            if method == "GET":  # positive control, without side effects: the least role gets in
                resp = api(minimum).get(url)
                assert resp.status_code not in (401, 403), (minimum, url, resp.status_code)
                allowed += 1
    assert refused > 20 and allowed > 15
    assert api("viewer").get("/api/servers").status_code == 200


def test_wrong_token_and_tokens_hashed_at_rest(client, db, users):
    assert client.get("/api/me", headers={"Authorization": "Bearer bf_nope"}).status_code == 401
    token = users["viewer"][2]
    rows = dbm.query(db, "SELECT token_hash FROM api_tokens")
    assert all(token not in r["token_hash"] for r in rows)
    assert hash_token(token) in {r["token_hash"] for r in rows}
    hashes = dbm.query(db, "SELECT password_hash FROM users WHERE username=%s", (users["viewer"][0],), one=True)
    assert users["viewer"][1] not in hashes["password_hash"]


def test_session_login_and_csrf(app, users):
    c = app.test_client()
    name, password, _ = users["operator"]
    page = c.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert c.post("/login", data={"username": name, "password": "wrong", "csrf_token": csrf}).status_code == 401
    assert c.post("/login", data={"username": name, "password": password}).status_code == 400  # no CSRF
    resp = c.post("/login", data={"username": name, "password": password, "csrf_token": csrf})
    assert resp.status_code == 302
    assert c.get("/api/me").json["username"] == name
    # The token rotates at login; pages carry the new one in a meta tag.
    old, csrf = csrf, re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").get_data(as_text=True)).group(1)
    assert csrf != old
    # A session write without the CSRF token is refused; with it, it passes.
    body = {"name": "csrf-probe", "role": "backup_server", "address": "127.0.0.9"}
    assert c.post("/api/servers", json=body).status_code == 400
    resp = c.post("/api/servers", json=body, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 201, resp.json
    assert c.delete(f"/api/servers/{resp.json['id']}", headers={"X-CSRF-Token": csrf}).status_code == 204


def test_servers_backup_jobs_crud_and_validation(api, db):
    op = api("operator")
    srv = op.post("/api/servers", json={"name": "bs-crud", "role": "backup_server", "address": "127.0.0.5",
                                        "port": 2222, "ssh_user": "root",
                                        "pools": [{"name": "main", "path": "/srv/borg"}]})
    assert srv.status_code == 201, srv.json
    for bad in ({"name": "a;rm -rf /", "role": "client"}, {"name": "ok", "role": "nope"},
                {"name": "c1", "role": "client", "backup_server_id": 999999},
                {"name": "c1", "role": "client", "backup_server_id": srv.json["id"], "port": 70000}):
        resp = op.post("/api/servers", json=bad)
        assert resp.status_code == 400 and resp.json["error"], bad
    # Extra vars: admins only, documented names only (tests/hardening/test_operator_vars.py has the rest).
    bad = {"name": "c1", "role": "client", "backup_server_id": srv.json["id"], "vars": {"PATH": "/x"}}
    assert op.post("/api/servers", json=bad).status_code == 403
    resp = api("admin").post("/api/servers", json=bad)
    assert resp.status_code == 400 and "vars cannot set PATH" in resp.json["error"], resp.json
    cl = op.post("/api/servers", json={"name": "cl-crud", "role": "client", "address": "127.0.0.6",
                                       "backup_server_id": srv.json["id"]})
    assert cl.status_code == 201
    bj = op.post("/api/backup-jobs", json={"client_id": cl.json["id"], "name": "etc", "paths": ["/etc"],
                                           "passphrase": "secret-pass-123", "schedule": "0 2 * * *",
                                           "timezone": "Europe/Berlin", "retention": {"daily": 7}})
    assert bj.status_code == 201, bj.json
    assert "passphrase" not in bj.json and "secret-pass-123" not in str(bj.json)
    assert bj.json["location"] == "ssh://borg@127.0.0.5:2222/srv/borg/cl-crud/etc"
    assert bj.json["next_run_at"]
    for bad in ({"schedule": "61 * * * *"}, {"timezone": "Mars/Base"}, {"paths": ["relative"]},
                {"name": "x y"}, {"retention": {"forever": 1}}):
        body = {"client_id": cl.json["id"], "name": "n2", "paths": ["/etc"], "passphrase": "p" * 10, **bad}
        assert op.post("/api/backup-jobs", json=body).status_code == 400, bad
    upd = op.put(f"/api/backup-jobs/{bj.json['id']}", json={"enabled": False})
    assert upd.status_code == 200, upd.json
    assert upd.json["enabled"] is False and upd.json["next_run_at"] is None
    assert op.delete(f"/api/servers/{srv.json['id']}").status_code == 400   # still has a client
    assert op.delete(f"/api/backup-jobs/{bj.json['id']}").status_code == 204
    assert op.delete(f"/api/servers/{cl.json['id']}").status_code == 204
    assert op.delete(f"/api/servers/{srv.json['id']}").status_code == 204
    assert op.get(f"/api/servers/{srv.json['id']}").status_code == 404


def test_database_backup_jobs_and_their_verification_schedule(api, db, redis):
    op = api("operator")
    cl = api("admin").post("/api/servers", json={"name": "cl-dbjob", "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/cl-dbjob"}).json
    base = {"client_id": cl["id"], "passphrase": "secret-pass-123"}
    pg = op.post("/api/backup-jobs", json={**base, "name": "pg", "verify_schedule": "0 6 * * 0",
                                           "databases": [{"engine": "postgresql", "method": "snapshot"}]})
    assert pg.status_code == 201, pg.json
    assert pg.json["databases"] == [{"engine": "postgresql", "method": "snapshot"}] and pg.json["paths"] == []
    assert pg.json["verify_schedule"] == "0 6 * * 0" and pg.json["verify_next_run_at"]
    for bad, why in (({"databases": [{"engine": "oracle"}]}, "engine"),
                     ({"databases": [{"engine": "mariadb", "method": "copy"}]}, "method"),
                     ({"databases": [{"engine": "mariadb"}, {"engine": "postgresql"}]}, "at most one"),
                     ({"databases": [{"engine": "mariadb", "login_password": "x"}]}, "no database password"),
                     ({"databases": [{"engine": "mariadb", "shell": "rm -rf /"}]}, "unknown"),
                     ({"databases": [{"engine": "mariadb"}], "paths": ["/etc"]}, "takes no paths"),
                     ({}, "paths must be a non-empty list"),
                     ({"databases": [{"engine": "mariadb", "method": "dump"}], "verify_schedule": "0 6 * * *"},
                      "a dump holds SQL"),
                     ({"paths": ["/etc"], "verify_schedule": "0 6 * * *"}, "snapshot"),
                     ({"databases": [{"engine": "mariadb"}], "verify_schedule": "every day"}, "cron")):
        resp = op.post("/api/backup-jobs", json={**base, "name": "bad", **bad})
        assert resp.status_code == 400 and why in resp.json["error"], (bad, resp.json)
    # Verify now: queued as a verify.yml run of that backup; a file backup has nothing to verify.
    files = op.post("/api/backup-jobs", json={**base, "name": "etc", "paths": ["/etc"]}).json
    resp = op.post(f"/api/backup-jobs/{files['id']}/verify")
    assert resp.status_code == 400 and "nothing to verify" in resp.json["error"]
    resp = op.post(f"/api/backup-jobs/{pg.json['id']}/verify")
    assert resp.status_code == 202, resp.json
    row = dbm.query(db, "SELECT kind, status, backup_job_id, params_json FROM jobs WHERE id=%s",
                    (resp.json["job_id"],), one=True)
    assert (row["kind"], row["status"], row["backup_job_id"]) == ("verify", "queued", pg.json["id"])
    assert json.loads(row["params_json"])["extravars"] == {"borgfleet_backup": "pg"}
    assert api("viewer").post(f"/api/backup-jobs/{pg.json['id']}/verify").status_code == 403
    op.post(f"/api/jobs/{resp.json['job_id']}/cancel")
    # Disabled: neither schedule is due any more.
    upd = op.put(f"/api/backup-jobs/{pg.json['id']}", json={"enabled": False}).json
    assert upd["verify_next_run_at"] is None and upd["verify_schedule"] == "0 6 * * 0"
    # "" clears the verification schedule; a file backup cannot keep one.
    upd = op.put(f"/api/backup-jobs/{pg.json['id']}", json={"enabled": True, "verify_schedule": ""}).json
    assert upd["verify_schedule"] is None and upd["verify_next_run_at"] is None
    for bj in (pg.json, files):
        assert op.delete(f"/api/backup-jobs/{bj['id']}").status_code == 204
    assert op.delete(f"/api/servers/{cl['id']}").status_code == 204


def test_archives_list_is_paginated_with_names(api, db):
    op = api("operator")
    cl = api("admin").post("/api/servers", json={"name": "cl-page", "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/none"}).json
    bj = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "pg", "paths": ["/etc"],
                                           "passphrase": "p" * 12}).json
    with db.cursor() as cur:
        cur.executemany("INSERT INTO archives (repository_id, name, nfiles) VALUES (%s, %s, %s)",
                        [(bj["repository_id"], f"pg-{i:04d}", i) for i in range(125)])
    seen, before = [], None
    while True:
        resp = api("viewer").get("/api/archives", query_string={"backup_job_id": bj["id"], "limit": 50,
                                                                **({"before": before} if before else {})})
        assert resp.status_code == 200
        items = resp.json["items"]
        assert all(a["client_name"] == "cl-page" and a["server_name"] == "local" for a in items)
        seen += [a["name"] for a in items]
        before = resp.json["next_before"]
        if not before:
            break
    assert len(seen) == 125 and len(set(seen)) == 125 and seen[0] == "pg-0124"
    assert api("viewer").get("/api/archives", query_string={"limit": 500}).status_code == 400
    # The pages are served from an index, never a sort of the whole table.
    plan = dbm.query(db, "EXPLAIN SELECT * FROM archives WHERE repository_id=%s AND id < %s ORDER BY id DESC LIMIT 50",
                     (bj["repository_id"], 100))
    assert plan[0]["key"] in ("ix_archives_repo_id", "PRIMARY") and "filesort" not in (plan[0]["Extra"] or "")
    plan = dbm.query(db, "EXPLAIN SELECT * FROM archives WHERE id < %s ORDER BY id DESC LIMIT 50", (100,))
    assert plan[0]["key"] == "PRIMARY" and "filesort" not in (plan[0]["Extra"] or "")
    op.delete(f"/api/backup-jobs/{bj['id']}")
    op.delete(f"/api/servers/{cl['id']}")


def test_openapi_documents_every_api_route(app, api):
    doc = api("viewer").get("/api/openapi.json").json
    assert doc["openapi"].startswith("3.")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    actual = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") and rule.rule != "/metrics":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        path = re.sub(r"\{(sid|pid|bid|aid|tid|uid|job_id)\}", "{id}", path)
        for m in rule.methods - {"HEAD", "OPTIONS"}:
            if "{any(start, stop, restart):action}" in path or "{action}" in path:
                actual |= {(m.lower(), path.replace("{action}", a)) for a in ("start", "stop", "restart")}
            else:
                actual.add((m.lower(), path))
    assert actual == documented


def test_settings_admin_only_write(api):
    assert api("operator").put("/api/settings", json={"app_name": "X"}).status_code == 403
    before = api("admin").get("/api/settings").json["app_name"]
    try:
        resp = api("admin").put("/api/settings", json={"app_name": "Fleet Test"})
        assert resp.status_code == 200 and resp.json["app_name"] == "Fleet Test"
        assert api("admin").put("/api/settings", json={"nope": 1}).status_code == 400
        assert api("viewer").get("/api/settings").json["app_name"] == "Fleet Test"
    finally:
        # Later modules (mail subjects) read the application name from the same database.
        api("admin").put("/api/settings", json={"app_name": before})


def test_run_now_queues_and_cancel_before_start(api, db, redis, start_worker, tmp_path):
    """The job waits queued in its kind's RQ queue; canceled before a worker takes it, it never runs:
    a worker then drains the queue and the job stays canceled, with an empty log and no archive."""
    from rq import Queue
    from rq.job import Job
    from borgfleet_ui import queue as q
    from borgfleet_ui.kinds import KINDS
    op = api("operator")
    cl = api("admin").post("/api/servers", json={"name": "cl-cancel", "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/none"}).json
    bj = op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": "c", "paths": ["/etc"],
                                           "passphrase": "p" * 12}).json
    resp = op.post(f"/api/backup-jobs/{bj['id']}/run")
    assert resp.status_code == 202 and resp.json["status"] == "queued"
    job_id = resp.json["job_id"]
    rq_job = Queue(q.queue_name("backup"), connection=redis, serializer=q.SERIALIZER).fetch_job(job_id)
    # RQ's own timeout is past the job's budget (lock wait and playbook): it never kills a running playbook.
    assert rq_job is not None and rq_job.timeout == q.rq_timeout("backup") > KINDS["backup"].timeout
    assert api("viewer").post(f"/api/jobs/{job_id}/cancel").status_code == 403
    assert op.post(f"/api/jobs/{job_id}/cancel").json["status"] == "canceled"
    assert op.post(f"/api/jobs/{job_id}/cancel").status_code == 400   # already final
    queue = Queue(q.queue_name("backup"), connection=redis, serializer=q.SERIALIZER)
    assert job_id in queue.job_ids   # still queued in RQ: the worker must skip it, not miss it
    start_worker(1)
    wait_for(lambda: job_id not in queue.job_ids and Job.fetch(job_id, connection=redis, serializer=q.SERIALIZER)
             .get_status() == "finished" or None, timeout=120, what="a worker to take the canceled job")
    assert Job.fetch(job_id, connection=redis, serializer=q.SERIALIZER).return_value() == "skipped"
    row = api("viewer").get(f"/api/jobs/{job_id}").json
    assert row["status"] == "canceled" and row["started_at"] is None
    assert api("viewer").get(f"/api/jobs/{job_id}/log").json["lines"] == []
    assert api("viewer").get("/api/archives", query_string={"backup_job_id": bj["id"]}).json["items"] == []
    op.delete(f"/api/backup-jobs/{bj['id']}")
    op.delete(f"/api/servers/{cl['id']}")


def test_queued_job_lost_from_redis_is_marked_failed(api, db, redis):
    """A queued row whose RQ job vanished (Redis restart) must not read 'queued' forever."""
    from borgfleet_ui import queue as q
    op = api("operator")
    cl = api("admin").post("/api/servers", json={"name": "cl-lost", "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/none"}).json
    job_id = op.post(f"/api/servers/{cl['id']}/setup").json["job_id"]
    redis.delete(f"rq:job:{job_id}")          # what a Redis restart without persistence does
    assert q.sweep_lost(db, redis) == []      # too young to judge
    dbm.execute(db, "UPDATE jobs SET created_at = created_at - INTERVAL 2 MINUTE WHERE id=%s", (job_id,))
    assert q.sweep_lost(db, redis) == [job_id]
    row = api("viewer").get(f"/api/jobs/{job_id}").json
    assert row["status"] == "failed" and "lost" in row["error"]
    op.delete(f"/api/servers/{cl['id']}")


def test_list_filters_and_cursors(api, db):
    from borgfleet_ui import queue as q
    admin, op, viewer = api("admin"), api("operator"), api("viewer")
    cl = admin.post("/api/servers", json={"name": "cl-filter", "role": "client", "connection": "local",
                                          "local_pool_path": "/var/tmp/none"}).json
    bs = admin.post("/api/servers", json={"name": "bs-filter", "role": "backup_server", "address": "127.0.0.9"}).json
    bjs = [op.post("/api/backup-jobs", json={"client_id": cl["id"], "name": f"f{i}", "paths": ["/etc"],
                                              "passphrase": "p" * 12}).json for i in range(3)]
    try:
        clients = viewer.get("/api/servers", query_string={"role": "client", "limit": 200}).json["items"]
        assert cl["id"] in [s["id"] for s in clients] and {s["role"] for s in clients} == {"client"}
        servers = viewer.get("/api/servers", query_string={"role": "backup_server", "limit": 200}).json["items"]
        assert bs["id"] in [s["id"] for s in servers] and {s["role"] for s in servers} == {"backup_server"}
        assert viewer.get("/api/servers", query_string={"role": "x"}).status_code == 400
        mine = viewer.get("/api/backup-jobs", query_string={"client_id": cl["id"], "limit": 2}).json
        assert [b["name"] for b in mine["items"]] == ["f2", "f1"] and mine["next_before"] == bjs[1]["id"]
        rest = viewer.get("/api/backup-jobs", query_string={"client_id": cl["id"], "before": mine["next_before"]}).json
        assert [b["name"] for b in rest["items"]] == ["f0"] and rest["next_before"] is None
        ids = [q.create_job_row(db, "backup", backup_job_id=bjs[0]["id"], status=s, error="filter test")
               for s in ("failed", "missed", "failed")]
        failed = viewer.get("/api/jobs", query_string={"status": "failed", "backup_job_id": bjs[0]["id"],
                                                       "limit": 1}).json
        assert [j["id"] for j in failed["items"]] == [ids[2]]
        older = viewer.get("/api/jobs", query_string={"status": "failed", "backup_job_id": bjs[0]["id"],
                                                      "before": failed["next_before"]}).json["items"]
        assert [j["id"] for j in older] == [ids[0]]
        every = viewer.get("/api/jobs", query_string={"backup_job_id": bjs[0]["id"]}).json["items"]
        assert [j["id"] for j in every] == ids[::-1]
    finally:
        for b in bjs:
            op.delete(f"/api/backup-jobs/{b['id']}")
        op.delete(f"/api/servers/{cl['id']}")
        op.delete(f"/api/servers/{bs['id']}")
