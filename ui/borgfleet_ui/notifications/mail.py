"""Mail: the HTML and plain-text bodies from Jinja templates (templates/mail/), in the recipient's
language, and sending over SMTP with the settings' security (none, STARTTLS, TLS). A failure becomes
MailError with a message a person can act on (in the language of the request); the password is
never part of it."""
import os
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from flask_babel import gettext as _, ngettext
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import i18n, look

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates")
TIMEOUT = 20   # seconds for connecting and each SMTP reply


def N_(text):
    """Marks a message for extraction; translated where a mail shows it."""
    return text


# Job kinds, statuses and error classes (plugins/module_utils/borg.py, docs/contract.md) as mails name
# them: lower-case nouns, capitalised by the templates in titles. Others are shown as they are.
KIND_NAMES = {"backup": N_("backup"), "prune": N_("prune"), "check": N_("repository check"),
              "verify": N_("restore verification"), "stale": N_("stale backup")}
STATUS_NAMES = {"succeeded": N_("succeeded"), "failed": N_("failed"), "abandoned": N_("abandoned"),
                "missed": N_("missed")}
ERROR_LABELS = {
    "wrong_passphrase": N_("wrong passphrase"), "passphrase_missing": N_("passphrase missing"),
    "repository_missing": N_("repository missing"), "archive_missing": N_("archive missing"),
    "locked": N_("locked"), "unreachable": N_("unreachable"), "auth_refused": N_("authentication refused"),
    "host_key": N_("host key"), "connection_closed": N_("connection closed"),
    "permission_denied": N_("permission denied"), "no_space": N_("no space left on the pool"),
    "no_space_local": N_("no space left on the host"), "timeout": N_("timeout"), "exists": N_("exists"),
    "relocated": N_("repository relocated"), "abandoned": N_("abandoned"), "stale": N_("stale"),
    "unknown": N_("unknown"),
}


def _named(names, fallback=lambda v: v):
    return lambda value: _(names[value]) if value in names else fallback(value or "")


_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.i18n"])
_env.policies["ext.i18n.trimmed"] = True   # as the pages' templates (i18n.init_app)
# Flask-Babel's functions: they read the locale forced by render (i18n.in_language).
_env.install_gettext_callables(gettext=_, ngettext=ngettext, newstyle=True)
_env.filters.update(size=look.size, when=look.when, duration=look.duration, ago=look.ago,
                    kind_name=_named(KIND_NAMES), status_name=_named(STATUS_NAMES),
                    error_label=_named(ERROR_LABELS, lambda v: v.replace("_", " ")))


class MailError(Exception):
    """Sending failed; str() says why in words, without a secret."""


def render(name, language=None, **context):
    """(subject, text, html) of templates/mail/<name>.txt and .html in `language` (None: English);
    the subject is the text's first line ("Subject: ...", the header's name never translated)."""
    lang = language if language in i18n.LANGUAGES else i18n.DEFAULT
    with i18n.in_language(lang):
        text = _env.get_template(f"mail/{name}.txt").render(language=lang, **context)
        html = _env.get_template(f"mail/{name}.html").render(language=lang, **context)
    first, _sep, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"templates/mail/{name}.txt must start with a Subject: line")
    return first[len("Subject: "):].strip(), body.lstrip("\n"), html


def message(sender, to, subject, text, html, app_name):
    msg = EmailMessage()
    msg["From"] = f"{app_name} <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def send(settings, password, msg):
    """Deliver msg with the SMTP settings (host, port, security, user, sender); MailError on failure."""
    host, port, security = settings["smtp_host"], int(settings["smtp_port"]), settings["smtp_security"]
    if not host or not settings["smtp_sender"]:
        raise MailError(_("mail is not set up: an admin sets the SMTP host and the sender address first"))
    where = f"{host}:{port}"
    try:
        context = ssl.create_default_context()
        if security == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=TIMEOUT)
        with smtp:
            smtp.ehlo()
            if security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings["smtp_user"]:
                smtp.login(settings["smtp_user"], password)
            smtp.send_message(msg)
    except Exception as e:  # every failure is reported in words (and never with the password)
        raise MailError(explain(e, where, security, password)) from None


def explain(e, where, security, password=""):
    """Why sending failed, as a person reads it (in the language of the request, if any)."""
    if isinstance(e, ConnectionRefusedError):
        why = _("could not connect to %(where)s: connection refused (is the SMTP server running, and is the port"
                " right?)", where=where)
    elif isinstance(e, socket.gaierror):
        why = _("the SMTP host of %(where)s does not resolve (check the host name)", where=where)
    elif isinstance(e, (socket.timeout, TimeoutError)):
        why = _("no answer from %(where)s within %(seconds)s s (a firewall, or the wrong port?)", where=where,
                seconds=TIMEOUT)
    elif isinstance(e, smtplib.SMTPAuthenticationError):
        why = _("%(where)s refused the user name or password (authentication failed)", where=where)
    elif isinstance(e, smtplib.SMTPNotSupportedError) and security == "starttls":
        why = _("%(where)s does not offer STARTTLS: choose TLS (usually port 465) or no encryption", where=where)
    elif isinstance(e, smtplib.SMTPNotSupportedError):
        why = _("%(where)s does not accept a login here (%(reason)s); STARTTLS may be required first",
                where=where, reason=e)
    elif isinstance(e, ssl.SSLCertVerificationError):
        why = _("the TLS certificate of %(where)s is not trusted (%(reason)s)", where=where, reason=e.verify_message)
    elif isinstance(e, ssl.SSLError) and security == "tls":
        why = _("TLS with %(where)s failed (%(reason)s); choose STARTTLS or no encryption for this port",
                where=where, reason=e.reason or e)
    elif isinstance(e, ssl.SSLError):
        why = _("TLS with %(where)s failed (%(reason)s)", where=where, reason=e.reason or e)
    elif isinstance(e, smtplib.SMTPSenderRefused):
        why = _("%(where)s refused the sender address: %(reply)s", where=where, reply=_reply(e.smtp_error))
    elif isinstance(e, smtplib.SMTPRecipientsRefused):
        why = _("%(where)s refused the recipient(s): %(replies)s", where=where, replies="; ".join(
            f"{rcpt}: {_reply(err[1])}" for rcpt, err in e.recipients.items()))
    elif isinstance(e, smtplib.SMTPServerDisconnected):
        why = _("%(where)s closed the connection (%(reason)s); a TLS port spoken to without TLS?", where=where,
                reason=str(e) or _("no reason given"))
    elif isinstance(e, smtplib.SMTPResponseException):
        why = _("%(where)s answered %(code)s: %(reply)s", where=where, code=e.smtp_code, reply=_reply(e.smtp_error))
    elif isinstance(e, OSError):
        why = _("could not reach %(where)s: %(reason)s", where=where, reason=e.strerror or e)
    else:
        why = _("sending through %(where)s failed: %(error)s", where=where, error=f"{type(e).__name__}: {e}")
    # A server may echo what it was sent: the password never leaves this function.
    return why.replace(password, "********") if password else why


def _reply(raw):
    return (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).strip()
