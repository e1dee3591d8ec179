"""Chat notifications through Apprise URLs (notifications/chat.py), against a real receiver: Apprise's
json:// URL posting to an HTTP server of this test on loopback. The URLs carry tokens: stored encrypted,
never returned, never in an error, a delivery row or a log line."""
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from borgfleet_ui import db as dbm, queue as q, secret_store
from borgfleet_ui.config import load_config
from borgfleet_ui.notifications import chat, deliver
from test_restore_jobs import logged_in
from tests.lib.sshd import free_port
from uilib import drop_local_backup, make_local_backup

TOKEN = "chat-token-5e3c9b"          # the password part of the URL, as a chat service's token would be
SMTP_PASSWORD = "smtp-pass-apprise-71"


@pytest.fixture(scope="module")
def receiver():
    """An HTTP server taking Apprise's json:// POSTs: each (path, headers, parsed body)."""
    got = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, self.headers, raw.decode()))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.got = got
    server.url = f"json://bot:{TOKEN}@127.0.0.1:{server.server_port}/borgfleet"
    yield server
    server.shutdown()


@pytest.fixture()
def admin_settings(api, db):
    admin = api("admin")
    yield admin
    admin.put("/api/notifications/settings", json={"apprise_urls": None, "smtp_host": "", "smtp_password": None})
    dbm.execute(db, "DELETE FROM notification_deliveries WHERE channel='apprise'")


def test_urls_are_checked_stored_encrypted_and_never_returned(api, db, admin_settings, receiver):
    admin = admin_settings
    resp = admin.put("/api/notifications/settings", json={"apprise_urls": f"{receiver.url}\nnot-a-service://{TOKEN}"})
    assert resp.status_code == 400 and "line 2" in resp.json["error"] and TOKEN not in resp.get_data(as_text=True)
    assert admin.post("/api/notifications/test-apprise").status_code == 400   # none saved yet

    resp = admin.put("/api/notifications/settings", json={"apprise_urls": [receiver.url]})
    assert resp.status_code == 200 and resp.json["apprise_urls_set"] is True and "apprise_urls" not in resp.json
    for body in (resp.get_data(as_text=True), admin.get("/api/notifications/settings").get_data(as_text=True)):
        assert TOKEN not in body
    stored = dbm.query(db, "SELECT apprise_urls FROM notification_settings WHERE id=1", one=True)["apprise_urls"]
    assert TOKEN not in stored and secret_store.decrypt(load_config(), stored) == receiver.url

    # The test action: one message to the receiver, through the URL's own login.
    before = len(receiver.got)
    resp = admin.post("/api/notifications/test-apprise")
    assert resp.status_code == 200 and resp.json == {"sent": True, "urls": 1}
    [(path, headers, raw)] = receiver.got[before:]
    message = json.loads(raw)
    assert path == "/borgfleet" and headers["Content-Type"].startswith("application/json")
    assert message["title"].endswith("Test message") and "t_admin" in message["message"] and TOKEN not in raw

    # A key rotation re-encrypts them with the rest (secret_store.SECRET_COLUMNS): they still work after.
    cfg = load_config()
    old_key = open(secret_store.key_file(cfg)).read().strip()
    assert secret_store.rotate(cfg, db) >= 1
    stored = dbm.query(db, "SELECT apprise_urls FROM notification_settings WHERE id=1", one=True)["apprise_urls"]
    assert secret_store._opens(old_key, stored) is False and secret_store.decrypt(cfg, stored) == receiver.url
    assert admin.post("/api/notifications/test-apprise").json == {"sent": True, "urls": 1}


