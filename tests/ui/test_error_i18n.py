"""The service's errors in the reader's language (issue 14): a refusal of the fleet code and one of the
collection's contract reach an API caller in French when the user or the browser asks for it, in
English otherwise; the contract's own text (what playbooks print) stays English; and every message
raised by the service's code is a gettext template, so the catalog check (test_i18n.py) covers it."""
import ast
from pathlib import Path

import pytest

from borgfleet_ui import fleet
from borgfleet_ui.contract import ContractError, contract
from test_restore_jobs import logged_in

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "ui" / "borgfleet_ui"


def call(app, users, role, method, path, lang=None, **kw):
    headers = {"Authorization": f"Bearer {users[role][2]}"}
    if lang:
        headers["Accept-Language"] = lang
    return getattr(app.test_client(), method)(path, headers=headers, **kw)


def test_a_fleet_refusal_follows_the_browser(app, users):
    bad = {"name": "i18n-bad-role", "role": "printer", "address": "127.0.0.1"}
    fr = call(app, users, "admin", "post", "/api/servers", "fr-FR,fr;q=0.9", json=bad)
    assert fr.status_code == 400 and fr.json["error"] == "role doit valoir client ou backup_server"
    en = call(app, users, "admin", "post", "/api/servers", "en-GB,en;q=0.8", json=bad)
    assert en.status_code == 400 and en.json["error"] == "role must be client or backup_server"
    # A NotFound with a parameter, and the default language (no header): English.
    assert call(app, users, "viewer", "get", "/api/servers/987654", "fr").json == {
        "error": "serveur 987654 introuvable"}
    assert call(app, users, "viewer", "get", "/api/servers/987654").json == {"error": "server 987654 not found"}


def test_a_contract_refusal_is_translated_with_its_nested_phrases(app, users):
    # The pool path's problem is a phrase of its own inside the message (contract.Text): both translated.
    data = {"name": "i18n-bs", "role": "backup_server", "address": "127.0.0.1",
            "pools": [{"name": "main", "path": "/srv/a b"}]}
    fr = call(app, users, "admin", "post", "/api/servers", "fr", json=data)
    assert fr.status_code == 400
    assert fr.json["error"] == ("serveur de sauvegarde 'i18n-bs', pool 'main' : le chemin '/srv/a b' doit être "
                                "absolu et fait uniquement de lettres, chiffres, '/', '.', '_' ou '-' (sans "
                                "partie '.' ou '..')")
    en = call(app, users, "admin", "post", "/api/servers", "en", json=data)
    assert en.json["error"] == ("backup server 'i18n-bs', pool 'main': path '/srv/a b' must be absolute and made "
                                "of letters, digits, '/', '.', '_' or '-' only (no '.' or '..' part)")
    # The same refusal raised by the collection itself (a playbook, the filter): English, whatever the
    # request around it.
    with app.test_request_context(headers={"Accept-Language": "fr"}):
        with pytest.raises(ContractError) as err:
            contract.check_pools("i18n-bs", [{"name": "main", "path": "/srv/a b"}])
        assert str(err.value) == en.json["error"]
        assert fleet.common.said(err.value).startswith("serveur de sauvegarde 'i18n-bs'")
    # A secret in a server's vars: the contract's message with its parameter, in French.
    fr = call(app, users, "admin", "post", "/api/servers", "fr",
              json={"name": "i18n-vars", "role": "client", "address": "127.0.0.1", "local_pool_path": "/srv/x",
                    "vars": {"ansible_password": "hunter2"}})
    assert fr.status_code == 400 and fr.json["error"].startswith(
        "vars ne peut pas contenir de secrets (ansible_password) : elles sont stockées en clair")
    assert "hunter2" not in fr.get_data(as_text=True)


def test_a_french_user_reads_french_errors_whatever_the_browser(app, users):
    assert call(app, users, "viewer", "put", "/api/me/preferences", json={"language": "fr"}).status_code == 200
    try:
        resp = call(app, users, "viewer", "get", "/api/servers?sort=colour", "en")
        assert resp.status_code == 400 and resp.json["error"].startswith("sort doit être l’un de : ")
        resp = call(app, users, "viewer", "put", "/api/me/preferences", "en", json={"language": "de"})
        assert resp.json["error"] == "language doit être l’un de : en, fr (ou vide : celle du navigateur)"
    finally:
        call(app, users, "viewer", "put", "/api/me/preferences", json={"language": None})
    assert call(app, users, "viewer", "get", "/api/servers?sort=colour", "en").json["error"].startswith(
        "sort must be one of ")


