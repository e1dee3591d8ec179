"""Notifications against real parts: an SMTP server (aiosmtpd) and a webhook receiver (http.server) on
loopback, a backup that really fails (its repository refuses the passphrase) run by a real worker,
the scheduler's own tick for the digest, Chromium for the pages and the mail's HTML."""
import email
import email.policy
import hashlib
import hmac
import json
import re
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from borgfleet_ui import db as dbm, queue as q
from borgfleet_ui.notifications import deliver
from borgfleet_ui.scheduler import Scheduler
from test_browser import browser, login, web  # noqa: F401  (fixtures: Chromium and the web process)
from tests.lib.sshd import free_port
from uilib import REPO, drop_local_backup, make_local_backup, wait_for, wait_job

SMTP_USER, SMTP_PASSWORD = "mailer", "smtp-secret-Kx71"
WEBHOOK_SECRET = "hook-secret-Qw93"
BASE_URL = "http://borgfleet.test:5080"
OUT = Path(REPO) / "tests" / "output"


class Inbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self):
        self.messages, self.lock = [], threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def to(self, address):
        with self.lock:
            return [email.message_from_bytes(raw, policy=email.policy.default)
                    for rcpts, raw in self.messages if address in rcpts]

    def raw(self):
        with self.lock:
            return b"\n".join(raw for _, raw in self.messages)


def _authenticate(server, session, envelope, mechanism, auth_data):
    # handled=False: the server answers 535 itself when the credentials are wrong.
    return AuthResult(success=(auth_data.login, auth_data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode()),
                      handled=False)


@pytest.fixture(scope="module")
def smtpd():
    inbox = Inbox()
    # Login over a plain connection is refused by default; the loopback server allows it for the test.
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port("127.0.0.1"), authenticator=_authenticate,
                     auth_require_tls=False)
    ctl.start()
    inbox.port = ctl.port
    yield inbox
    ctl.stop()


