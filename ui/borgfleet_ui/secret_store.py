"""Secrets at rest (backup passphrases): Fernet with a key file outside the database.

The only place in the service that reads the key file, encrypts or decrypts. Stored values
are `bf1:<Fernet token>`; the prefix marks a value as encrypted, so the migration of plain
text is idempotent and safe on a mixed table. The collection's inventory plugin
(plugins/inventory/fleet.py) decrypts the same format with the same key file.

The key file holds one Fernet key per line: the first encrypts, all of them decrypt (so a
rotation can re-encrypt row by row while both keys are valid). It is read on every use, so
long-running web and worker processes follow a rotation without a restart.
"""
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask_babel import gettext as _

from .db import execute, query

PREFIX = "bf1:"
DEFAULT_KEY_FILE = "/etc/borgfleet/secret.key"

# (table, id column, secret column): every stored secret; add new ones here. NULL means "not set".
SECRET_COLUMNS = [("backup_jobs", "id", "passphrase"),
                  ("notification_settings", "id", "smtp_password"),
                  ("notification_settings", "id", "webhook_secret"),
                  ("notification_settings", "id", "apprise_urls")]


class SecretError(Exception):
    pass


def key_file(cfg):
    return cfg.get("SECRET_KEY_FILE") or DEFAULT_KEY_FILE


def ensure_key(cfg):
    """Create the key file (0600, directory 0700 if new) when missing; True if created."""
    path = key_file(cfg)
    if os.path.exists(path):
        return False
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        # O_EXCL: two processes creating it at once cannot overwrite each other's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise SecretError(_("cannot create the secret key file %(path)s (%(error)s); set BORGFLEET_SECRET_KEY_FILE"
                            " to a path this account may write", path=path, error=e.strerror)) from None
    with os.fdopen(fd, "w") as f:
        f.write(Fernet.generate_key().decode() + "\n")
    return True


def _read_keys(path):
    try:
        with open(path) as f:
            keys = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        raise SecretError(_("secret key file %(path)s is missing (run 'borgfleet-ui db upgrade' to create one,"
                            " or restore it from its backup)", path=path)) from None
    except PermissionError:
        raise SecretError(_("secret key file %(path)s is not readable by this account", path=path)) from None
    if not keys:
        raise SecretError(_("secret key file %(path)s is empty", path=path))
    return keys


def _box(cfg):
    path = key_file(cfg)
    try:
        return MultiFernet([Fernet(k) for k in _read_keys(path)])
    except ValueError:
        raise SecretError(_("secret key file %(path)s does not hold Fernet keys", path=path)) from None


def is_encrypted(value):
    return isinstance(value, str) and value.startswith(PREFIX)


def encrypt(cfg, plain):
    return PREFIX + _box(cfg).encrypt(plain.encode()).decode()


def decrypt(cfg, stored):
    if not is_encrypted(stored):
        raise SecretError(_("value is not encrypted (run 'borgfleet-ui db upgrade')"))
    try:
        return _box(cfg).decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise SecretError(_("cannot decrypt with the key in %(path)s: wrong key file", path=key_file(cfg))) from None


def encrypt_plaintext(cfg, conn):
    """Encrypt every plain-text secret in place; returns how many. Encrypted values must
    decrypt with the current key (a wrong key file stops here instead of mixing keys)."""
    box, n = _box(cfg), 0
    for table, idc, col in SECRET_COLUMNS:
        # Names come from SECRET_COLUMNS above, never from user data.
        for row in query(conn, f"SELECT {idc} AS id, {col} AS v FROM {table} WHERE {col} IS NOT NULL"):
            if is_encrypted(row["v"]):
                try:
                    box.decrypt(row["v"][len(PREFIX):].encode())
                except InvalidToken:
                    raise SecretError(_("%(column)s of id %(id)s does not decrypt with the key in %(path)s:"
                                        " wrong key file", column=f"{table}.{col}", id=row["id"],
                                        path=key_file(cfg))) from None
                continue
            token = PREFIX + box.encrypt(row["v"].encode()).decode()
            # The WHERE on the old value keeps a concurrent edit from being overwritten.
            n += execute(conn, f"UPDATE {table} SET {col}=%s WHERE {idc}=%s AND {col}=%s",
                         (token, row["id"], row["v"]))
    return n


def rotate(cfg, conn):
    """Replace the key: new key first in the file (old ones still decrypt), re-encrypt every
    secret with it, then drop the old keys. Safe to run again after a crash at any step."""
    path = key_file(cfg)
    new = Fernet.generate_key().decode()
    _write_keys(path, [new] + _read_keys(path))
    n = 0
    # A second pass catches a row saved concurrently by a process that encrypted with the old key.
    for _pass in range(3):
        stale = [(t, i, c, r) for t, i, c in SECRET_COLUMNS
                 for r in query(conn, f"SELECT {i} AS id, {c} AS v FROM {t} WHERE {c} IS NOT NULL")
                 if not _opens(new, r["v"])]
        if not stale:
            _write_keys(path, [new])
            return n
        for table, idc, col, row in stale:
            plain = decrypt(cfg, row["v"]) if is_encrypted(row["v"]) else row["v"]
            token = PREFIX + Fernet(new).encrypt(plain.encode()).decode()
            n += execute(conn, f"UPDATE {table} SET {col}=%s WHERE {idc}=%s AND {col}=%s",
                         (token, row["id"], row["v"]))
    raise SecretError(_("secrets kept changing during the rotation; %(path)s keeps the old keys too, run it again",
                        path=path))


def _opens(key, stored):
    try:
        return is_encrypted(stored) and Fernet(key).decrypt(stored[len(PREFIX):].encode()) is not None
    except InvalidToken:
        return False


def _write_keys(path, keys):
    tmp = f"{path}.new"
    if os.path.exists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(k + "\n" for k in keys))
        f.flush()
        os.fsync(f.fileno())
    st = os.stat(path)
    os.chown(tmp, st.st_uid, st.st_gid)   # keep the owner the service runs as
    os.replace(tmp, path)
