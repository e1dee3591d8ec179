"""The pages' look: the pinned front-end toolkit served from ui/node_modules, and the Jinja filters
that make figures readable (sizes, times, durations). Pure presentation: no data is read here."""
import datetime
import os

from flask import Blueprint
from babel.numbers import get_decimal_symbol
from flask_babel import lazy_gettext as _l

from .i18n import current as current_language

# Installed by `make setup` from ui/package.json (pinned); only the toolkit's dist folder is served.
ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "node_modules")
vendor = Blueprint("vendor", __name__, static_folder=os.path.join(ASSETS, "bootstrap", "dist"),
                   static_url_path="/vendor/bootstrap")
# uPlot (the server page's history charts): its dist folder only.
vendor_charts = Blueprint("vendor_charts", __name__, static_folder=os.path.join(ASSETS, "uplot", "dist"),
                          static_url_path="/vendor/uplot")

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
# Status → Bootstrap colour; anything else is grey.
STATUS_COLOURS = {
    "succeeded": "success", "ok": "success", "passed": "success",
    "running": "primary", "waiting": "info", "queued": "secondary",
    "failed": "danger", "abandoned": "danger", "missed": "warning", "canceled": "secondary",
    "never": "secondary", "not set up": "warning", "stale": "warning",
    "sent": "success", "retrying": "info",   # notification deliveries
}


# Unit names in the page's language (French: o for octet, j for jour).
_UNIT_NAMES = {"B": _l("B"), "KiB": _l("KiB"), "MiB": _l("MiB"), "GiB": _l("GiB"), "TiB": _l("TiB"), "PiB": _l("PiB"),
               "d": _l("d"), "h": _l("h"), "min": _l("min"), "s": _l("s")}


# Per language, the decimal sign and the unit names, looked up once: a page of a fleet formats
# thousands of figures, and each Babel lookup walks Flask-Babel's request context.
_FORMS = {}


def _forms():
    lang = current_language()
    forms = _FORMS.get(lang)
    if forms is None:
        forms = _FORMS[lang] = (get_decimal_symbol(lang), {unit: str(name) for unit, name in _UNIT_NAMES.items()})
    return forms


def size(value):
    """Bytes as a person reads them: 1536 → '1.5 KiB' ('1,5 Kio' in French), one decimal; None → ''."""
    if value is None or value == "":
        return ""
    decimal, names = _forms()
    n = float(value)
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{int(n)} {names[unit]}" if unit == "B" else f"{n:.1f}".replace(".", decimal) + f" {names[unit]}"
        n /= 1024
    return ""  # not reached


def when(value):
    """A UTC time from the database, to the minute: '2026-12-02 09:14 UTC' (the same in every language)."""
    if not value:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.replace("Z", ""))
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M UTC")


def ago(value, now=None):
    """How long ago a UTC time was: 'just now', '5 min ago', '3 h ago', '2 d ago'; future: 'in 4 h'."""
    if not value:
        return ""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", ""))
    now = now or datetime.datetime.utcnow()
    seconds = (now - value.replace(tzinfo=None)).total_seconds()
    text = duration(abs(seconds), coarse=True)
    if abs(seconds) < 60:
        return str(_l("just now"))
    return str(_l("%(time)s ago", time=text)) if seconds > 0 else str(_l("in %(time)s", time=text))


def duration(seconds, coarse=False):
    """Seconds as '42 s', '3 min 5 s', '2 h 10 min', '4 d 2 h' (coarse: the largest unit only)."""
    if seconds is None or seconds == "":
        return ""
    s = int(round(float(seconds)))
    names = _forms()[1]
    parts = []
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if s >= length or (unit == "s" and not parts):
            parts.append(f"{s // length} {names[unit]}")
            s %= length
    return parts[0] if coarse else " ".join(parts[:2])


# The status words the pages show (jobs, setup, recovery sessions, backup job states, deliveries),
# in the page's language; an unknown word is shown as it is.
STATUS_LABELS = {
    "queued": _l("queued"), "waiting": _l("waiting"), "running": _l("running"), "succeeded": _l("succeeded"),
    "failed": _l("failed"), "abandoned": _l("abandoned"), "canceled": _l("canceled"), "missed": _l("missed"),
    "ok": _l("ok"), "needs setup": _l("needs setup"), "not set up": _l("not set up"), "stopped": _l("stopped"),
    "broken": _l("broken"), "stale": _l("stale"), "never": _l("never"), "passed": _l("passed"),
    "sent": _l("sent"), "retrying": _l("retrying"), "pending": _l("pending"), "idle": _l("idle"), "busy": _l("busy"),
}


def status_label(status):
    return str(STATUS_LABELS[status]) if status in STATUS_LABELS else (status or "")


def status_colour(status):
    return STATUS_COLOURS.get(status or "", "secondary")


def init_app(app):
    app.register_blueprint(vendor)
    app.register_blueprint(vendor_charts)
    app.jinja_env.filters.update(size=size, when=when, ago=ago, duration=duration, status_colour=status_colour,
                                status_label=status_label)
