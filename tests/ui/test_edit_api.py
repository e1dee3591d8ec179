"""The API behind the editing pages: reset password, default time zone of new backup jobs, what
deleting a server takes with it, the server edit form's inline verdict, and their roles."""
from werkzeug.security import check_password_hash

from borgfleet_ui import db as dbm


def test_reset_password_returns_a_new_one_once_and_the_old_hash_is_gone(api, db):
    created = api("admin").post("/api/users", json={"username": "reset-me", "role": "viewer"})
    assert created.status_code == 201
    uid, old = created.json["id"], created.json["password"]
    try:
        assert api("operator").post(f"/api/users/{uid}/reset-password").status_code == 403
        resp = api("admin").post(f"/api/users/{uid}/reset-password")
        assert resp.status_code == 200 and resp.json["username"] == "reset-me"
        new = resp.json["password"]
        assert new and new != old
        stored = dbm.query(db, "SELECT password_hash FROM users WHERE id=%s", (uid,), one=True)["password_hash"]
        assert check_password_hash(stored, new) and not check_password_hash(stored, old)
        assert api("admin").get("/api/users").json["items"][-1]["username"] == "reset-me"
        assert "password" not in str(api("admin").get("/api/users").json)
        assert api("admin").post("/api/users/999999/reset-password").status_code == 404
    finally:
        dbm.execute(db, "DELETE FROM users WHERE id=%s", (uid,))


def test_default_time_zone_is_checked_and_given_to_new_backup_jobs(api):
    bad = api("admin").put("/api/settings", json={"default_timezone": "Mars/Olympus", "app_name": "Never"})
    assert bad.status_code == 400 and "Mars/Olympus" in bad.json["error"]
    assert api("viewer").get("/api/settings").json.get("app_name") != "Never"   # nothing saved of a refused body
    cl = api("admin").post("/api/servers", json={"name": "tz-cl", "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/tz-cl"}).json
    try:
        assert api("admin").put("/api/settings", json={"default_timezone": "Europe/Paris"}).status_code == 200
        bj = api("operator").post("/api/backup-jobs", json={"client_id": cl["id"], "name": "etc", "paths": ["/etc"],
                                                            "passphrase": "correct horse battery"})
        assert bj.status_code == 201 and bj.json["timezone"] == "Europe/Paris"
        named = api("operator").post("/api/backup-jobs", json={"client_id": cl["id"], "name": "etc2", "paths": ["/etc"],
                                                               "passphrase": "correct horse battery",
                                                               "timezone": "Asia/Tokyo"})
        assert named.json["timezone"] == "Asia/Tokyo"
    finally:
        api("admin").put("/api/settings", json={"default_timezone": "UTC"})
        api("operator").delete(f"/api/servers/{cl['id']}")


def test_server_deletion_says_what_goes_and_takes_its_backup_jobs(api, db):
    cl = api("admin").post("/api/servers", json={"name": "del-cl", "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/del-cl"}).json
    bj = api("operator").post("/api/backup-jobs", json={"client_id": cl["id"], "name": "etc", "paths": ["/etc"],
                                                        "passphrase": "correct horse battery"}).json
    what = api("viewer").get(f"/api/servers/{cl['id']}/deletion")
    assert what.status_code == 200 and what.json == {"backup_jobs": 1, "archives": 0, "pools": 0, "clients": 0}
    assert api("viewer").delete(f"/api/servers/{cl['id']}").status_code == 403
    assert api("operator").delete(f"/api/servers/{cl['id']}").status_code == 204
    assert api("viewer").get(f"/api/backup-jobs/{bj['id']}").status_code == 404
    assert not dbm.query(db, "SELECT id FROM repositories WHERE backup_job_id=%s", (bj["id"],))


def test_server_edit_form_is_judged_by_the_update_itself(api):
    cl = api("admin").post("/api/servers", json={"name": "edit-cl", "role": "client", "connection": "local",
                                                 "local_pool_path": "/var/tmp/edit-cl"}).json
    try:
        verdict = api("operator").post("/api/validate/server_edit", json={
            "server_id": cl["id"], "values": {"name": "edit-cl", "address": "-oProxyCommand=x", "port": "70000"}})
        assert verdict.status_code == 200 and not verdict.json["valid"]
        assert set(verdict.json["errors"]) == {"address", "port"}
        ok = api("operator").post("/api/validate/server_edit", json={
            "server_id": cl["id"], "values": {"name": "edit-cl", "address": "10.1.2.3", "port": "2222"}})
        assert ok.json == {"valid": True, "errors": {}}
        assert api("viewer").get(f"/api/servers/{cl['id']}").json["address"] == "127.0.0.1"   # judged, not saved
    finally:
        api("operator").delete(f"/api/servers/{cl['id']}")


def test_tokens_are_revoked_by_their_owner_only(api, app):
    made = api("viewer").post("/api/tokens", json={"name": "short-lived"})
    assert made.status_code == 201
    token = made.json["token"]
    tid = next(t["id"] for t in api("viewer").get("/api/tokens").json["items"] if t["name"] == "short-lived")
    c = app.test_client()
    assert c.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert api("operator").delete(f"/api/tokens/{tid}").status_code == 404   # not the operator's token
    assert api("viewer").delete(f"/api/tokens/{tid}").status_code == 204
    assert c.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