@pytest.fixture(scope="module")
def hooks():
    """A webhook and ping receiver: every POST's headers and raw body (and path, for the pings)."""
    received, paths = [], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers, body))   # an HTTPMessage: names case-insensitive
            paths.append((self.path, body.decode(errors="replace")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.received, server.paths = received, paths
    server.url, server.ping = (f"http://127.0.0.1:{server.server_port}/{p}" for p in ("hook", "ping/notify"))
    yield server
    server.shutdown()


@pytest.fixture()
def notify_settings(api, db, smtpd):
    """Mail to the loopback server (plain, with a login), links under BASE_URL; everything reset after."""
    admin = api("admin")

    def configure(**changes):
        settings = {"smtp_host": "127.0.0.1", "smtp_port": smtpd.port, "smtp_security": "none",
                    "smtp_user": SMTP_USER, "smtp_password": SMTP_PASSWORD, "smtp_sender": "backups@borgfleet.test",
                    "base_url": BASE_URL, **changes}
        resp = admin.put("/api/notifications/settings", json=settings)
        assert resp.status_code == 200, resp.json
        return resp.json
    yield configure
    admin.put("/api/notifications/settings", json={"smtp_host": "", "smtp_password": None, "webhook_url": "",
                                                   "webhook_secret": None, "digest_frequency": "off"})
    dbm.execute(db, "DELETE FROM notification_subscriptions")


def test_settings_keep_secrets_encrypted_and_the_test_email_says_why_it_fails(api, db, smtpd, notify_settings):
    shown = notify_settings()
    assert shown["smtp_password_set"] is True and "smtp_password" not in shown
    assert SMTP_PASSWORD not in json.dumps(api("admin").get("/api/notifications/settings").json)
    stored = dbm.query(db, "SELECT smtp_password FROM notification_settings WHERE id=1", one=True)["smtp_password"]
    assert stored.startswith("bf1:") and SMTP_PASSWORD not in stored
    # Refused with the field named, nothing saved.
    admin = api("admin")
    for bad in ({"smtp_port": 0}, {"smtp_security": "ssl"}, {"smtp_sender": "not an address"},
                {"base_url": "javascript:alert(1)"}, {"digest_time": "25:00"}, {"nope": 1}):
        resp = admin.put("/api/notifications/settings", json=bad)
        assert resp.status_code == 400 and list(bad)[0] in resp.json["error"], (bad, resp.json)
    assert admin.get("/api/notifications/settings").json["smtp_port"] == smtpd.port

    sent = admin.post("/api/notifications/test-email", json={"to": "admin@borgfleet.test"})
    assert sent.status_code == 200 and sent.json == {"sent": True, "to": "admin@borgfleet.test"}
    [msg] = wait_for(lambda: smtpd.to("admin@borgfleet.test"), timeout=30, what="the test message")
    assert msg["Subject"].endswith("Test message") and msg.get_content_type() == "multipart/alternative"
    assert {p.get_content_type() for p in msg.iter_parts()} == {"text/plain", "text/html"}

    def failure(**changes):
        notify_settings(**changes)
        resp = admin.post("/api/notifications/test-email", json={"to": "admin@borgfleet.test"})
        assert resp.status_code == 502 and resp.json["sent"] is False
        assert SMTP_PASSWORD not in resp.json["error"] and "wrong-pass-1234" not in resp.json["error"]
        return resp.json["error"]
    closed = free_port("127.0.0.1")
    assert failure(smtp_port=closed) == (f"could not connect to 127.0.0.1:{closed}: connection refused"
                                         " (is the SMTP server running, and is the port right?)")
    assert "refused the user name or password (authentication failed)" in failure(smtp_password="wrong-pass-1234")
    assert failure(smtp_security="tls").startswith(f"TLS with 127.0.0.1:{smtpd.port} failed")
    assert "does not offer STARTTLS" in failure(smtp_security="starttls")
    assert len(smtpd.to("admin@borgfleet.test")) == 1


def _mails(smtpd, address, subject_part, n, what):
    return wait_for(lambda: (lambda ms: ms if len(ms) >= n else None)(
        [m for m in smtpd.to(address) if subject_part in m["Subject"]]), timeout=60, what=what)


def _parts(msg):
    return {p.get_content_type(): p.get_content() for p in msg.iter_parts()}


def _hook(hooks, event, n=1):
    return wait_for(lambda: (lambda got: got if len(got) >= n else None)(
        [(h, b) for h, b in hooks.received if h.get("X-BorgFleet-Event") == event]), timeout=60,
        what=f"the {event} webhook")[n - 1]


def _verified(headers, body):
    """The payload, once its signature checks out with the shared secret (as a receiver would check it)."""
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-BorgFleet-Signature"], expected)
    payload = json.loads(body)
    assert str(payload["timestamp"]) == headers["X-BorgFleet-Timestamp"]
    return payload


def test_failing_backup_mails_once_then_recovery_then_digest(api, db, redis, ui_env, tmp_path, start_worker, smtpd,
                                                             hooks, notify_settings, browser):  # noqa: F811
    notify_settings(webhook_url=hooks.url, webhook_secret=WEBHOOK_SECRET)
    cl, bj = make_local_backup(api, tmp_path, "notify")
    right, wrong = "local-pass-notify", "not-the-passphrase-notify"
    # The viewer wants everything; the operator only failures of other backup jobs (none): it gets nothing.
    assert api("viewer").put("/api/notifications/subscription", json={"email": "viewer@borgfleet.test"}).status_code == 200
    assert api("operator").put("/api/notifications/subscription",
                               json={"email": "operator@borgfleet.test", "events": ["failure"],
                                     "backup_job_ids": []}).json["backup_job_ids"] == []
    op = api("operator")
    assert op.put(f"/api/notifications/pings/{bj['id']}", json={"url": hooks.ping + "/"}).json["url"] == hooks.ping
    start_worker(1)
    try:
        assert wait_job(db, op.post(f"/api/servers/{cl['id']}/setup").json["job_id"])["status"] == "succeeded"
        # The repository was made with the right passphrase; the job now holds another one.
        assert op.put(f"/api/backup-jobs/{bj['id']}", json={"passphrase": wrong}).status_code == 200
        first = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
        assert first["status"] == "failed"

        [failed] = _mails(smtpd, "viewer@borgfleet.test", "FAILED", 1, "the failure mail")
        assert failed["Subject"] == "[BorgFleet] FAILED: backup of notify/data (wrong passphrase)"
        assert failed.get_content_type() == "multipart/alternative"
        parts = _parts(failed)
        assert set(parts) == {"text/plain", "text/html"}
        for body in parts.values():
            assert "notify/data" in body and "wrong passphrase" in body and first["id"] in body
            assert f"{BASE_URL}/jobs/{first['id']}" in body and f"{BASE_URL}/backup-jobs/{bj['id']}" in body
        raw = smtpd.raw().decode(errors="replace")
        for secret in (right, wrong, SMTP_PASSWORD, WEBHOOK_SECRET):
            assert secret not in raw
        payload = _verified(*_hook(hooks, "failure"))
        assert (payload["event"], payload["error_kind"], payload["job"]["id"], payload["backup_job"]["name"],
                payload["client"]["name"]) == ("failure", "wrong_passphrase", first["id"], "data", "notify")
        assert not any(s in json.dumps(payload) for s in (right, wrong, SMTP_PASSWORD, WEBHOOK_SECRET))
        # As a person sees the mail: its HTML part in Chromium, kept with the .eml for a reviewer.
        OUT.mkdir(exist_ok=True)
        (OUT / "notification-failure.eml").write_bytes(bytes(failed))
        page = browser.new_page(viewport={"width": 760, "height": 900})
        page.set_content(parts["text/html"])
        assert page.inner_text("h1") == "Backup of notify/data failed"
        page.screenshot(path=str(OUT / "notification-failure-mail.png"), full_page=True)
        page.close()

        # Still failing: counted on the open incident, nothing sent.
        second = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
        assert second["status"] == "failed"
        incident = wait_for(lambda: dbm.query(db, "SELECT * FROM notification_incidents WHERE backup_job_id=%s"
                                                  " AND last_job_id=%s", (bj["id"], second["id"]), one=True),
                            timeout=30, what="the second failure on the incident")
        assert (incident["is_open"], incident["failures"], incident["first_job_id"]) == (1, 2, first["id"])
        # (Only its ping URL hears of it: pings report every run.)
        assert [d["channel"] for d in dbm.query(db, "SELECT channel FROM notification_deliveries WHERE job_id=%s",
                                                (second["id"],))] == ["ping", "ping"]

        # Fixed: the next success sends the recovery, once.
        assert op.put(f"/api/backup-jobs/{bj['id']}", json={"passphrase": right}).status_code == 200
        ok = wait_job(db, op.post(f"/api/backup-jobs/{bj['id']}/run").json["job_id"])
        assert ok["status"] == "succeeded", ok["error"]
        [recovered] = _mails(smtpd, "viewer@borgfleet.test", "RECOVERED", 1, "the recovery mail")
        assert recovered["Subject"] == "[BorgFleet] RECOVERED: backup of notify/data"
        text = _parts(recovered)["text/plain"]
        assert "Failed runs:      2" in text and f"{BASE_URL}/jobs/{ok['id']}" in text
        payload = _verified(*_hook(hooks, "recovery"))
        assert (payload["job"]["id"], payload["incident"]["failures"]) == (ok["id"], 2)
        closed = dbm.query(db, "SELECT * FROM notification_incidents WHERE id=%s", (incident["id"],), one=True)
        assert closed["is_open"] is None and closed["closed_job_id"] == ok["id"]
        assert len(smtpd.to("viewer@borgfleet.test")) == 2 and smtpd.to("operator@borgfleet.test") == []
        # The ping URL heard every run: start, then fail / fail / success (healthchecks' paths).
        pings = wait_for(lambda: (lambda got: got if len(got) >= 6 else None)(
            [(p, b) for p, b in hooks.paths if p.startswith("/ping/")]), timeout=60, what="six pings")
        assert sorted(p for p, _ in pings) == sorted(["/ping/notify/start"] * 3 + ["/ping/notify/fail"] * 2
                                                     + ["/ping/notify"])
        assert f"job {first['id']}: fail (wrong_passphrase)" in [b.split(", ", 1)[1] for p, b in pings
                                                                 if p == "/ping/notify/fail"]
        sent = api("admin").get("/api/notifications/deliveries").json["items"]
        assert {(d["event"], d["channel"], d["status"]) for d in sent if d["backup_job_id"] == bj["id"]} == {
            ("failure", "email", "sent"), ("failure", "webhook", "sent"),
            ("recovery", "email", "sent"), ("recovery", "webhook", "sent"),
            ("start", "ping", "sent"), ("fail", "ping", "sent"), ("success", "ping", "sent")}

        # The digest, due now: queued by the scheduler's tick, once.
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        notify_settings(digest_frequency="daily", digest_time=now.strftime("%H:%M"), digest_timezone="UTC")
        scheduler = Scheduler(ui_env)
        scheduler.tick()
        [digest] = _mails(smtpd, "viewer@borgfleet.test", "Daily digest", 1, "the digest")
        assert digest["Subject"].startswith("[BorgFleet] Daily digest: ")
        text = _parts(digest)["text/plain"]
        assert "notify/data: 1 archive(s)" in text and f"{BASE_URL}/jobs/{second['id']}" in text, text
        page = browser.new_page(viewport={"width": 760, "height": 900})
        page.set_content(_parts(digest)["text/html"])
        assert "notify/data" in page.inner_text("body")
        page.screenshot(path=str(OUT / "notification-digest-mail.png"), full_page=True)
        page.close()
        scheduler.tick()
        assert dbm.query(db, "SELECT COUNT(*) AS n FROM notification_deliveries WHERE event='digest'",
                         one=True)["n"] == 1
    finally:
        drop_local_backup(api, cl, bj)


def test_an_abandoned_run_opens_an_incident(api, db, redis, tmp_path, notify_settings):
    """The sweep that finds a dead worker's job records the incident too (no worker: the delivery waits
    in the notify queue, and its mail names the class 'abandoned')."""
    notify_settings()
    cl, bj = make_local_backup(api, tmp_path, "notify-gone")
    assert api("viewer").put("/api/notifications/subscription", json={"email": "viewer@borgfleet.test"}).status_code == 200
    try:
        job_id = q.create_job_row(db, "backup", backup_job_id=bj["id"], status="running")
        dbm.execute(db, "UPDATE jobs SET started_at=UTC_TIMESTAMP(3) - INTERVAL 5 MINUTE WHERE id=%s", (job_id,))
        assert job_id in q.sweep_abandoned(db, redis)
        [d] = dbm.query(db, "SELECT * FROM notification_deliveries WHERE job_id=%s", (job_id,))
        assert (d["event"], d["channel"], d["recipient"], d["status"]) == ("failure", "email", "viewer@borgfleet.test", "queued")
        subject, text, html = deliver.build_mail(db, d)
        assert subject == "[BorgFleet] FAILED: backup of notify-gone/data (abandoned)"
        assert "was abandoned" in text and "stopped (killed or crashed)" in html
        assert [i["kind"] for i in api("viewer").get("/api/notifications/incidents?open=1").json["items"]
                if i["backup_job_id"] == bj["id"]] == ["backup"]
    finally:
        for queue in q.queues(redis):
            if queue.name == q.NOTIFY_QUEUE:
                queue.empty()
        drop_local_backup(api, cl, bj)


def test_a_scheduled_backup_without_success_goes_stale_once(api, db, redis, ui_env, tmp_path, notify_settings, hooks):
    """The scheduler's stale check: a backup job due hourly with no success for a day is reported once
    (mail and signed webhook queued); a successful backup recorded through queue.finish ends it."""
    notify_settings(stale_margin_minutes=30, webhook_url=hooks.url, webhook_secret=WEBHOOK_SECRET)
    cl, bj = make_local_backup(api, tmp_path, "notify-stale", schedule="0 * * * *")
    fresh_cl, fresh_bj = make_local_backup(api, tmp_path, "notify-fresh", schedule="0 * * * *")
    assert api("viewer").put("/api/notifications/subscription", json={"email": "viewer@borgfleet.test"}).status_code == 200
    try:
        # Created a day ago, never backed up: its first due run plus 30 min passed long since. The other
        # one was just created (not due yet).
        dbm.execute(db, "UPDATE backup_jobs SET created_at=UTC_TIMESTAMP() - INTERVAL 1 DAY WHERE id=%s", (bj["id"],))
        scheduler = Scheduler(ui_env)
        scheduler.maybe_check_stale(datetime.now(timezone.utc).replace(tzinfo=None))
        [incident] = dbm.query(db, "SELECT * FROM notification_incidents WHERE kind='stale' AND is_open=1")
        assert incident["backup_job_id"] == bj["id"]
        scheduler.next_stale_check = 0.0   # the next check: nothing new
        scheduler.maybe_check_stale(datetime.now(timezone.utc).replace(tzinfo=None))
        sent = dbm.query(db, "SELECT * FROM notification_deliveries WHERE incident_id=%s ORDER BY channel", (incident["id"],))
        assert [(d["event"], d["channel"]) for d in sent] == [("stale", "email"), ("stale", "webhook")]
        subject, text, html = deliver.build_mail(db, sent[0])
        assert subject == "[BorgFleet] STALE: no recent backup of notify-stale/data"
        assert "has never succeeded" in text and "Schedule:     0 * * * * (UTC)" in text and "+ 30 min" in html
        payload = json.loads(json.dumps(deliver.payload(db, sent[1])))
        assert (payload["event"], payload["error_kind"], payload["backup_job"]["id"]) == ("stale", "stale", bj["id"])

        job_id = q.create_job_row(db, "backup", backup_job_id=bj["id"], status="running")
        q.finish(db, job_id, "succeeded", rc=0, r=redis)
        closed = dbm.query(db, "SELECT * FROM notification_incidents WHERE id=%s", (incident["id"],), one=True)
        assert closed["is_open"] is None and closed["closed_job_id"] == job_id
        [recovery] = dbm.query(db, "SELECT * FROM notification_deliveries WHERE job_id=%s AND channel='email'", (job_id,))
        subject, text, _ = deliver.build_mail(db, recovery)
        assert subject == "[BorgFleet] RECOVERED: backup of notify-stale/data"
        assert "Was failing with: stale" in text and "Failed runs" not in text
    finally:
        for queue in q.queues(redis):
            if queue.name == q.NOTIFY_QUEUE:
                queue.empty()
        drop_local_backup(api, cl, bj)
        drop_local_backup(api, fresh_cl, fresh_bj)


def test_settings_page_and_subscriptions_in_chromium(browser, web, users, api, smtpd, notify_settings,  # noqa: F811
                                                     tmp_path):
    notify_settings(smtp_port=free_port("127.0.0.1"))   # nothing listens there
    page = login(browser, web, users["admin"])
    page.goto(web + "/settings/notifications")
    assert page.input_value("#n-host") == "127.0.0.1" and page.input_value("#n-password") == ""
    assert "stored (encrypted)" in page.get_attribute("#n-password", "placeholder")
    page.fill("#n-to", "admin@borgfleet.test")
    page.click("#send-test")
    assert "connection refused (is the SMTP server running, and is the port right?)" in page.inner_text("#test-result")
    assert SMTP_PASSWORD not in page.content()
    # Saving through the form keeps the stored password when its field is left empty.
    page.fill("#n-port", str(smtpd.port))
    page.click("#save-settings")
    page.wait_for_selector(".toast, #error")
    assert page.locator("#error").count() == 0, page.inner_text("#error")
    page.fill("#n-to", "admin@borgfleet.test")
    page.click("#send-test")
    assert page.inner_text("#test-result") == "Test message sent to admin@borgfleet.test."
    OUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUT / "notification-settings.png"), full_page=True)

    viewer = login(browser, web, users["viewer"])
    viewer.goto(web + "/notifications")
    viewer.fill("#my-subscription-email", "viewer-page@borgfleet.test")
    viewer.uncheck("#my-subscription-ev-digest")
    viewer.click("#my-subscription button[name=save]")
    viewer.wait_for_selector(".toast, #error")
    assert viewer.locator("#error").count() == 0, viewer.inner_text("#error")
    mine = api("viewer").get("/api/notifications/subscription").json["subscription"]
    assert (mine["email"], mine["events"], mine["backup_job_ids"]) == (
        "viewer-page@borgfleet.test", ["failure", "recovery", "stale", "missed", "pool", "server", "session"], None)
    assert viewer.locator("#add-ping").count() == 0   # ping URLs are the operators'

    cl, bj = make_local_backup(api, tmp_path, "notify-ping")
    try:
        page.goto(web + "/notifications")
        assert "viewer-page@borgfleet.test" in page.inner_text("#subscriptions tr[data-user=t_viewer]")
        page.select_option("#ping-bj", label="notify-ping/data")
        page.fill("#ping-url", "https://hc.example.org/ping/0f9c")
        page.click("#add-ping button")
        page.wait_for_selector("#pings tr[data-backup='notify-ping/data']")
        assert [(p["backup_job_id"], p["url"]) for p in api("operator").get("/api/notifications/pings").json["items"]] \
            == [(bj["id"], "https://hc.example.org/ping/0f9c")]
        page.screenshot(path=str(OUT / "notifications.png"), full_page=True)
    finally:
        drop_local_backup(api, cl, bj)


