"""REST routes of the notifications (on the /api blueprint): settings, the test mail and the test
chat message (admins),
the caller's own subscription (everyone), everyone's subscriptions and the delivery log (admins),
the backup jobs' ping URLs (operators)."""
from datetime import datetime, timedelta, timezone

from flask import current_app, g, jsonify, request
from flask_babel import gettext as _

from . import fleet, i18n
from .api import body, bp
from .auth import role
from .db import get_db, get_redis
from .notifications import chat, deliver, events, mail, store


def send_test_mail(to):
    """Send the test message now (not queued: the admin waits for the answer); MailError says why not."""
    db = get_db()
    to = store.email_address(to, "recipient")
    settings = store.get_settings(db)
    name = deliver.app_name(db)
    # In the language of the address's subscriber, else in the admin's (who reads it, testing).
    language = deliver.recipient_language(db, to) or i18n.current()
    subject, text, html = mail.render("test", language, app_name=name, sender_user=g.user["username"])
    msg = mail.message(settings["smtp_sender"] or "nobody@invalid", to, subject, text, html, name)
    mail.send(settings, store.secret(current_app.config, db, "smtp_password"), msg)
    return to


def send_test_chat():
    """The test message to every saved Apprise URL now, in the admin's language; the number of URLs,
    Invalid when none is set, or ChatError naming the failed ones by line."""
    db = get_db()
    targets = chat.urls(store.secret(current_app.config, db, "apprise_urls"))
    if not targets:
        raise fleet.Invalid(_("no Apprise URL is set: save some first"), "apprise_urls")
    subject, text, _html = mail.render("test", i18n.current(), app_name=deliver.app_name(db),
                                       sender_user=g.user["username"])
    return chat.send(targets, subject, text)


def default_recipient():
    sub = store.get_subscription(get_db(), g.user["id"])
    return sub["email"] if sub else None


@bp.get("/notifications/settings")
@role("admin")
def notify_settings_get():
    return jsonify(store.get_settings(get_db()))


@bp.put("/notifications/settings")
@role("admin")
def notify_settings_put():
    return jsonify(store.update_settings(current_app.config, get_db(), body()))


@bp.post("/notifications/test-email")
@role("admin")
def notify_test_email():
    data = request.get_json(silent=True) or {}
    to = data.get("to") or default_recipient()
    if not to:
        raise fleet.Invalid(_("to: the address to send the test message to (or subscribe yourself first)"))
    try:
        sent_to = send_test_mail(to)
    except mail.MailError as e:
        # The mail server, not the request, failed: 502 with the reason in words.
        return jsonify(error=str(e), sent=False), 502
    return jsonify(sent=True, to=sent_to)


@bp.post("/notifications/test-apprise")
@role("admin")
def notify_test_apprise():
    try:
        n = send_test_chat()
    except chat.ChatError as e:
        return jsonify(error=str(e), sent=False), 502
    return jsonify(sent=True, urls=n)


@bp.post("/notifications/digest")
@role("admin")
def notify_digest_now():
    """A digest of the last period now (to the subscribers of digests), whatever the schedule."""
    db = get_db()
    settings = store.get_settings(db)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    days = 7 if settings["digest_frequency"] == "weekly" else 1
    ids = events.queue_event(db, get_redis(), "digest", period=(now - timedelta(days=days), now))
    return jsonify(deliveries=ids), 202


@bp.get("/notifications/subscription")
@role("viewer")
def notify_my_subscription():
    return jsonify(subscription=store.get_subscription(get_db(), g.user["id"]))


@bp.put("/notifications/subscription")
@role("viewer")
def notify_my_subscription_put():
    return jsonify(store.put_subscription(get_db(), g.user["id"], body()))


@bp.delete("/notifications/subscription")
@role("viewer")
def notify_my_subscription_delete():
    store.delete_subscription(get_db(), g.user["id"])
    return "", 204


@bp.get("/notifications/subscriptions")
@role("admin")
def notify_subscriptions():
    return jsonify(items=store.list_subscriptions(get_db()))


@bp.put("/notifications/subscriptions/<int:uid>")
@role("admin")
def notify_subscription_put(uid):
    return jsonify(store.put_subscription(get_db(), uid, body()))


@bp.delete("/notifications/subscriptions/<int:uid>")
@role("admin")
def notify_subscription_delete(uid):
    return ("", 204) if store.delete_subscription(get_db(), uid) else (jsonify(error=_("no such subscription")), 404)


@bp.get("/notifications/deliveries")
@role("admin")
def notify_deliveries():
    return jsonify(items=events.list_deliveries(get_db(), min(request.args.get("limit", 50, type=int), 200)))


@bp.get("/notifications/incidents")
@role("viewer")
def notify_incidents():
    return jsonify(items=events.list_incidents(get_db(), open_only=request.args.get("open") == "1"))


@bp.get("/notifications/pings")
@role("operator")
def notify_pings():
    return jsonify(items=store.list_pings(get_db()))


@bp.put("/notifications/pings/<int:bid>")
@role("operator")
def notify_ping_put(bid):
    return jsonify(store.set_ping(get_db(), bid, body().get("url")))


@bp.delete("/notifications/pings/<int:bid>")
@role("operator")
def notify_ping_delete(bid):
    return ("", 204) if store.delete_ping(get_db(), bid) else (jsonify(error=_("no ping URL for this backup job")), 404)
