# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: talk to the database engines for consistent backups.

Three jobs, one class per engine:
- ``freeze()``: a context manager that quiesces the engine for the few seconds a storage
  snapshot takes (MariaDB/MySQL: FLUSH TABLES WITH READ LOCK held by ONE client session kept
  open on a pipe; PostgreSQL: CHECKPOINT, or pg_backup_start/stop in one session; MongoDB:
  fsyncLock/fsyncUnlock) and records how long writers were blocked (``window``).
- ``datadir()`` and friends: where the engine keeps its files.
- ``dump_command()``: the argv of a consistent logical dump, streamed by borg itself.

Names, users, hosts and sockets are checked by the collection's contract before any tool runs,
so none can be taken for an option (``database: --result-file=/tmp/x``). Secrets never reach argv: MariaDB reads a 0600 ``--defaults-extra-file``; libpq a 0600
passfile named in the connection string. Every client runs with a timeout.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import re
import selectors
import shutil
import tempfile
import time

from ansible_collections.borgfleet.backup.plugins.module_utils import _process
from ansible_collections.borgfleet.backup.plugins.module_utils.engines import postgresql
from ansible_collections.borgfleet.backup.plugins.module_utils.contract import ContractError, check_database_settings
from ansible_collections.borgfleet.backup.plugins.module_utils.errors import CommandError

ENGINES = ('mariadb', 'mysql', 'postgresql', 'mongodb')
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


class _SecretFile:
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


def _mysql_quote(value):
    return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')


class Engine:
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


class MariaDB(Engine):
    name = 'mariadb'

    def _defaults(self):
        """--defaults-extra-file (must be the first option) carrying the password, if any."""
        if self.login_password is None:
            return ['--defaults-extra-file=%s' % self.defaults_file] if self.defaults_file else []
        if self._secret is None:
            self._secret = _SecretFile('[client]\npassword=%s\n' % _mysql_quote(self.login_password))
        opts = ['--defaults-extra-file=%s' % self._secret.path]
        return opts

    def _connection(self):
        opts = []
        if self.login_unix_socket:
            opts.append('--socket=%s' % self.login_unix_socket)
        if self.login_host:
            opts.append('--host=%s' % self.login_host)
        if self.login_port:
            opts.append('--port=%d' % int(self.login_port))
        if self.login_user:
            opts.append('--user=%s' % self.login_user)
        if self.login_password is None and self.defaults_file and not os.path.exists(self.defaults_file):
            raise DatabaseError('defaults file %s does not exist' % self.defaults_file)
        return opts

    def client_argv(self):
        return ([self.binary('mariadb', 'mysql')] + self._defaults() + self._connection()
                + ['--batch', '--skip-column-names', '--unbuffered'])

    def query(self, sql, timeout=QUERY_TIMEOUT):
        return run(self.client_argv() + ['--execute', sql], timeout=timeout)

    def datadir(self):
        return self.query('SELECT @@datadir').strip().rstrip('/')

    def extra_dirs(self):
        """InnoDB files an admin moved out of the datadir: they must be in the same snapshot."""
        out = self.query("SELECT @@innodb_data_home_dir, @@innodb_log_group_home_dir, @@innodb_undo_directory")
        dirs = []
        for value in out.strip().split('\t'):
            if value and value not in ('NULL', './') and value.startswith('/'):
                dirs.append(value.rstrip('/'))
        return dirs

    def freeze(self, timeout=DEFAULT_FREEZE_TIMEOUT):
        return _MariaDBFreeze(self, timeout)

    def dump_command(self):
        argv = [self.binary('mariadb-dump', 'mysqldump')] + self._defaults() + self._connection()
        # --single-transaction: a consistent InnoDB view without locking writers.
        argv += ['--single-transaction', '--routines', '--events', '--triggers', '--hex-blob',
                 '--default-character-set=utf8mb4']
        if self.database:
            # A positional argument: borg 1.2 drops a '--' inside a --content-from-command argv, so
            # the name itself must never look like an option (the contract refuses a leading '-').
            if self.database.startswith('-'):
                raise DatabaseError('database %r is not valid: it starts with "-"' % self.database)
            argv += ['--databases', self.database]
        else:
            argv.append('--all-databases')
        return argv