def test_digest_due_times_follow_the_local_clock():
    """Pure logic: the latest due time of daily and weekly digests in a zone, across a DST change."""
    from borgfleet_ui.notifications.digest import last_due

    def due(frequency, at, now, weekday=0, tz="UTC"):
        return last_due({"digest_frequency": frequency, "digest_time": at, "digest_weekday": weekday,
                         "digest_timezone": tz}, now)
    assert due("daily", "08:00", datetime(2026, 12, 2, 9, 0)) == datetime(2026, 12, 2, 8, 0)
    assert due("daily", "08:00", datetime(2026, 12, 2, 7, 59)) == datetime(2026, 12, 1, 8, 0)
    # Monday 08:00 in Paris (UTC+1 in winter), seen on a Wednesday.
    assert due("weekly", "08:00", datetime(2026, 12, 2, 12, 0), 0, "Europe/Paris") == datetime(2026, 11, 30, 7, 0)
    # Summer time starts in Paris on 29 March 2026: 08:00 local is 06:00 UTC that day, 07:00 UTC the day before.
    assert due("daily", "08:00", datetime(2026, 3, 29, 10, 0), tz="Europe/Paris") == datetime(2026, 3, 29, 6, 0)
    assert due("daily", "08:00", datetime(2026, 3, 29, 5, 0), tz="Europe/Paris") == datetime(2026, 3, 28, 7, 0)
    assert due("off", "08:00", datetime(2026, 3, 29, 5, 0)) is None


