# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: PostgreSQL - detect (server_facts), the WAL/tablespace layout, connect,
freeze and dump (snapshot, db_dump), recognise and run a recovered data directory (instant_recovery).

Freeze: CHECKPOINT (WAL on the same snapshot), or pg_backup_start/stop in one session. Secrets:
a 0600 libpq passfile named in the connection string; a recovered server's in PGPASSWORD.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import pwd
import re
import shutil
import signal
import time

from ansible_collections.borgfleet.backup.plugins.module_utils.errors import RecoveryError
from ansible_collections.borgfleet.backup.plugins.module_utils.engines.base import (
    DEFAULT_FREEZE_TIMEOUT, QUERY_TIMEOUT, Connection, DatabaseError, Freeze, SecretFile, Session, run)
from ansible_collections.borgfleet.backup.plugins.module_utils.engines import base
from ansible_collections.borgfleet.backup.plugins.module_utils.probes import read_text, to_int


# -- detect ------------------------------------------------------------------------------------

def conf_value(text, key):
    match = re.search(r"^\s*%s\s*=\s*'?([^'#\n]*?)'?\s*(?:#.*)?$" % key, text or '', re.M)
    return match.group(1).strip() if match else None


def _owner(path):
    try:
        return pwd.getpwuid(os.stat(path).st_uid).pw_name
    except (OSError, KeyError):
        return None