class _MariaDBFreeze(Freeze):
    def __init__(self, engine, timeout):
        super(_MariaDBFreeze, self).__init__(engine.name, 'flush_tables_with_read_lock')
        self.db = engine
        self.timeout = timeout
        self.session = None

    def __enter__(self):
        self.session = Session(self.db.client_argv())
        try:
            self.session.send("SELECT CONNECTION_ID();\nSELECT 'borgfleet-id';\n")
            lines = self.session.read_until('borgfleet-id', QUERY_TIMEOUT)
            if not lines:
                raise DatabaseError('could not open a session to %s' % self.db.name)
            connection_id = int(lines[-1].strip())
            # lock_wait_timeout bounds the wait inside the server; our own deadline below also
            # covers FTWRL waiting for a long query, by killing the session from another one.
            self.requested_at = time.time()
            self.session.send("SET SESSION lock_wait_timeout=%d;\nFLUSH TABLES WITH READ LOCK;\n"
                              "SELECT 'borgfleet-frozen';\n" % max(1, int(self.timeout)))
            if self.session.read_until('borgfleet-frozen', self.timeout + 1) is None:
                self._abort(connection_id)
                raise DatabaseError('FLUSH TABLES WITH READ LOCK did not get the lock within %s s '
                                    '(a long query or lock?); aborted so writers are not blocked'
                                    % self.timeout)
            self.acquired_at = time.time()
        except BaseException:
            self.released_at = time.time()
            self.session.proc.kill()
            self.session.close()
            raise
        return self

    def _abort(self, connection_id):
        try:
            self.db.query('KILL %d' % connection_id, timeout=10)
        except DatabaseError:
            pass  # the session is killed below; closing it releases the lock anyway
        self.session.proc.kill()

    def __exit__(self, *exc):
        try:
            self.session.send("UNLOCK TABLES;\nSELECT 'borgfleet-thawed';\n")
            self.session.read_until('borgfleet-thawed', 10)
        except DatabaseError:
            pass  # the session is closed below, which releases the lock too
        finally:
            self.session.close()
            self.released_at = time.time()
        return False


class PostgreSQL(Engine):
    name = 'postgresql'

    def conninfo(self, dbname=None):
        """A libpq connection string; the password only through a 0600 passfile."""
        parts = []

        def add(key, value):
            if value is not None and value != '':
                parts.append("%s='%s'" % (key, str(value).replace('\\', '\\\\').replace("'", "\\'")))

        add('host', self.login_unix_socket or self.login_host)
        add('port', self.login_port)
        add('user', self.login_user)
        add('dbname', dbname or self.database or 'postgres')
        add('connect_timeout', 15)
        if self.login_password is not None:
            if self._secret is None:
                esc = self.login_password.replace('\\', '\\\\').replace(':', '\\:')
                self._secret = _SecretFile('*:*:*:*:%s\n' % esc)
                if self.os_user and self.os_user != 'root':
                    shutil.chown(self._secret.dir, self.os_user)
                    shutil.chown(self._secret.path, self.os_user)
            add('passfile', self._secret.path)
        return ' '.join(parts)

    def psql_argv(self, dbname=None):
        return self.as_os_user([self.binary('psql'), '--no-psqlrc', '--quiet', '--no-align', '--tuples-only',
                                '--set', 'ON_ERROR_STOP=1', '--dbname', self.conninfo(dbname)])

    def query(self, sql, timeout=QUERY_TIMEOUT):
        return run(self.psql_argv() + ['--command', sql], timeout=timeout)

    def datadir(self):
        return self.query('SHOW data_directory').strip().rstrip('/')

    def version_num(self):
        return int(self.query('SHOW server_version_num').strip())

    def extra_dirs(self):
        """pg_wal and tablespaces living outside the data directory (symlink targets)."""
        datadir = self.datadir()
        found = postgresql.layout(datadir)
        wal_outside = os.path.islink(os.path.join(datadir, 'pg_wal'))
        return ([found['wal_directory']] if wal_outside else []) + found['tablespaces']

    def freeze(self, timeout=DEFAULT_FREEZE_TIMEOUT, mode='checkpoint'):
        if mode == 'backup':
            return _PgBackupFreeze(self, timeout)
        return _PgCheckpointFreeze(self, timeout)

    def dump_command(self):
        # Custom format: compressed by pg_dump, restorable per table with pg_restore.
        argv = [self.binary('pg_dump'), '--format=custom', '--dbname', self.conninfo()]
        return self.as_os_user(argv)

    def dump_all_command(self):
        # Plain SQL of every database plus roles and tablespaces (what pg_dump leaves out).
        return self.as_os_user([self.binary('pg_dumpall'), '--dbname', self.conninfo()])