def test_http_errors_in_the_readers_language(app, users):
    """Werkzeug's own descriptions are English: the usual codes get ours, in the reader's language."""
    assert call(app, users, "viewer", "get", "/api/no-such-route", "fr").json == {
        "error": "Cette page ou cette ressource n’existe pas ici."}
    assert call(app, users, "viewer", "get", "/api/no-such-route", "en").json == {
        "error": "There is no such page or resource here."}
    page = app.test_client().get("/no-such-page", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "404 Introuvable" in page and "Cette page ou cette ressource n’existe pas ici." in page
    # A description our code gave is kept (the CSRF refusal of a page's form), translated where raised.
    browser, _ = logged_in(app, users["viewer"])
    resp = browser.post("/preferences", data={"language": "fr"}, headers={"Accept-Language": "fr"})
    assert resp.status_code == 400 and "Jeton CSRF absent ou erroné" in resp.get_data(as_text=True)


def test_outside_a_request_messages_are_english(app):
    """The scheduler and the workers raise the same errors without a request: English."""
    with pytest.raises(fleet.Invalid, match=r"^when is required$"):
        fleet.common.field({}, "when", required=True)
    with app.app_context(), pytest.raises(fleet.Invalid, match=r"^when is required$"):
        fleet.common.field({}, "when", required=True)
    with app.test_request_context(headers={"Accept-Language": "fr"}), \
            pytest.raises(fleet.Invalid, match=r"^when est obligatoire$"):
        fleet.common.field({}, "when", required=True)


# --- every message is a template the catalog holds ---

ERRORS = {"Invalid", "NotFound", "Forbidden", "Unavailable", "SecretError", "MailError", "ChatError"}
SERVICE = sorted([*UI.glob("fleet/*.py"), *UI.glob("api*.py"), *UI.glob("views*.py"), UI / "auth.py",
                  UI / "forms.py", UI / "workers.py", UI / "secret_store.py",
                  *(UI / "notifications" / f"{m}.py" for m in ("store", "mail", "chat"))])


def _name(node):
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)


def untranslated_raises(source):
    """Lines where an error of the service is built from a bare string or f-string (not _()/gettext)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _name(node.func) in ERRORS and node.args:
            if isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                found.append(node.lineno)
        # jsonify(error="...") is a message too
        if isinstance(node, ast.Call) and _name(node.func) == "jsonify":
            found += [k.value.lineno for k in node.keywords if k.arg == "error" and (
                isinstance(k.value, ast.JoinedStr) or isinstance(k.value, ast.Constant) and isinstance(k.value.value, str))]
    return found


def untemplated_fails(source):
    """_fail/Text calls of the contract whose message is not a literal template (pybabel extracts only those)."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and _name(node.func) in ("_fail", "Text") and node.args
            and not (isinstance(node.args[0], ast.Constant) or _name(node.args[0]) in ("template", "message")
                     or isinstance(node.args[0], ast.Call))]


def test_every_error_message_is_a_gettext_template():
    problems = {str(p.relative_to(ROOT)): lines for p in SERVICE if (lines := untranslated_raises(p.read_text()))}
    assert not problems, f"messages not wrapped in _(): {problems}"
    fails = untemplated_fails((ROOT / "plugins" / "module_utils" / "contract.py").read_text())
    assert not fails, f"contract messages built with % instead of named parameters: lines {fails}"
    # The checks find what they are for.
    assert untranslated_raises('raise Invalid(f"{x} is bad")\nraise NotFound("gone")\n') == [1, 2]
    assert untranslated_raises('raise Invalid(_("%(x)s is bad", x=x), "x")\nreturn jsonify(error="no")') == [2]
    assert untemplated_fails('_fail("a %s" % x)\n_fail("a %(x)s", x=x)\n') == [1]
