"""Users (admins manage them) and API tokens (each user their own), for the API and the pages alike.
Passwords and tokens are generated here and returned once; only their hashes are stored (auth.py)."""
from flask_babel import gettext as _

from .. import auth
from ..contract import contract
from ..db import execute, query
from .common import Invalid, NotFound, about, matching

USER_COLS = "id, username, role, disabled, created_at"


def list_users(db):
    return query(db, f"SELECT {USER_COLS} FROM users ORDER BY id")


def get_user(db, uid):
    user = query(db, f"SELECT {USER_COLS} FROM users WHERE id=%s", (uid,), one=True)
    if user is None:
        raise NotFound(_("no user %(uid)s", uid=uid))
    return user


def _role(value):
    if value not in auth.ROLES:
        raise Invalid(_("role must be one of %(choices)s", choices=', '.join(auth.ROLES)), "role")
    return value


def create_user(db, data):
    """(the new user, its password: the one given, else a generated one to show once)."""
    with about("username"):
        name = matching(contract.SERVER_USER_RE, data.get("username"), "username")   # as boring as an OS account
    role = _role(data.get("role"))
    if query(db, "SELECT id FROM users WHERE username=%s", (name,), one=True):
        raise Invalid(_("user %(name)s exists", name=name), "username")
    if data.get("password") is not None:
        with about("password"):
            auth.check_password_rule(data["password"])
    password = auth.create_user(db, name, role, data.get("password"))
    return query(db, f"SELECT {USER_COLS} FROM users WHERE username=%s", (name,), one=True), password


def update_user(db, uid, data):
    """Change a user's password, role or disabled flag; a new password or disabling ends its sessions."""
    user = get_user(db, uid)
    unknown = set(data) - {"password", "role", "disabled"}
    if unknown:
        raise Invalid(_("unknown fields: %(fields)s", fields=sorted(unknown)))
    new_role = _role(data.get("role", user["role"]))
    disabled = data.get("disabled", bool(user["disabled"]))
    if not isinstance(disabled, bool):
        raise Invalid(_("disabled must be true or false"), "disabled")
    if "password" in data:
        with about("password"):
            auth.check_password_rule(data["password"])
    if user["role"] == "admin" and (new_role != "admin" or disabled) and not query(
            db, "SELECT id FROM users WHERE role='admin' AND disabled=0 AND id<>%s LIMIT 1", (uid,)):
        raise Invalid(_("this is the last enabled admin: add another admin first"))
    execute(db, "UPDATE users SET role=%s WHERE id=%s", (new_role, uid))
    auth.set_disabled(db, uid, disabled)
    if "password" in data:
        auth.set_password(db, uid, data["password"])
    return get_user(db, uid)


def reset_password(db, uid):
    """A new generated password (returned once); the old one stops working and the user's sessions end."""
    get_user(db, uid)
    password = auth.generate_password()
    auth.set_password(db, uid, password)
    return password


def list_tokens(db, uid):
    return query(db, "SELECT id, name, created_at, expires_at, last_used_at FROM api_tokens"
                     " WHERE user_id=%s ORDER BY id", (uid,))


def create_token(db, uid, data):
    """(name, token shown once, expires_at) of a new token of user `uid`."""
    with about("name"):
        name = matching(contract.BACKUP_NAME_RE, data.get("name"), "token name")   # as boring as a backup name
    with about("expires_at"):
        expires_at = auth.parse_expiry(data.get("expires_at"))
    return name, auth.create_token(db, uid, name, expires_at), expires_at


def revoke_token(db, uid, tid):
    """Delete one of the user's own tokens (another user's is 'not found')."""
    if not execute(db, "DELETE FROM api_tokens WHERE id=%s AND user_id=%s", (tid, uid)):
        raise NotFound(_("no such token"))