class _PgCheckpointFreeze(Freeze):
    """WAL on the same snapshot as the data: an atomic snapshot is crash consistent and
    PostgreSQL replays WAL on start. CHECKPOINT first keeps that replay short. Writers are
    never blocked, so the window is the CHECKPOINT only."""

    def __init__(self, engine, timeout):
        super(_PgCheckpointFreeze, self).__init__(engine.name, 'checkpoint')
        self.db = engine
        self.timeout = timeout

    def __enter__(self):
        self.requested_at = time.time()
        self.db.query('CHECKPOINT', timeout=max(QUERY_TIMEOUT, self.timeout))
        self.acquired_at = time.time()
        self.released_at = self.acquired_at  # nothing is held during the snapshot itself
        return self

    def __exit__(self, *exc):
        return False


class _PgBackupFreeze(Freeze):
    """pg_backup_start/stop in one session (non-exclusive backup). After the snapshot, the
    backup_label (and tablespace_map) returned by stop must be written into the copy
    (``files``), and so must the WAL segments from start to stop (``wal_range``, names): the
    snapshot was taken before the stop, so it lacks the end-of-backup record recovery needs."""

    def __init__(self, engine, timeout):
        super(_PgBackupFreeze, self).__init__(engine.name, 'backup_start_stop')
        self.db = engine
        self.timeout = timeout
        self.session = None
        self.files = {}
        self.wal_range = None

    def __enter__(self):
        v15 = self.db.version_num() >= 150000
        # labelfile and spcmapfile span lines: base64 keeps each on one output line.
        self.stop_sql = ('SELECT translate(encode(convert_to(labelfile, \'UTF8\'), \'base64\'), E\'\\n\', \'\'), '
                         'translate(encode(convert_to(coalesce(spcmapfile, \'\'), \'UTF8\'), \'base64\'), '
                         'E\'\\n\', \'\'), pg_walfile_name(lsn) FROM %s;\n'
                         % ('pg_backup_stop(true)' if v15 else 'pg_stop_backup(false, true)'))
        start = "pg_backup_start('borgfleet', true)" if v15 else "pg_start_backup('borgfleet', true, false)"
        self.session = Session(self.db.psql_argv())
        self.requested_at = time.time()
        try:
            self.session.send("SELECT %s;\n\\echo borgfleet-started\n" % start)
            if self.session.read_until('borgfleet-started', max(QUERY_TIMEOUT, self.timeout)) is None:
                raise DatabaseError('pg_backup_start did not return in time')
        except BaseException:
            self.session.proc.kill()
            self.session.close()
            self.released_at = time.time()
            raise
        self.acquired_at = time.time()
        return self

    def __exit__(self, *exc):
        try:
            self.session.send(self.stop_sql + "\\echo borgfleet-stopped\n")
            lines = self.session.read_until('borgfleet-stopped', QUERY_TIMEOUT)
            if lines is None:
                raise DatabaseError('pg_backup_stop did not return in time')
            label, spcmap, stop_wal = [x for x in lines if x.strip()][-1].split('|')
            self.files['backup_label'] = base64.b64decode(label).decode()
            if spcmap.strip():
                self.files['tablespace_map'] = base64.b64decode(spcmap).decode()
            start = re.search(r'START WAL LOCATION: .* \(file ([0-9A-F]{24})\)', self.files['backup_label'])
            self.wal_range = (start.group(1), stop_wal.strip())
        finally:
            self.session.close()
            self.released_at = time.time()
        return False


