"""French and English (Flask-Babel): the language of a request, the switch, and Babel's own
formats for numbers and dates. Catalogs: ui/borgfleet_ui/translations/<lang>/LC_MESSAGES/messages.po,
extracted with `make i18n-extract` (pybabel, ui/babel.cfg) and compiled by `make setup`.

The collection's own output (playbooks, modules) stays English, as Ansible's is; the service's
pages, messages, errors and mails are translated, the contract's refusals included: the service
renders their English templates through this catalog (fleet/common.py said)."""
import os
from contextlib import contextmanager, nullcontext
from urllib.parse import urlparse

from flask import Blueprint, Flask, g, has_app_context, has_request_context, redirect, request, url_for
from flask_babel import Babel, force_locale, get_locale, get_translations, lazy_gettext as _l
from flask_babel import gettext as _

from .db import execute, get_db

LANGUAGES = {"en": "English", "fr": "Français"}
DEFAULT = "en"
THEMES = ("light", "dark")
# Anonymous pages (login) remember the switch in this cookie; a logged-in user in the users table.
COOKIE = "borgfleet_lang"
TRANSLATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "translations")


def select_locale():
    """The user's own choice, then the switch's cookie, then the browser's Accept-Language."""
    user = getattr(g, "user", None)
    if user and user.get("language") in LANGUAGES:
        return user["language"]
    if not has_request_context():   # an app context of a command or test: no browser to ask
        return DEFAULT
    if request.cookies.get(COOKIE) in LANGUAGES:
        return request.cookies[COOKIE]
    return request.accept_languages.best_match(list(LANGUAGES), default=DEFAULT)


def current():
    """The language of this request ('en' outside one)."""
    try:
        locale = get_locale()
    except RuntimeError:
        return DEFAULT
    return locale.language if locale else DEFAULT


def init_app(app):
    app.register_blueprint(bp)
    Babel(app, locale_selector=select_locale, default_translation_directories=TRANSLATIONS)
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: _catalog().ugettext(s), ngettext=lambda s, p, n: _catalog().ungettext(s, p, n),
        pgettext=lambda c, s: _catalog().upgettext(c, s),
        npgettext=lambda c, s, p, n: _catalog().unpgettext(c, s, p, n), newstyle=True)
    app.jinja_env.policies["ext.i18n.trimmed"] = True   # {% trans %} blocks: whitespace folded
    app.jinja_env.globals.update(languages=LANGUAGES, current_language=current)


# The catalog of each locale, as Flask-Babel loaded it. Pages call gettext thousands of times (a
# card per pool, a row per backup job) and Flask-Babel finds the catalog through four lookups of its
# request context a call; the locale alone is one (and follows force_locale).
_CATALOGS = {}


def _catalog():
    locale = get_locale()
    catalog = _CATALOGS.get(locale) if locale is not None else None
    if catalog is None:
        catalog = get_translations()
        if locale is not None:
            _CATALOGS[locale] = catalog
    return catalog


_catalogs_app = None


@contextmanager
def in_language(lang):
    """Translate in `lang` (None or unknown: English) whatever the request's language: a mail goes
    out in its recipient's. Outside a request (the notification worker) Flask-Babel needs an app
    context: a bare app holding only the catalogs provides it."""
    global _catalogs_app
    if has_app_context():
        outer = nullcontext()
    else:
        if _catalogs_app is None:
            _catalogs_app = Flask(__name__)
            Babel(_catalogs_app, default_translation_directories=TRANSLATIONS)
        outer = _catalogs_app.app_context()
    with outer, force_locale(lang if lang in LANGUAGES else DEFAULT):
        yield


# Werkzeug's words for the HTTP errors are English: the usual ones in ours (code: title, text).
HTTP_ERRORS = {
    400: (_l("Bad request"), _l("The request could not be understood.")),
    401: (_l("Login required"), _l("Log in first, or give an API token.")),
    403: (_l("Not allowed"), _l("Your role does not allow this.")),
    404: (_l("Not found"), _l("There is no such page or resource here.")),
    405: (_l("Method not allowed"), _l("This address does not take this method.")),
    413: (_l("Request too large"), _l("The request is too large.")),
    429: (_l("Too many requests"), _l("Too many requests: try again in a moment.")),
    500: (_l("Internal error"), _l("Something went wrong on the server: its log says what.")),
}


def http_error(e):
    """(title, text) of an HTTP error in the reader's language; a description our code gave
    (abort(400, _("..."))) is kept as it is."""
    title, text = HTTP_ERRORS.get(e.code, (e.name, None))
    default = e.description == type(e).description
    return f"{e.code} {title}", str(text) if default and text is not None else e.description


def set_preferences(user, data):
    """Store a user's language and/or theme (None: follow the browser / the system); ValueError."""
    cols = {}
    if "language" in data:
        if data["language"] not in (None, "", *LANGUAGES):
            raise ValueError(_("language must be one of %(choices)s (or empty: the browser's)",
                               choices=', '.join(LANGUAGES)))
        cols["language"] = data["language"] or None
    if "theme" in data:
        if data["theme"] not in (None, "", *THEMES):
            raise ValueError(_("theme must be one of %(choices)s (or empty: the system's)", choices=', '.join(THEMES)))
        cols["theme"] = data["theme"] or None
    for col, value in cols.items():
        execute(get_db(), f"UPDATE users SET {col}=%s WHERE id=%s", (value, user["id"]))
        user[col] = value
    return {"language": user.get("language"), "theme": user.get("theme")}


def safe_next(target):
    """A same-site path to go back to after the switch (never another site)."""
    parsed = urlparse(target or "")
    if parsed.scheme or parsed.netloc or not (target or "").startswith("/") or target.startswith("//"):
        return url_for("pages.dashboard")
    return target


# The switch for pages without a login (the login page): a cookie only, nothing stored.
bp = Blueprint("i18n", __name__)


@bp.get("/language/<lang>")
def language(lang):
    resp = redirect(safe_next(request.args.get("next")))
    if lang in LANGUAGES:
        resp.set_cookie(COOKIE, lang, max_age=365 * 86400, samesite="Lax", httponly=True)
    return resp
