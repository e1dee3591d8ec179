"""Notification pages on the pages blueprint: the settings (admins: SMTP, links, webhook, digest, a
test mail, what was sent) and subscriptions (everyone their own; admins everyone's)."""
from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from . import fleet, secret_store
from .api_notifications import default_recipient, send_test_chat, send_test_mail
from .auth import has_role, role
from .db import get_db
from .notifications import alerts, chat, events, mail, store
from .views import bp

SETTING_FIELDS = ("smtp_host", "smtp_port", "smtp_security", "smtp_user", "smtp_sender", "base_url",
                  "webhook_url", "stale_margin_minutes", "digest_frequency", "digest_time", "digest_weekday", "digest_timezone",
                  "pool_full_days", "server_disk_percent", "server_memory_percent", "server_cpu_percent")


def _settings_page(error=None, test_result=None, code=200, chat_result=None):
    db = get_db()
    return render_template("notification_settings.html", settings=store.get_settings(db), error=error,
                           test_result=test_result, chat_result=chat_result, deliveries=events.list_deliveries(db, 20),
                           test_to=request.form.get("to") or default_recipient() or ""), code


@bp.route("/settings/notifications", methods=["GET", "POST"])
@role("admin")
def notification_settings():
    if request.method == "GET":
        return _settings_page()
    data = {k: request.form.get(k, "").strip() for k in SETTING_FIELDS if k in request.form}
    # A secret field left empty keeps the stored one; the "clear" box removes it.
    for name in store.SECRETS:
        if request.form.get(name):
            data[name] = request.form[name]
        elif request.form.get(f"clear_{name}"):
            data[name] = None
    try:
        store.update_settings(current_app.config, get_db(), data)
    except (fleet.Invalid, secret_store.SecretError) as e:
        return _settings_page(error=str(e), code=400)
    flash(_("Notification settings saved."), "saved")
    return redirect(url_for("pages.notification_settings"))


@bp.post("/settings/notifications/test-email")
@role("admin")
def notification_test_email():
    try:
        to = send_test_mail(request.form.get("to", "").strip())
    except fleet.Invalid as e:
        return _settings_page(test_result={"ok": False, "message": str(e)}, code=400)
    except mail.MailError as e:
        return _settings_page(test_result={"ok": False, "message": str(e)}, code=502)
    return _settings_page(test_result={"ok": True, "message": _("Test message sent to %(to)s.", to=to)})


@bp.post("/settings/notifications/test-apprise")
@role("admin")
def notification_test_apprise():
    try:
        n = send_test_chat()
    except fleet.Invalid as e:
        return _settings_page(chat_result={"ok": False, "message": str(e)}, code=400)
    except chat.ChatError as e:
        return _settings_page(chat_result={"ok": False, "message": str(e)}, code=502)
    return _settings_page(chat_result={"ok": True, "message": _("Test message sent to %(n)s Apprise URL(s).", n=n)})


@bp.route("/notifications", methods=["GET", "POST"])
@role("viewer")
def notifications():
    db = get_db()
    error, code = None, 200
    if request.method == "POST":
        uid = request.form.get("user_id", type=int) or g.user["id"]
        if uid != g.user["id"] and not has_role(g.user, "admin"):
            abort(403)   # admins manage everyone's subscriptions; others only their own
        try:
            if request.form.get("delete"):
                store.delete_subscription(db, uid)
            else:
                ids = [int(x) for x in request.form.getlist("backup_job_ids")]
                store.put_subscription(db, uid, {
                    "email": request.form.get("email", "").strip(), "events": request.form.getlist("events"),
                    "backup_job_ids": ids if request.form.get("scope") == "some" else None,
                    "enabled": bool(request.form.get("enabled"))})
            flash(_("Subscription saved."), "saved")
            return redirect(url_for("pages.notifications"))
        except (fleet.Invalid, fleet.NotFound) as e:
            error, code = str(e), 400
    admin = has_role(g.user, "admin")
    users = fleet_users(db) if admin else []
    return render_template("notifications.html", mine=store.get_subscription(db, g.user["id"]),
                           pings=store.list_pings(db) if has_role(g.user, "operator") else [],
                           subscriptions=store.list_subscriptions(db) if admin else [], users=users,
                           bjs=fleet.backup_jobs.list_backup_jobs(db, limit=200), events=store.EVENTS,
                           incidents=alerts.failing_now(db), error=error), code


@bp.post("/notifications/pings")
@role("operator")
def notification_ping():
    db = get_db()
    bid = request.form.get("backup_job_id", type=int)
    try:
        if request.form.get("delete"):
            store.delete_ping(db, bid)
        else:
            store.set_ping(db, bid, request.form.get("url", "").strip())
    except (fleet.Invalid, fleet.NotFound) as e:
        flash(str(e), "error")
    else:
        flash(_("Ping URL saved.") if not request.form.get("delete") else _("Ping URL removed."), "saved")
    return redirect(url_for("pages.notifications"))


def fleet_users(db):
    from .db import query
    return query(db, "SELECT id, username, role FROM users WHERE disabled=0 ORDER BY username")
