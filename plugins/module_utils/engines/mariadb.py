# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: MariaDB and MySQL - detect (server_facts), connect, freeze and dump
(snapshot, db_dump), recognise and run a recovered data directory (instant_recovery).

Freeze: FLUSH TABLES WITH READ LOCK held by ONE client session kept open on a pipe. Secrets: a
0600 ``--defaults-extra-file``; a recovered server's password in MYSQL_PWD, never argv.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import signal
import time

from ansible_collections.borgfleet.backup.plugins.module_utils.engines.base import (
    DEFAULT_FREEZE_TIMEOUT, QUERY_TIMEOUT, Connection, DatabaseError, Freeze, SecretFile, Session, run)
from ansible_collections.borgfleet.backup.plugins.module_utils.engines import base
from ansible_collections.borgfleet.backup.plugins.module_utils.probes import search, to_int, unix_socket_answers


# -- detect ------------------------------------------------------------------------------------

def parse_my_print_defaults(text):
    out = {}
    for line in (text or '').splitlines():
        match = re.match(r'^--([\w-]+)=(.*)$', line.strip())
        if match:
            out[match.group(1).replace('-', '_')] = match.group(2)
    return out


MYSQL_SOCKETS = ('/run/mysqld/mysqld.sock', '/var/run/mysqld/mysqld.sock', '/var/lib/mysql/mysql.sock',
                 '/tmp/mysql.sock')


def detect(probe, storage):
    """What server_facts reports of MariaDB/MySQL on this host (capabilities.mysql)."""
    server = probe.which('mariadbd') or probe.which('mysqld')
    client = probe.which('mariadb') or probe.which('mysql')
    if not server and not client:
        return {'installed': False}
    out = {'installed': True, 'server_installed': bool(server), 'client_installed': bool(client)}
    version_text = ''
    if server:
        version_text = probe.run([os.path.basename(server), '--version']).out
    if not version_text and client:
        version_text = probe.run([os.path.basename(client), '--version']).out
    out['flavor'] = 'mariadb' if 'mariadb' in version_text.lower() else ('mysql' if version_text else None)
    out['version'] = search(version_text, r'(?:Distrib|Ver)\s+(\d+\.\d+\.\d+)')
    defaults = parse_my_print_defaults(probe.run(['my_print_defaults', '--mysqld']).out)
    sock = defaults.get('socket') or next((s for s in MYSQL_SOCKETS if os.path.exists(s)), MYSQL_SOCKETS[0])
    out['socket'] = sock
    out['running'] = unix_socket_answers(sock)
    out['port'] = to_int(defaults.get('port')) or 3306

    auth = {'socket': False, 'debian_cnf': None}
    working = None
    if client and out['running']:
        # Socket authentication as root, without any option file that could hold a password.
        base = [os.path.basename(client), '--no-defaults', '--protocol=socket', '--socket=' + sock, '--user=root']
        auth['socket'], error = _select1(probe, base)
        if auth['socket']:
            working = base
        else:
            auth['socket_error'] = error
    cnf = probe.file('/etc/mysql/debian.cnf')
    if os.path.exists(cnf):
        auth['debian_cnf'] = False
        if client:
            # --defaults-file must come first; the password stays in the file.
            base = [os.path.basename(client), '--defaults-file=' + cnf]
            auth['debian_cnf'], error = _select1(probe, base)
            if auth['debian_cnf']:
                working = working or base
            else:
                auth['debian_cnf_error'] = error
    auth['method'] = 'socket' if auth['socket'] else ('debian_cnf' if auth['debian_cnf'] else None)
    out['auth'] = auth

    datadir = None
    if working:
        result = probe.run(working + ['--batch', '--skip-column-names', '-e', 'SELECT @@datadir, VERSION()'])
        if result.ok and result.out.strip():
            fields = result.out.strip().split('\t')
            datadir = fields[0]
            out['server_version'] = fields[1] if len(fields) > 1 else None
    datadir = datadir or defaults.get('datadir') or ('/var/lib/mysql' if os.path.isdir('/var/lib/mysql') else None)
    out['datadir'] = datadir.rstrip('/') if datadir else None
    out['storage'] = storage.describe(out['datadir'])
    return out


