# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: what every database engine module builds on.

- ``Connection``: reach a running engine for a backup (client argv, credentials in a 0600 file,
  never argv), ``Freeze`` what a freeze did, ``Session`` a client kept open on a pipe, ``run`` a
  client call with a timeout;
- ``Recovered``: an engine started on a recovered data directory (instant recovery).

Names, users, hosts and sockets are checked by the collection's contract before any tool runs,
so none can be taken for an option (``database: --result-file=/tmp/x``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd
import re
import selectors
import shutil
import tempfile
import time

from ansible_collections.borgfleet.backup.plugins.module_utils import _process
from ansible_collections.borgfleet.backup.plugins.module_utils.errors import CommandError, RecoveryError

DEFAULT_FREEZE_TIMEOUT = 10  # seconds writers may wait for the lock before we give up
QUERY_TIMEOUT = 60


class DatabaseError(CommandError):
    pass


def run(argv, timeout=QUERY_TIMEOUT, env=None, input_text=None):
    """Run argv (no shell); return stdout or raise DatabaseError with stderr."""
    return _process.check_command(argv, error=DatabaseError, timeout=timeout, env=_process.c_locale_env(env),
                                  input_text=input_text)


class Session:
    """One client process kept open on a pipe: statements in, marker lines out.

    Locks such as FLUSH TABLES WITH READ LOCK belong to a session, so the client must stay
    connected between taking and releasing them. If this process dies, the client's stdin
    closes, the client exits and the server drops the lock with the connection."""

    def __init__(self, argv, env=None):
        self.argv = argv
        try:
            self.proc = _process.spawn(argv, _process.c_locale_env(env), stdin=_process.PIPE,
                                       stdout=_process.PIPE, stderr=_process.PIPE, own_session=False)
        except FileNotFoundError:
            raise DatabaseError('%s is not installed' % argv[0], cmd=argv, rc=127)
        self._buf = b''

    def send(self, text):
        try:
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died('the session ended before it could be sent %r' % text.strip()[:80])

    def read_until(self, marker, timeout):
        """Return the output lines before the line ``marker``; None on timeout."""
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                lines = self._buf.split(b'\n')
                for i, line in enumerate(lines[:-1]):
                    if line.decode(errors='replace').strip() == marker:
                        self._buf = b'\n'.join(lines[i + 1:])
                        return [x.decode(errors='replace') for x in lines[:i]]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if not sel.select(left):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise self._died('the session ended while waiting for %s' % marker)
                self._buf += chunk
        finally:
            sel.close()

    def _died(self, what):
        try:
            self.proc.wait(timeout=5)
            err = self.proc.stderr.read().decode(errors='replace')
        except Exception:
            err = ''
        return DatabaseError('%s: %s (rc %s): %s' % (self.argv[0], what, self.proc.returncode, err.strip()[-500:]),
                             cmd=self.argv, rc=self.proc.returncode, stderr=err[-2000:])

    def close(self, timeout=10):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except _process.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


class Freeze:
    """What a freeze did: seconds writers were blocked and when (epoch) it began and ended."""

    def __init__(self, engine, method):
        self.engine = engine
        self.method = method
        self.requested_at = None  # lock asked for (writers may block from here on)
        self.acquired_at = None   # lock held: the snapshot may be taken
        self.released_at = None
        self.extra = {}

    @property
    def window(self):
        if self.requested_at is None or self.released_at is None:
            return None
        return round(self.released_at - self.requested_at, 3)

    def as_dict(self):
        return dict(engine=self.engine, method=self.method, window=self.window,
                    requested_at=self.requested_at, acquired_at=self.acquired_at,
                    released_at=self.released_at)


SECRET_PREFIX = 'borgfleet-db-'


def sweep_stale_secrets():
    """Remove credential files of runs that were killed (their pid, in the name, is gone)."""
    tmp = tempfile.gettempdir()
    for entry in os.listdir(tmp):
        match = re.match(r'^%s(\d+)-' % SECRET_PREFIX, entry)
        if match and not os.path.exists('/proc/%s' % match.group(1)):
            shutil.rmtree(os.path.join(tmp, entry), ignore_errors=True)


class SecretFile:
    """A 0600 file in a private 0700 directory, removed on exit (or by the next run's sweep)."""

    def __init__(self, content):
        self.dir = tempfile.mkdtemp(prefix='%s%d-' % (SECRET_PREFIX, os.getpid()))
        os.chmod(self.dir, 0o700)
        self.path = os.path.join(self.dir, 'secret')
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(content)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Connection:
    """How to reach a running engine for a backup: a client, its credentials (never on argv)."""

    name = None

    def __init__(self, login_user=None, login_password=None, login_host=None, login_port=None,
                 login_unix_socket=None, defaults_file=None, os_user=None, database=None, binaries=None):
        self.login_user = login_user
        self.login_password = login_password
        self.login_host = login_host
        self.login_port = login_port
        self.login_unix_socket = login_unix_socket
        self.defaults_file = defaults_file
        self.os_user = os_user
        self.database = database
        self.binaries = binaries or {}
        self._secret = None

    def close(self):
        if self._secret:
            self._secret.remove()
            self._secret = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def binary(self, *candidates):
        for name in candidates:
            if name in self.binaries:
                return self.binaries[name]
        for name in candidates:
            if shutil.which(name):
                return shutil.which(name)
        return candidates[0]

    def as_os_user(self, argv):
        # Peer authentication (PostgreSQL) needs the client to run as the database's OS user.
        # setpriv, not runuser: borg 1.2 drops every '--' of a --content-from-command argv,
        # and runuser would then take the dump tool's options for its own.
        if self.os_user and self.os_user != 'root':
            return ['setpriv', '--reuid=%s' % self.os_user, '--regid=%s' % self.os_user, '--init-groups'] + argv
        return argv


class Recovered(object):
    """An engine started on a recovered data directory (the rowfs layer over a borg mount): its
    own run directory, port and address, never the original host's configuration."""

    name = None
    base_port = None

    def __init__(self, datadir, run_dir, log_path, port, address, db_user=None, db_password=None):
        self.datadir = datadir
        self.run_dir = run_dir
        self.log_path = log_path
        self.port = port
        self.address = address
        st = os.stat(datadir)
        self.uid, self.gid = st.st_uid, st.st_gid
        try:
            self.user = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            raise RecoveryError('the data directory is owned by uid %d, which has no account here: create '
                                'the engine\'s user (same uid) first' % self.uid)
        self.db_user = db_user
        self.db_password = db_password

    def prepare(self):
        """Drop stale pid/lock files of the backed-up server (in the layer only)."""
        for name in self.stale_files():
            path = os.path.join(self.datadir, name)
            if os.path.lexists(path) and not os.path.isdir(path):
                os.unlink(path)
        os.makedirs(self.run_dir, 0o700, exist_ok=True)
        os.chown(self.run_dir, self.uid, self.gid)

    def worth_querying(self):
        """Cheap hint that the engine may answer now (saves a client start per poll)."""
        return True

    def start(self):
        self.prepare()
        with open(self.log_path, 'ab') as log:
            proc = _process.spawn(self.argv(), _process.clean_env({'HOME': self.run_dir}),
                                  stdout=log, stderr=_process.STDOUT, cwd=self.run_dir, user=self.uid, group=self.gid)
        return _process.proc_id(proc.pid)

    def wait_ready(self, p, timeout):
        """Until a real query answers; fails early when the engine died."""
        deadline = time.time() + timeout
        last = ''
        while True:
            if not _process.alive(p):
                raise RecoveryError('%s exited while starting' % self.name, log=_process.tail(self.log_path))
            if self.worth_querying():
                rc, out, err = self.query(self.ready_query)
                if rc == 0:
                    return out.strip()
                last = err.strip()
            if time.time() >= deadline:
                raise RecoveryError('%s did not answer a query within %s s: %s' % (self.name, timeout, last),
                                    log=_process.tail(self.log_path))
            time.sleep(0.05)

    def _run(self, argv, user=None, env=None):
        done = _process.run_command(argv, env=_process.clean_env(env), timeout=600,
                                    cwd=self.run_dir if os.path.isdir(self.run_dir) else '/',
                                    user=self.uid if user else None, group=self.gid if user else None,
                                    secrets=[self.db_password])
        if done.status != 'ok':
            return done.rc or 1, done.out, '%s: %s' % (argv[0], done.first_error_line())
        return done.rc, done.out, done.err

    def query_rows(self, sql, database=None):
        rc, out, err = self.query(sql, database)
        if rc != 0:
            raise RecoveryError('query failed on the recovered %s: %s' % (self.name, err.strip()[-500:]))
        return [line.split('\t') for line in out.splitlines() if line != '']