def test_a_failing_backup_reaches_the_chat_once_and_names_job_and_event(api, db, redis, tmp_path, admin_settings,
                                                                       receiver, caplog):
    admin = admin_settings
    assert admin.put("/api/notifications/settings", json={
        "apprise_urls": receiver.url, "smtp_host": "127.0.0.1", "smtp_password": SMTP_PASSWORD}).status_code == 200
    cl, bj = make_local_backup(api, tmp_path, "chat-fail")
    try:
        # A run whose worker died: the sweep fails it, which opens the incident (as any failure does).
        job_id = q.create_job_row(db, "backup", backup_job_id=bj["id"], status="running")
        dbm.execute(db, "UPDATE jobs SET started_at=UTC_TIMESTAMP(3) - INTERVAL 5 MINUTE WHERE id=%s", (job_id,))
        assert job_id in q.sweep_abandoned(db, redis)
        [d] = dbm.query(db, "SELECT * FROM notification_deliveries WHERE job_id=%s AND channel='apprise'", (job_id,))
        assert (d["event"], d["recipient"], d["status"]) == ("failure", "apprise", "queued")
        # What the notify worker runs for this row (deliver.deliver), here in the test's process so that its
        # log lines are seen.
        before = len(receiver.got)
        with caplog.at_level(logging.DEBUG):
            assert deliver.deliver(d["id"]) == "sent"
        [(_, _, raw)] = receiver.got[before:]
        message = json.loads(raw)
        assert message["type"] == "failure"
        assert message["title"] == f"[{deliver.app_name(db)}] FAILED: backup of chat-fail/data (abandoned)"
        assert "chat-fail" in message["message"] and "abandoned" in message["message"]
        for secret in (TOKEN, "local-pass-chat-fail", SMTP_PASSWORD):
            assert secret not in raw and secret not in caplog.text
        # A second failure of the same backup job: counted on the incident, nothing more sent.
        job2 = q.create_job_row(db, "backup", backup_job_id=bj["id"], status="running")
        dbm.execute(db, "UPDATE jobs SET started_at=UTC_TIMESTAMP(3) - INTERVAL 5 MINUTE WHERE id=%s", (job2,))
        assert job2 in q.sweep_abandoned(db, redis)
        assert dbm.query(db, "SELECT id FROM notification_deliveries WHERE job_id=%s", (job2,)) == []

        # A chat service that does not answer: the delivery fails naming the URL by its line only.
        dead = f"json://bot:{TOKEN}@127.0.0.1:{free_port('127.0.0.1')}/x?cto=1&rto=1"
        assert admin.put("/api/notifications/settings", json={"apprise_urls": [receiver.url, dead]}).status_code == 200
        with pytest.raises(chat.ChatError) as err, caplog.at_level(logging.DEBUG):
            deliver.deliver(_requeue(db, d))
        assert "URL(s) 2 of 2" in str(err.value) and TOKEN not in str(err.value) and TOKEN not in caplog.text
        row = dbm.query(db, "SELECT status, error FROM notification_deliveries ORDER BY id DESC LIMIT 1", one=True)
        assert row["status"] == "failed" and TOKEN not in row["error"]
        resp = admin.post("/api/notifications/test-apprise")
        assert resp.status_code == 502 and "2 of 2" in resp.json["error"] and TOKEN not in resp.get_data(as_text=True)
    finally:
        for queue in q.queues(redis):
            if queue.name == q.NOTIFY_QUEUE:
                queue.empty()
        drop_local_backup(api, cl, bj)


def _requeue(db, d):
    """A copy of delivery d, queued again (the row a retry would send)."""
    return dbm.execute(db, "INSERT INTO notification_deliveries (event, channel, recipient, job_id, incident_id,"
                           " backup_job_id) VALUES (%s, 'apprise', 'apprise', %s, %s, %s)",
                       (d["event"], d["job_id"], d["incident_id"], d["backup_job_id"]))


def test_settings_page_field_and_test_button(app, users, admin_settings, receiver):
    browser, csrf = logged_in(app, users["admin"])
    page = browser.get("/settings/notifications").get_data(as_text=True)
    assert 'name="apprise_urls"' in page and 'id="send-test-apprise" disabled' in page
    form = {"csrf_token": csrf, "apprise_urls": receiver.url}
    assert browser.post("/settings/notifications", data=form).status_code == 302
    page = browser.get("/settings/notifications").get_data(as_text=True)
    assert TOKEN not in page and 'name="clear_apprise_urls"' in page
    before = len(receiver.got)
    resp = browser.post("/settings/notifications/test-apprise", data={"csrf_token": csrf})
    assert resp.status_code == 200 and "Test message sent to 1 Apprise URL(s)." in resp.get_data(as_text=True)
    assert len(receiver.got) == before + 1
    # Saving the form with the field left empty keeps the URLs; the box removes them.
    assert browser.post("/settings/notifications", data={"csrf_token": csrf, "apprise_urls": ""}).status_code == 302
    assert admin_settings.get("/api/notifications/settings").json["apprise_urls_set"] is True
    resp = browser.post("/settings/notifications", data={"csrf_token": csrf, "clear_apprise_urls": "1"})
    assert resp.status_code == 302
    assert admin_settings.get("/api/notifications/settings").json["apprise_urls_set"] is False