def _pid_alive(pidfile):
    text = read_text(pidfile)
    try:
        pid = int(text.split()[0])
    except (AttributeError, IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError as e:
        return e.errno == 1  # EPERM: alive, not ours


def clusters(probe):
    """Clusters from pg_lsclusters --json, else from a scan of /etc/postgresql."""
    result = probe.run(['pg_lsclusters', '--json'])
    if result.ok:
        try:
            rows = json.loads(result.out)
        except ValueError:
            rows = None
        if isinstance(rows, list):
            out = []
            for r in rows:
                owner = None
                try:
                    owner = pwd.getpwuid(int(r.get('owneruid'))).pw_name
                except (TypeError, ValueError, KeyError):
                    pass
                out.append({'version': str(r.get('version')), 'name': r.get('cluster'),
                            'port': to_int(r.get('port')), 'status': 'online' if r.get('running') else 'down',
                            'owner': owner, 'data_directory': r.get('pgdata'),
                            'socket_directory': r.get('socketdir') or '/var/run/postgresql'})
            return out, 'pg_lsclusters'
    out = []
    base = probe.file('/etc/postgresql')
    for version in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        for name in sorted(os.listdir(os.path.join(base, version))):
            conf = read_text(os.path.join(base, version, name, 'postgresql.conf'))
            if conf is None:
                continue
            datadir = conf_value(conf, 'data_directory') or '/var/lib/postgresql/%s/%s' % (version, name)
            socketdir = (conf_value(conf, 'unix_socket_directories') or '/var/run/postgresql').split(',')[0]
            out.append({'version': version, 'name': name, 'port': to_int(conf_value(conf, 'port')) or 5432,
                        'status': 'online' if _pid_alive(os.path.join(datadir, 'postmaster.pid')) else 'down',
                        'owner': _owner(datadir), 'data_directory': datadir, 'socket_directory': socketdir.strip()})
    return out, 'scan'


def detect(probe, storage):
    """What server_facts reports of PostgreSQL on this host (capabilities.postgresql)."""
    found, source = clusters(probe)
    binaries = [p for p in [probe.which('psql'), probe.which('pg_lsclusters')] if p]
    if not found and not binaries:
        return {'installed': False, 'clusters': []}
    for c in found:
        c['peer_auth'] = None
        if c['status'] == 'online' and c['owner']:
            # Peer authentication: the OS user maps to the database role of the same name.
            result = probe.run(['runuser', '-u', c['owner'], '--', 'psql', '-X', '-h', c['socket_directory'],
                                '-p', str(c['port']), '-Atc', 'select 1'])
            c['peer_auth'] = result.ok and result.out.strip() == '1'
            if not c['peer_auth']:
                c['peer_auth_error'] = result.first_error_line()
        if c['data_directory'] and os.path.isdir(c['data_directory']):
            c.update(layout(c['data_directory']))
        c['storage'] = storage.describe(c['data_directory'])
    return {'installed': True, 'source': source, 'clusters': found}


def layout(datadir):
    """Where WAL and tablespaces really live: a snapshot is crash-consistent only if one
    snapshot holds them all."""
    wal = os.path.realpath(os.path.join(datadir, 'pg_wal'))
    tablespaces = []
    tbl = os.path.join(datadir, 'pg_tblspc')
    try:
        for entry in sorted(os.listdir(tbl)):
            tablespaces.append(os.path.realpath(os.path.join(tbl, entry)))
    except OSError:
        pass
    try:
        dev = os.stat(datadir).st_dev
        same = all(os.stat(p).st_dev == dev for p in [wal] + tablespaces)
    except OSError:
        same = None
    return {'wal_directory': wal, 'tablespaces': tablespaces, 'single_filesystem': same}


def is_datadir(dirpath, filenames, dirnames):
    """A PostgreSQL cluster's data directory (for instant recovery's search of an archive)."""
    return 'PG_VERSION' in filenames and os.path.isfile(os.path.join(dirpath, 'global', 'pg_control'))


# -- connect, freeze, dump ---------------------------------------------------------------------

class PostgreSQL(Connection):
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
                self._secret = SecretFile('*:*:*:*:%s\n' % esc)
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
        found = layout(datadir)
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


# -- recover ------------------------------------------------------------------------------------

def recovery_memory_mb():
    """Cache memory for a recovered engine: a quarter of this host's memory, 128 MiB to 1 GiB."""
    try:
        with open('/proc/meminfo') as f:
            total_kb = int(next(line for line in f if line.startswith('MemTotal:')).split()[1])
    except (OSError, StopIteration, ValueError, IndexError):
        return 128
    return max(128, min(1024, total_kb // 4 // 1024))


class Recovered(base.Recovered):
    name = 'postgresql'
    base_port = 55432
    ready_query = 'SELECT count(*) FROM pg_database'
    stop_signal = signal.SIGINT       # fast shutdown: a clean checkpoint, the layer stays usable
    kill_signal = signal.SIGQUIT      # immediate shutdown: the postmaster takes its children along

    def __init__(self, *args, **kwargs):
        super(Recovered, self).__init__(*args, **kwargs)
        with open(os.path.join(self.datadir, 'PG_VERSION')) as f:
            self.version = f.read().strip()
        self.bindir = '/usr/lib/postgresql/%s/bin' % self.version
        if not os.path.exists(os.path.join(self.bindir, 'postgres')):
            raise RecoveryError('the archive holds a PostgreSQL %s cluster but %s/postgres is not installed'
                                % (self.version, self.bindir))
        self.major = int(self.version.split('.')[0])
        self.promote_at_end_of_wal = False

    def stale_files(self):
        return ['postmaster.pid']

    def control(self):
        """pg_controldata of the cluster, as a dict."""
        rc, out, err = self._run([os.path.join(self.bindir, 'pg_controldata'), '-D', self.datadir], user=True,
                                 env={'LC_ALL': 'C', 'LANG': 'C'})
        if rc != 0:
            raise RecoveryError('pg_controldata cannot read the recovered cluster: %s' % err.strip()[-500:])
        return dict((k.strip(), v.strip()) for k, _, v in (line.partition(':') for line in out.splitlines()))

    def prepare(self):
        super(Recovered, self).prepare()
        # Crash recovery ends with a checkpoint the server waits for before it takes a connection:
        # every page recovery dirtied is first written through the layer (7 of 14 s at 3 GB,
        # measured). Started as a standby that promotes itself at the end of its WAL, it replays the
        # same WAL and runs that checkpoint in the background. standby.signal exists from 12,
        # promote_trigger_file until 15; other versions take the plain crash recovery.
        self.promote_at_end_of_wal = (12 <= self.major <= 15
                                      and self.control().get('Database cluster state') != 'shut down')
        if self.promote_at_end_of_wal:
            for path in (os.path.join(self.datadir, 'standby.signal'), self.promote_file):
                open(path, 'w').close()
                os.chown(path, self.uid, self.gid)

    @property
    def promote_file(self):
        return os.path.join(self.run_dir, 'promote')

    def worth_querying(self):
        # postmaster.pid's 8th line is the postmaster's status; 'ready' once it takes connections.
        try:
            with open(os.path.join(self.datadir, 'postmaster.pid')) as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        return len(lines) < 8 or lines[7].strip() == 'ready'

    def argv(self):
        hba = os.path.join(self.run_dir, 'pg_hba.conf')
        ident = os.path.join(self.run_dir, 'pg_ident.conf')
        conf = os.path.join(self.run_dir, 'postgresql.conf')
        with open(hba, 'w') as f:
            # The recovered cluster keeps its own roles and passwords; local connections by peer.
            f.write('local all all peer\nhost all all all md5\n')
        open(ident, 'w').close()
        # Our own (empty) config file: the archived one may point at certificates, paths and
        # preload libraries of the original host. Settings that must hold whatever the cluster's
        # postgresql.auto.conf says go on the command line, which wins over every file.
        open(conf, 'w').close()
        for path in (hba, ident, conf):
            os.chown(path, self.uid, self.gid)
        settings = [
            ('config_file', conf), ('hba_file', hba), ('ident_file', ident),
            ('listen_addresses', self.address), ('port', str(self.port)),
            ('unix_socket_directories', self.run_dir),
            ('archive_mode', 'off'),          # never ship WAL of a recovery copy into production's archive
            ('ssl', 'off'), ('shared_preload_libraries', ''), ('logging_collector', 'off'),
            ('external_pid_file', os.path.join(self.run_dir, 'postgres.pid')),
            ('cluster_name', 'borgfleet-recovery'),
            # Replay keeps every page it restores from the WAL's full-page images; with the 128 MB
            # default a 3 GB database's replay evicted 50 MB through the layer (+0.5 s, measured).
            # Memory is only taken as pages are used; never the huge pages production reserved.
            ('shared_buffers', '%dMB' % recovery_memory_mb()), ('huge_pages', 'off'),
        ]
        if self.major >= 14:
            # Not an open and fsync of every file through the layer before recovery (0.5 s at 3 GB):
            # nothing of a read-only archive needs making durable.
            settings.append(('recovery_init_sync_method', 'syncfs'))
        if self.major >= 15:
            # The WAL prefetcher reads ahead every page a record names; through borg each such read
            # decrypts a whole chunk and holds up the replay's own reads (redo 21 s -> 5 s at 3 GB).
            settings.append(('recovery_prefetch', 'off'))
        if self.promote_at_end_of_wal:
            settings += [
                ('hot_standby', 'off'),       # no query before the promotion: replay must reach the WAL's end
                ('promote_trigger_file', self.promote_file),
                # Whatever postgresql.auto.conf says: a recovery copy never follows production.
                ('primary_conninfo', ''), ('primary_slot_name', ''), ('restore_command', ''),
                ('recovery_target_timeline', 'latest'),
            ]
        argv = [os.path.join(self.bindir, 'postgres'), '-D', self.datadir]
        for key, value in settings:
            argv += ['-c', '%s=%s' % (key, value)]
        return argv

    def query(self, sql, database='postgres'):
        argv = [os.path.join(self.bindir, 'psql'), '-X', '-q', '-A', '-t', '-F', '\t', '-v', 'ON_ERROR_STOP=1',
                '-h', self.run_dir, '-p', str(self.port), '-U', self.db_user or self.user,
                '-d', database or 'postgres', '-c', sql]
        env = {'PGPASSWORD': self.db_password} if self.db_password else None
        return self._run(argv, user=True, env=env)

    def verify(self):
        """Databases, and the row count of the largest table (by size) across them."""
        dbs = [r[0] for r in self.query_rows(
            'SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1')]
        best = None
        for db in dbs:
            rows = self.query_rows(
                "SELECT format('%I.%I', schemaname, relname), pg_total_relation_size(relid) "
                "FROM pg_stat_user_tables ORDER BY 2 DESC LIMIT 1", db)
            if rows and (best is None or int(rows[0][1]) > best[2]):
                best = (db, rows[0][0], int(rows[0][1]))
        result = {'databases': dbs, 'largest_table': None, 'rows': None}
        if best:
            count = self.query_rows('SELECT count(*) FROM %s' % best[1], best[0])  # %I-quoted by the server
            result.update(largest_table='%s:%s' % (best[0], best[1]), rows=int(count[0][0]))
        return result