class MongoDB(Engine):
    """fsyncLock is server-wide and survives the session, so it is set and cleared by two
    short calls; a leftover lock is cleared by the cleanup pass (``unlock``). Password auth is
    not supported here (mongosh only takes it on argv or in a URI): use local access."""

    name = 'mongodb'

    def _argv(self, script):
        argv = [self.binary('mongosh', 'mongo'), '--quiet']
        if self.login_host:
            argv.append('--host=%s' % self.login_host)
        if self.login_port:
            argv.append('--port=%d' % int(self.login_port))
        return argv + ['--eval', script]

    def query(self, script, timeout=QUERY_TIMEOUT):
        return run(self._argv(script), timeout=timeout)

    def datadir(self):
        out = self.query('print(db.adminCommand({getCmdLineOpts: 1}).parsed.storage.dbPath)')
        return out.strip().splitlines()[-1].rstrip('/')

    def extra_dirs(self):
        return []

    def freeze(self, timeout=DEFAULT_FREEZE_TIMEOUT):
        return _MongoFreeze(self, timeout)

    def unlock(self):
        return self.query('db.fsyncUnlock()', timeout=30)

    def dump_command(self):
        argv = [self.binary('mongodump'), '--archive', '--gzip']
        # name=value: a value can never be read as an option of its own
        if self.login_host:
            argv.append('--host=%s' % self.login_host)
        if self.login_port:
            argv.append('--port=%d' % int(self.login_port))
        if self.database:
            argv.append('--db=%s' % self.database)
        return argv


class _MongoFreeze(Freeze):
    def __init__(self, engine, timeout):
        super(_MongoFreeze, self).__init__(engine.name, 'fsync_lock')
        self.db = engine
        self.timeout = timeout

    def __enter__(self):
        self.requested_at = time.time()
        try:
            self.db.query('db.fsyncLock()', timeout=self.timeout)
        except DatabaseError:
            self.db.unlock()
            self.released_at = time.time()
            raise
        self.acquired_at = time.time()
        return self

    def __exit__(self, *exc):
        try:
            self.db.unlock()
        finally:
            self.released_at = time.time()
        return False


def check_settings(settings):
    """The contract's verdict on connection settings, as a DatabaseError (nothing has run yet)."""
    try:
        check_database_settings(settings)
    except ContractError as err:
        raise DatabaseError(str(err))


def engine_for(name, **params):
    classes = {'mariadb': MariaDB, 'mysql': MariaDB, 'postgresql': PostgreSQL, 'mongodb': MongoDB}
    if name not in classes:
        raise DatabaseError('unknown database engine %r (known: %s)' % (name, ', '.join(ENGINES)))
    check_settings(params)
    engine = classes[name](**params)
    engine.name = name
    return engine


def connection_argument_spec():
    """Options shared by the snapshot and db_dump modules to reach one database engine."""
    return dict(
        engine=dict(type='str', required=True, choices=list(ENGINES)),
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True),
        login_host=dict(type='str'),
        login_port=dict(type='int'),
        login_unix_socket=dict(type='str'),
        defaults_file=dict(type='path'),
        os_user=dict(type='str'),
        database=dict(type='str'),
    )


def engine_from_params(params):
    check_settings(params)  # the module's own options too (datadir, lvm_snapshot_size ...)
    sweep_stale_secrets()
    keys = ('login_user', 'login_password', 'login_host', 'login_port', 'login_unix_socket', 'defaults_file',
            'os_user', 'database')
    kwargs = dict((k, params.get(k)) for k in keys)
    if params['engine'] == 'postgresql' and not kwargs['os_user'] and os.geteuid() == 0 \
            and kwargs['login_password'] is None:
        kwargs['os_user'] = 'postgres'  # peer authentication, the Debian default
    return engine_for(params['engine'], **kwargs)
