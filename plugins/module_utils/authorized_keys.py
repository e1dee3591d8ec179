# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup server's authorized_keys, stated once (private to the collection).

The file holds one forced-command line per client, restricted to that client's own
directories, and temporary grants: a line placed before a client's own line that also lets
it read one more repository (another client's, for a restore onto this client) until an
`expiry-time` sshd enforces itself. sshd uses the first line whose key matches and is not
expired, so a live grant line wins and an expired one falls through to the client's own line.

Grants are recorded in the file, above their line:
    # borgfleet grant: <client> <id> <expires YYYYMMDDHHMMSSZ> <repository path>
    command="borg serve --restrict-to-path <own dirs> --restrict-to-path <granted>",restrict,expiry-time="..." <key>
    # borgfleet client: <client>
    command="borg serve --restrict-to-path <own dirs>",restrict <key>

The pure functions render and parse the text; `edit()` applies a change under an exclusive
lock, so that setup (client lines) and concurrent grants and revocations never lose each other.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import errno
import fcntl
import hashlib
import os
import pwd
import re
import tempfile
import time

from ansible_collections.borgfleet.backup.plugins.module_utils.contract import CLIENT_NAME_RE, ContractError

SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
# base64 body of an OpenSSH public key, and an optional plain comment.
_KEY_BODY_RE = re.compile(r"[A-Za-z0-9+/]+={0,3}\Z")
_KEY_COMMENT_RE = re.compile(r"[A-Za-z0-9@._:+-]*\Z")

HEADER = ("# Managed by borgfleet.backup (role borg_server): local changes are overwritten.\n"
          "# One line per client: borg serve restricted to its own directories. A grant line above a\n"
          "# client's line lets it read one more repository until the grant is revoked or expires.\n")
# The marker above each client's line, and the record of each grant above its grant line.
CLIENT_MARKER = "# borgfleet client: "
GRANT_MARKER = "# borgfleet grant: "
# A client's line exactly as client_line() writes it (no expiry), and a grant's (with one).
CLIENT_LINE_RE = re.compile(
    r'command="borg serve(?P<restrict>(?: --restrict-to-path [^ "]+)+)",restrict (?P<key>\S+ \S+(?: \S+)?)\Z')
_GRANT_LINE_RE = re.compile(
    r'command="borg serve(?P<restrict>(?: --restrict-to-path [^ "]+)+)",restrict,expiry-time="(?P<expires>[0-9]{14}Z)" '
    r'(?P<key>\S+ \S+(?: \S+)?)\Z')
_GRANT_RECORD_RE = re.compile(r"(?P<client>[A-Za-z0-9][A-Za-z0-9._:-]*) (?P<id>[0-9a-f]{16}) (?P<expires>[0-9]{14}Z) "
                              r"(?P<path>(?:/[A-Za-z0-9._:-]+)+)\Z")
# sshd's expiry-time, in UTC: fixed width, so text order is time order.
TIME_FORMAT = "%Y%m%d%H%M%SZ"
MAX_GRANT_HOURS = 7 * 24
# A granted repository path goes into the forced command: <pool>/<client>/<backup>, so pool path
# characters plus those of client names; no '.' or '..' part.
_GRANT_PATH_RE = re.compile(r"(/[A-Za-z0-9._:-]+)+\Z")


def _fail(msg):
    raise ContractError(msg)


# --- keys ---

def key_blob(body):
    """The bytes of a public key's base64 body (b'' if it does not decode)."""
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return b""


def key_fingerprint(key):
    """The SHA256 fingerprint `ssh-keygen -l` shows for a validated public key."""
    digest = hashlib.sha256(key_blob(key.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_id(key):
    """What sshd matches a login against: key type and blob, not the comment."""
    return " ".join(key.split()[:2])


def validate_public_key(key, owner="client"):
    """Return the key as one clean line, or fail: one line, known type, no options."""
    if not isinstance(key, str):
        _fail("%s: public key must be a string, got %r" % (owner, type(key).__name__))
    text = key.strip()
    if not text:
        _fail("%s: public key is empty" % owner)
    if "\n" in text or "\r" in text or "\0" in text:
        _fail("%s: public key must be a single line" % owner)
    fields = text.split()
    if fields[0] not in SSH_KEY_TYPES:
        _fail("%s: public key must start with a key type (%s), not options or %r"
              % (owner, ", ".join(SSH_KEY_TYPES), fields[0][:40]))
    if len(fields) < 2 or not _KEY_BODY_RE.match(fields[1]):
        _fail("%s: public key has no valid base64 body" % owner)
    # The body names its own type first (SSH wire format): a mangled copy fails here, for
    # this client alone, instead of failing ssh-keygen on the server's whole file.
    if not key_blob(fields[1]).startswith(len(fields[0]).to_bytes(4, "big") + fields[0].encode()):
        _fail("%s: public key body is not a %s key" % (owner, fields[0]))
    comment = fields[2:]
    if len(comment) > 1 or (comment and not _KEY_COMMENT_RE.match(comment[0])):
        # A comment with quotes or spaces could smuggle nothing into sshd, but the
        # line is ours: keep it predictable.
        _fail("%s: public key comment must be a single plain word" % owner)
    return " ".join(fields)


# --- lines ---

def client_line(dirs, public_key, expires=None):
    """The forced-command line: borg serve restricted to dirs; with expires, a grant's line."""
    restrict = "".join(" --restrict-to-path %s" % d for d in dirs)
    expiry = ',expiry-time="%s"' % expires if expires else ""
    return 'command="borg serve%s",restrict%s %s' % (restrict, expiry, public_key)


def clients_text(entries):
    """The file for these clients ({client, public_key, client_dirs}; no key = no line), no grant."""
    out = [HEADER]
    for entry in entries:
        if entry.get("public_key"):
            out.append("%s%s\n%s\n" % (CLIENT_MARKER, entry["client"],
                                       client_line(entry["client_dirs"], entry["public_key"])))
    return "".join(out)


def split(text):
    """(lines without grants, grants) of a file: each grant {client, id, expires, path, public_key}.

    A grant counts only as grant_block() writes it: records of one client, then its line holding
    each recorded path; any other shape (a hand edit) is dropped with the line in its place, never
    carried over. Other lines are kept as they are.
    """
    kept, grants, records = [], [], []
    for line in (text or "").splitlines():
        if line.startswith(GRANT_MARKER):
            match = _GRANT_RECORD_RE.match(line[len(GRANT_MARKER):])
            records.append(match.groupdict() if match else None)
            continue
        if records:
            match = _GRANT_LINE_RE.match(line)
            dirs = match.group("restrict").split(" --restrict-to-path ")[1:] if match else []
            if (match and None not in records and len(set(r["client"] for r in records)) == 1
                    and all(r["path"] in dirs for r in records)):
                grants.extend(dict(r, public_key=match.group("key")) for r in records)
                records = []
                continue
            records = []
            if line.strip() and not line.startswith("#"):
                continue  # the line in a broken grant's place goes with its records
        kept.append(line)
    return kept, grants


def own_lines(lines):
    """Client name -> (key, dirs) of the client lines among these lines."""
    own, client = {}, None
    for line in lines:
        if line.startswith(CLIENT_MARKER):
            client = line[len(CLIENT_MARKER):].strip()
            continue
        match = CLIENT_LINE_RE.match(line.strip()) if client else None
        if match and client not in own:
            own[client] = (match.group("key"), match.group("restrict").split(" --restrict-to-path ")[1:])
        client = None
    return own


def grant_block(client, grants, own):
    """The records and the line of one client's live grants: its own directories (when its own
    line has the same key) and the granted repositories, until the last grant expires."""
    key = grants[0]["public_key"]
    dirs = list(own[1]) if own and key_id(own[0]) == key_id(key) else []
    for grant in grants:
        if grant["path"] not in dirs:
            dirs.append(grant["path"])
    records = ["%s%s %s %s %s" % (GRANT_MARKER, client, g["id"], g["expires"], g["path"]) for g in grants]
    return records + [client_line(dirs, key, max(g["expires"] for g in grants))]


def join(lines, grants, now):
    """The file text: these lines with the grants still live at `now`, each client's block right
    above its own marker (sshd reads top down), or at the end for a client without a line."""
    live = {}
    for grant in grants:
        if grant["expires"] > now:
            live.setdefault(grant["client"], []).append(grant)
    own = own_lines(lines)
    out = []
    for line in lines:
        if line.startswith(CLIENT_MARKER):
            client = line[len(CLIENT_MARKER):].strip()
            if client in live:
                out.extend(grant_block(client, live.pop(client), own.get(client)))
        out.append(line)
    for client, client_grants in live.items():
        out.extend(grant_block(client, client_grants, own.get(client)))
    return "".join(line + "\n" for line in out)


def utc(epoch):
    return time.strftime(TIME_FORMAT, time.gmtime(epoch))


def new_grant(lines, grants, client, public_key, paths, hours, now_epoch, grant_id):
    """The grants with one more: `client`'s key may read `paths` for `hours`.

    Refused: a key another client's line or grant holds (sshd would give that client the grant
    too), or a key other than the one of this client's live grants (one line per client)."""
    if not isinstance(client, str) or not CLIENT_NAME_RE.match(client):
        _fail("grant: invalid client name %r" % (client,))
    key = validate_public_key(public_key, "grant for client %r" % client)
    if not paths:
        _fail("grant for client %r: no repository path" % client)
    for path in paths:
        if (not isinstance(path, str) or not _GRANT_PATH_RE.match(path)
                or any(part in (".", "..") for part in path.split("/"))):
            _fail("grant for client %r: repository path %r must be absolute, of letters, digits, "
                  "'/', '.', '_', ':' or '-' only (no '.' or '..' part)" % (client, path))
    if not 0 < hours <= MAX_GRANT_HOURS:
        _fail("grant for client %r: hours must be above 0 and at most %d, got %r" % (client, MAX_GRANT_HOURS, hours))
    now = utc(now_epoch)
    for other, (other_key, _dirs) in own_lines(lines).items():
        if other != client and key_id(other_key) == key_id(key):
            _fail("grant for client %r: its key (%s) is the key of client %r on this server; a grant would "
                  "reach that client too" % (client, key_fingerprint(key), other))
    for grant in grants:
        if grant["expires"] > now and key_id(grant["public_key"]) == key_id(key) and grant["client"] != client:
            _fail("grant for client %r: its key (%s) holds a grant of client %r"
                  % (client, key_fingerprint(key), grant["client"]))
        if grant["expires"] > now and grant["client"] == client and key_id(grant["public_key"]) != key_id(key):
            _fail("grant for client %r: it holds a grant with another key (%s) until %s; revoke it first"
                  % (client, key_fingerprint(grant["public_key"]), grant["expires"]))
    expires = utc(now_epoch + int(hours * 3600))
    added = [{"client": client, "id": grant_id, "expires": expires, "path": path, "public_key": key}
             for path in paths]
    return grants + added, expires


def public_grants(grants, now):
    """The live grants as a result shows them (no key)."""
    return [{k: g[k] for k in ("client", "id", "expires", "path")} for g in grants if g["expires"] > now]


# --- the file ---

def _write(path, text, uid, gid, validate):
    """Replace path with text atomically (0600, uid:gid), after `validate(tmp_path)`."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".authorized_keys.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o600)
            os.fchown(f.fileno(), uid, gid)
            os.fsync(f.fileno())
        validate(tmp)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def edit(path, owner=None, clients=None, grant=None, revoke=None, check_mode=False, validate=None,
         now_epoch=None):
    """Apply one change to the file under an exclusive lock (<path>.lock) and drop expired grants.

    clients: the client entries (setup), which replace every client line; the live grants stay.
    grant: {client, public_key, paths, hours}, added with a new id. revoke: a grant id, removed
    (absent is fine: it may have expired). validate(tmp_path) raises if sshd would not read it.
    Returns {changed, before, after, grant_id, expires, grants}.
    """
    now_epoch = time.time() if now_epoch is None else now_epoch
    now = utc(now_epoch)
    lock = None
    if not check_mode:
        lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        try:
            with open(path) as f:
                before = f.read()
            st = os.stat(path)
        except (IOError, OSError) as err:
            if err.errno != errno.ENOENT:
                raise
            before, st = "", None
        lines, grants = split(before)
        if clients is not None:
            lines = clients_text(clients).splitlines()
        out = {"grant_id": None, "expires": None}
        if grant:
            grant_id = binascii.hexlify(os.urandom(8)).decode()
            grants, expires = new_grant(lines, grants, grant["client"], grant["public_key"], grant["paths"],
                                        grant["hours"], now_epoch, grant_id)
            out.update(grant_id=grant_id, expires=expires)
        if revoke:
            grants = [g for g in grants if g["id"] != revoke]
        after = join(lines, grants, now)
        if owner:
            try:
                pw = pwd.getpwnam(owner)
                uid, gid = pw.pw_uid, pw.pw_gid
            except KeyError:
                if not check_mode:
                    _fail("no user %r to own %s" % (owner, path))
                uid, gid = None, None  # check mode before the user exists: it will change
        else:
            uid, gid = (st.st_uid, st.st_gid) if st else (0, 0)
        changed = after != before or st is None or (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (uid, gid, 0o600)
        if changed and not check_mode:
            _write(path, after, uid, gid, validate or (lambda tmp: None))
        out.update(changed=changed, before=before, after=after, grants=public_grants(grants, now))
        return out
    finally:
        if lock is not None:
            os.close(lock)  # releases the lock
