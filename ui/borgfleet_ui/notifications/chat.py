"""Chat notifications through Apprise URLs (slack://, matrix://, mattermost://, json:// ...): which URLs
are accepted, and sending one message to each.

The URLs carry the chat services' tokens: they are stored encrypted (store.py), and neither a refusal,
a delivery's error, nor a log line ever holds one: a URL is named by its line number, and Apprise's
own logger (which prints URLs and server answers) is silenced."""
import logging

import apprise
from flask_babel import gettext as _

from ..fleet.common import Invalid

MAX_URLS = 20
MAX_URL_LENGTH = 2048
# Apprise logs the URLs it parses and posts to (tokens included): none of it reaches the service's logs.
logging.getLogger("apprise").propagate = False
logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)

# The message's look in chat tools that color it (a recovery green, a failure red).
NOTIFY_TYPES = {"failure": apprise.NotifyType.FAILURE, "missed": apprise.NotifyType.FAILURE,
                "stale": apprise.NotifyType.WARNING, "pool": apprise.NotifyType.WARNING,
                "server": apprise.NotifyType.WARNING, "recovery": apprise.NotifyType.SUCCESS,
                "pool_recovery": apprise.NotifyType.SUCCESS, "server_recovery": apprise.NotifyType.SUCCESS}


class ChatError(Exception):
    """Some URLs did not take the message; str() names them by line, never by their text."""


def _one(url):
    a = apprise.Apprise()
    return a if a.add(url) else None


def check_urls(value):
    """The URLs of `value` (text with one per line, or a list), each one Apprise can send to, as a list;
    Invalid naming the line of a refused one."""
    lines = value.splitlines() if isinstance(value, str) else value
    if not isinstance(lines, list) or not all(isinstance(u, str) for u in lines):
        raise Invalid(_("apprise_urls must be text with one Apprise URL per line (or a list of them)"))
    urls = [u.strip() for u in lines if u.strip()]
    if len(urls) > MAX_URLS:
        raise Invalid(_("apprise_urls holds at most %(n)s URLs", n=MAX_URLS))
    for n, url in enumerate(urls, 1):
        if len(url) > MAX_URL_LENGTH or any(c in url for c in "\0\r\n") or _one(url) is None:
            raise Invalid(_("apprise_urls: line %(n)s is not a URL Apprise can send to (see Apprise's list of"
                            " services)", n=n))
    return urls


def urls(stored):
    """The URLs of the stored (decrypted) text."""
    return [u for u in stored.splitlines() if u.strip()]


def send(targets, title, body, event=None):
    """Post the message to every URL of `targets` (each on its own: one failing does not stop the
    others); the number of URLs, or ChatError."""
    if not targets:
        raise ChatError(_("no Apprise URL is set"))
    failed = []
    for n, url in enumerate(targets, 1):
        a = _one(url)
        if a is None or not a.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT,
                                     notify_type=NOTIFY_TYPES.get(event, apprise.NotifyType.INFO)):
            failed.append(str(n))
    if failed:
        raise ChatError(_("Apprise could not deliver to URL(s) %(lines)s of %(n)s (by line; their answers are"
                          " not kept: the URLs carry tokens)", lines=", ".join(failed), n=len(targets)))
    return len(targets)