def _select1(probe, base):
    """(works, error line): a real query, not just a connection."""
    result = probe.run(base + ['--batch', '--skip-column-names', '-e', 'SELECT 1'])
    if result.ok and result.out.strip() == '1':
        return True, None
    return False, result.first_error_line()


def is_datadir(dirpath, filenames, dirnames):
    """A MariaDB/MySQL data directory (for instant recovery's search of an archive)."""
    return 'ibdata1' in filenames and 'mysql' in dirnames and (
        'aria_log_control' in filenames or os.path.isdir(os.path.join(dirpath, 'performance_schema'))
        or bool(os.listdir(os.path.join(dirpath, 'mysql'))))


# -- connect, freeze, dump ---------------------------------------------------------------------

def _quote(value):
    return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')


class MariaDB(Connection):
    name = 'mariadb'

    def _defaults(self):
        """--defaults-extra-file (must be the first option) carrying the password, if any."""
        if self.login_password is None:
            return ['--defaults-extra-file=%s' % self.defaults_file] if self.defaults_file else []
        if self._secret is None:
            self._secret = SecretFile('[client]\npassword=%s\n' % _quote(self.login_password))
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
        return _Freeze(self, timeout)

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


class _Freeze(Freeze):
    def __init__(self, engine, timeout):
        super(_Freeze, self).__init__(engine.name, 'flush_tables_with_read_lock')
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


# -- recover ------------------------------------------------------------------------------------

class Recovered(base.Recovered):
    name = 'mariadb'
    base_port = 53306
    ready_query = 'SELECT COUNT(*) FROM information_schema.SCHEMATA'
    stop_signal = signal.SIGTERM
    kill_signal = signal.SIGKILL

    def stale_files(self):
        return [n for n in os.listdir(self.datadir) if n.endswith('.pid')] + ['mysql.sock', 'mysqld.sock']

    @property
    def socket(self):
        return os.path.join(self.run_dir, 'mysqld.sock')

    def argv(self):
        argv = ['/usr/sbin/mariadbd', '--no-defaults',  # the original host's my.cnf is not ours to use
                '--datadir=%s' % self.datadir, '--port=%d' % self.port, '--bind-address=%s' % self.address,
                '--socket=%s' % self.socket, '--pid-file=%s' % os.path.join(self.run_dir, 'mariadbd.pid'),
                '--tmpdir=%s' % self.run_dir, '--skip-slave-start', '--log-error=']
        redo = os.path.join(self.datadir, 'ib_logfile0')
        if os.path.exists(redo):
            # Same redo log size as the archive: a different size makes InnoDB rewrite the whole
            # log into the layer.
            argv.append('--innodb-log-file-size=%d' % os.path.getsize(redo))
        return argv

    def query(self, sql, database=None):
        argv = ['mariadb', '--no-defaults', '--socket=%s' % self.socket, '-u', self.db_user or 'root',
                '--batch', '--skip-column-names', '-e', sql]
        if database:
            argv += ['--database=%s' % database]
        # Password in the environment, never argv; root@localhost authenticates by unix socket.
        env = {'MYSQL_PWD': self.db_password} if self.db_password else None
        return self._run(argv, env=env)

    def verify(self):
        dbs = [r[0] for r in self.query_rows('SHOW DATABASES')]
        rows = self.query_rows(
            "SELECT table_schema, table_name FROM information_schema.TABLES WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') "
            "ORDER BY data_length + index_length DESC, table_rows DESC LIMIT 1")
        result = {'databases': dbs, 'largest_table': None, 'rows': None}
        if rows:
            schema, table = rows[0]
            quoted = '`%s`.`%s`' % (schema.replace('`', '``'), table.replace('`', '``'))
            count = self.query_rows('SELECT COUNT(*) FROM %s' % quoted)
            result.update(largest_table='%s.%s' % (schema, table), rows=int(count[0][0]))
        return result