def test_a_mail_goes_out_in_its_recipients_language(api, db, redis, users, tmp_path, notify_settings):
    """The subscriber's users.language picks the mail's language (subject, text and HTML parts), in the
    worker's way (no request); with no language set the same delivery is in English. No playbook runs:
    the failure is recorded through queue.finish."""
    notify_settings()
    cl, bj = make_local_backup(api, tmp_path, "notify-fr")
    assert api("viewer").put("/api/notifications/subscription", json={"email": "viewer@borgfleet.test"}).status_code == 200
    try:
        job_id = q.create_job_row(db, "backup", backup_job_id=bj["id"], status="running")
        q.finish(db, job_id, "failed", error="borg: passphrase rejected", rc=2, r=redis,
                 result={"failed": [{"error_kind": "wrong_passphrase"}]})
        [d] = dbm.query(db, "SELECT * FROM notification_deliveries WHERE job_id=%s AND channel='email'", (job_id,))
        dbm.execute(db, "UPDATE users SET language='fr' WHERE username=%s", (users["viewer"][0],))
        subject, text, html = deliver.build_mail(db, d)
        assert subject == "[BorgFleet] ÉCHEC : sauvegarde de notify-fr/data (mauvaise phrase secrète)"
        assert "L’opération « sauvegarde » de la sauvegarde data du client notify-fr a échoué." in text
        assert "Classe d’erreur : mauvaise phrase secrète" in text and f"{BASE_URL}/jobs/{job_id}" in text
        assert '<html lang="fr">' in html and "Sauvegarde de notify-fr/data : échec" in html and "Ouvrir la tâche" in html
        dbm.execute(db, "UPDATE users SET language=NULL WHERE username=%s", (users["viewer"][0],))
        en_subject, en_text, en_html = deliver.build_mail(db, d)
        assert en_subject == "[BorgFleet] FAILED: backup of notify-fr/data (wrong passphrase)"
        assert '<html lang="en">' in en_html and "Open the job" in en_html
        # Every word the English text part's template writes is gone from the French one (the data
        # stays: links, names, the job's id and error, times in UTC; "client" and "message" are French too).
        data = (f"{BASE_URL}/jobs/{job_id}", f"{BASE_URL}/backup-jobs/{bj['id']}", "notify-fr", "data", job_id,
                "borg: passphrase rejected", "BorgFleet")

        def words(t):
            for value in data:
                t = t.replace(value, " ")
            return set(re.findall(r"[A-Za-zÀ-ÿ’']+", t))
        english = words(en_text)
        assert {"The", "Error", "class", "Finished", "Sent"} <= english
        assert english & words(text) <= {"client", "message", "UTC"}, english & words(text)
    finally:
        dbm.execute(db, "UPDATE users SET language=NULL WHERE username=%s", (users["viewer"][0],))
        for queue in q.queues(redis):
            if queue.name == q.NOTIFY_QUEUE:
                queue.empty()
        drop_local_backup(api, cl, bj)
