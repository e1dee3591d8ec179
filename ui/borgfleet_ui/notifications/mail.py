"""Mail: the HTML and plain-text bodies from Jinja templates (templates/mail/), and sending over SMTP
with the settings' security (none, STARTTLS, TLS). A failure becomes MailError with a message a
person can act on; the password is never part of it."""
import os
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import look

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates")
TIMEOUT = 20   # seconds for connecting and each SMTP reply

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)
_env.filters.update(size=look.size, when=look.when, duration=look.duration, ago=look.ago)


class MailError(Exception):
    """Sending failed; str() says why in words, without a secret."""


def render(name, **context):
    """(subject, text, html) of templates/mail/<name>.txt and .html; the subject is the text's first
    line ("Subject: ...")."""
    text = _env.get_template(f"mail/{name}.txt").render(**context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"templates/mail/{name}.txt must start with a Subject: line")
    html = _env.get_template(f"mail/{name}.html").render(**context)
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
        raise MailError("mail is not set up: an admin sets the SMTP host and the sender address first")
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
    """Why sending failed, as a person reads it."""
    if isinstance(e, ConnectionRefusedError):
        why = f"could not connect to {where}: connection refused (is the SMTP server running, and is the port right?)"
    elif isinstance(e, socket.gaierror):
        why = f"the SMTP host of {where} does not resolve (check the host name)"
    elif isinstance(e, (socket.timeout, TimeoutError)):
        why = f"no answer from {where} within {TIMEOUT} s (a firewall, or the wrong port?)"
    elif isinstance(e, smtplib.SMTPAuthenticationError):
        why = f"{where} refused the user name or password (authentication failed)"
    elif isinstance(e, smtplib.SMTPNotSupportedError) and security == "starttls":
        why = f"{where} does not offer STARTTLS: choose TLS (usually port 465) or no encryption"
    elif isinstance(e, smtplib.SMTPNotSupportedError):
        why = f"{where} does not accept a login here ({e}); STARTTLS may be required first"
    elif isinstance(e, ssl.SSLCertVerificationError):
        why = f"the TLS certificate of {where} is not trusted ({e.verify_message})"
    elif isinstance(e, ssl.SSLError):
        hint = "; choose STARTTLS or no encryption for this port" if security == "tls" else ""
        why = f"TLS with {where} failed ({e.reason or e}){hint}"
    elif isinstance(e, smtplib.SMTPSenderRefused):
        why = f"{where} refused the sender address: {_reply(e.smtp_error)}"
    elif isinstance(e, smtplib.SMTPRecipientsRefused):
        why = f"{where} refused the recipient(s): " + "; ".join(
            f"{rcpt}: {_reply(err[1])}" for rcpt, err in e.recipients.items())
    elif isinstance(e, smtplib.SMTPServerDisconnected):
        why = f"{where} closed the connection ({e or 'no reason given'}); a TLS port spoken to without TLS?"
    elif isinstance(e, smtplib.SMTPResponseException):
        why = f"{where} answered {e.smtp_code}: {_reply(e.smtp_error)}"
    elif isinstance(e, OSError):
        why = f"could not reach {where}: {e.strerror or e}"
    else:
        why = f"sending through {where} failed: {type(e).__name__}: {e}"
    # A server may echo what it was sent: the password never leaves this function.
    return why.replace(password, "********") if password else why


def _reply(raw):
    return (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).strip()
