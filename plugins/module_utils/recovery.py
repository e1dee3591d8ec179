# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: mounts, processes, sessions and database engines for restore and
instant recovery.

One instant-recovery session = a borg mount of the archive (read-only, lazy) + a rowfs layer over
it (writes go to a sparse delta) + a database engine started on the layer. Each session is a JSON
file under STATE_DIR so that ``absent`` and ``cleanup`` can always find and remove every piece,
even after the engine was killed or a mount died. Every mount and state name carries PREFIX so a
cleanup pass only ever touches ours.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import inspect
import ipaddress
import json
import os
import pwd
import re
import shutil
import signal
import socket
import sys
import time

from ansible_collections.borgfleet.backup.plugins.module_utils import _process
from ansible_collections.borgfleet.backup.plugins.module_utils.mounts import mount_table

MOUNT_ROOT = '/run/borgfleet/mounts'
STATE_DIR = '/var/lib/borgfleet/recovery'
RUN_DIR = '/run/borgfleet/recovery'   # engine sockets: short paths (unix sockets allow ~107 bytes)
PREFIX = 'ir-'
READ_AHEAD_KIB = 4096
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$')


class RecoveryError(Exception):
    def __init__(self, msg, log=''):
        super(RecoveryError, self).__init__(msg)
        self.msg = msg
        self.log = log


def validate_name(name, what='session name'):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RecoveryError('%s %r is not allowed: letters, digits and . _ - (at most 40 characters)'
                            % (what, name))
    return name


def name_from_archive(archive):
    """A session/mount name from an archive name (':' and the like are not wanted in paths)."""
    return re.sub(r'[^A-Za-z0-9._-]', '-', archive)[:40].strip('-.') or 'archive'


# -- mounts ------------------------------------------------------------------------------------

def is_mounted(path):
    return os.path.abspath(path) in mount_table()


def _is_dead(path):
    try:
        os.statvfs(path)  # always answered by the FUSE process; stat() may come from the kernel's cache
    except OSError as e:
        return e.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO)
    return False


def is_stale(path):
    """A FUSE mount whose process is gone (or hung): stat says ENOTCONN."""
    return path in mount_table() and _is_dead(path)


def unmount(path, timeout=10):
    """Unmount a FUSE mount; lazily (-z) when it is busy or dead. True if something was unmounted."""
    if path not in mount_table():
        return False
    deadline = time.time() + timeout
    while True:
        proc = _process.run_command(['fusermount3', '-u', '--', path], env=clean_env(), timeout=timeout)
        if proc.rc == 0 or path not in mount_table():
            return True
        if time.time() >= deadline or _is_dead(path):
            break
        time.sleep(0.2)
    proc = _process.run_command(['fusermount3', '-uz', '--', path], env=clean_env(), timeout=timeout)
    if proc.rc != 0 and path in mount_table():
        raise RecoveryError('cannot unmount %s: %s' % (path, proc.first_error_line()))
    return True


def set_read_ahead(mountpoint, kib=READ_AHEAD_KIB):
    """Raise the kernel's read-ahead on a FUSE mount (128 KiB by default): a sequential reader -
    a redo log, a table scan - then costs the FUSE process one request per MiB (the most one
    request carries), not per 128 KiB. False where the system does not let us (no sysfs, not root)."""
    dev = os.stat(mountpoint).st_dev
    path = '/sys/class/bdi/%d:%d/read_ahead_kb' % (os.major(dev), os.minor(dev))
    try:
        with open(path, 'w') as f:
            f.write('%d\n' % kib)
    except OSError:
        return False
    return True


def mountpoint_for(name):
    return os.path.join(MOUNT_ROOT, validate_name(name, 'mount name'))


def prepare_mountpoint(path):
    """Create the mount point (parents world-traversable: engines run as their own users)."""
    for d in (os.path.dirname(os.path.dirname(path)), os.path.dirname(path)):
        if not os.path.isdir(d):
            os.makedirs(d, 0o755)
            os.chmod(d, 0o755)
    if is_stale(path):
        unmount(path)
    if not os.path.isdir(path):
        os.mkdir(path, 0o755)


def remove_mountpoint(path):
    if path not in mount_table():
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass


# -- processes ---------------------------------------------------------------------------------

def _start_time(pid):
    """Start time of a live (not zombie) process, or None; pid + start time identify it for good."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None
    if fields[0] in ('Z', 'X'):
        return None
    return int(fields[19])


def proc_id(pid):
    """What a state file stores for a process we started."""
    return {'pid': pid, 'start': _start_time(pid)}


def alive(p):
    return bool(p) and p.get('pid') and _start_time(p['pid']) is not None and _start_time(p['pid']) == p.get('start')


def wait_gone(p, timeout):
    deadline = time.time() + timeout
    while alive(p):
        if time.time() >= deadline:
            return False
        time.sleep(0.1)
    return True


def stop_process(p, first=signal.SIGTERM, timeout=60, group=False):
    """Signal, wait, then SIGKILL (the whole process group when ``group``). True if it was running."""
    if not alive(p):
        return False
    try:
        os.kill(p['pid'], first)
    except ProcessLookupError:
        return False
    if not wait_gone(p, timeout):
        try:
            if group:
                os.killpg(p['pid'], signal.SIGKILL)
            else:
                os.kill(p['pid'], signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone(p, 10)
    if group:  # children of a killed postmaster would keep files on the layer open
        try:
            os.killpg(p['pid'], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return True


def clean_env(extra=None):
    """Environment for processes we start: nothing inherited (no borg secrets reach an engine)."""
    return _process.c_locale_env(extra, inherit=False)


def tail(path, lines=25):
    try:
        with open(path, errors='replace') as f:
            return '\n'.join(f.read().splitlines()[-lines:])
    except OSError:
        return ''


# -- rowfs -------------------------------------------------------------------------------------

def rowfs_script():
    """Write rowfs.py to a stable file (the module's own copy vanishes when it exits)."""
    from ansible_collections.borgfleet.backup.plugins.module_utils import rowfs
    source = inspect.getsource(rowfs)
    path = os.path.join(STATE_DIR, 'rowfs.py')
    os.makedirs(STATE_DIR, 0o700, exist_ok=True)
    try:
        with open(path) as f:
            if f.read() == source:
                return path
    except OSError:
        pass
    with open(path + '.tmp', 'w') as f:
        f.write(source)
    os.chmod(path + '.tmp', 0o644)
    os.rename(path + '.tmp', path)
    return path


def fuse_python():
    """A python3 that has pyfuse3: the module's own, or the system one (Debian's python3-pyfuse3)
    when the module runs in a virtualenv."""
    import importlib.util
    if importlib.util.find_spec('pyfuse3') and importlib.util.find_spec('trio'):
        return sys.executable  # known without starting a python
    system = '/usr/bin/python3'
    if _process.run_command([system, '-c', 'import pyfuse3, trio'], env=clean_env(), timeout=60).ok:
        return system
    raise RecoveryError('neither %s nor %s can import pyfuse3: install Debian\'s python3-pyfuse3 on this '
                        'host' % (sys.executable, system))


def start_rowfs(source, delta_dir, mountpoint, log_path, timeout=30):
    """Start rowfs as its own process (new session) and wait until it is mounted."""
    python = fuse_python()
    prepare_mountpoint(mountpoint)
    os.makedirs(delta_dir, 0o700, exist_ok=True)
    with open(log_path, 'ab') as log:
        proc = _process.spawn([python, rowfs_script(), source, delta_dir, mountpoint, '--allow-other'],
                              clean_env(), stdout=log, stderr=_process.STDOUT)
    deadline = time.time() + timeout
    while mountpoint not in mount_table():
        if proc.poll() is not None:
            raise RecoveryError('rowfs exited (rc %s) before mounting %s' % (proc.returncode, mountpoint),
                                log=tail(log_path))
        if time.time() >= deadline:
            proc.kill()
            raise RecoveryError('rowfs did not mount %s within %s s' % (mountpoint, timeout), log=tail(log_path))
        time.sleep(0.05)
    return proc_id(proc.pid)


def delta_bytes(delta_dir):
    """Bytes the writable layer really holds (allocated blocks of the sparse deltas)."""
    total = 0
    try:
        for entry in os.scandir(delta_dir):
            try:
                total += entry.stat(follow_symlinks=False).st_blocks * 512
            except FileNotFoundError:  # rowfs renamed a map's .tmp meanwhile
                pass
    except FileNotFoundError:
        pass
    return total


# -- database engines --------------------------------------------------------------------------

def find_datadirs(root, max_depth=8):
    """[(engine, path)] of database data directories under root, shallowest first."""
    found = []
    root = root.rstrip('/') or '/'
    base_depth = root.count('/')
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath.count('/') - base_depth >= max_depth:
            dirnames[:] = []
        names = set(filenames)
        engine = None
        if 'PG_VERSION' in names and os.path.isfile(os.path.join(dirpath, 'global', 'pg_control')):
            engine = 'postgresql'
        elif 'ibdata1' in names and 'mysql' in dirnames and (
                'aria_log_control' in names or os.path.isdir(os.path.join(dirpath, 'performance_schema'))
                or os.listdir(os.path.join(dirpath, 'mysql'))):
            engine = 'mariadb'
        elif 'WiredTiger' in names and 'storage.bson' in names:
            engine = 'mongodb'
        if engine:
            found.append((engine, dirpath))
            dirnames[:] = []  # nothing of interest inside a data directory
        else:
            dirnames.sort()
    return sorted(found, key=lambda f: (f[1].count('/'), f[1]))


def port_free(address, port):
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((address, port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def pick_port(address, base, taken=()):
    for port in range(base, base + 500):
        if port not in taken and port_free(address, port):
            return port
    raise RecoveryError('no free port in %d-%d on %s' % (base, base + 499, address))


def validate_address(address):
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise RecoveryError('address %r is not an IP address' % address)


def recovery_memory_mb():
    """Cache memory for a recovered engine: a quarter of this host's memory, 128 MiB to 1 GiB."""
    try:
        with open('/proc/meminfo') as f:
            total_kb = int(next(line for line in f if line.startswith('MemTotal:')).split()[1])
    except (OSError, StopIteration, ValueError, IndexError):
        return 128
    return max(128, min(1024, total_kb // 4 // 1024))


class Engine(object):
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
            proc = _process.spawn(self.argv(), clean_env({'HOME': self.run_dir}), stdout=log,
                                  stderr=_process.STDOUT, cwd=self.run_dir, user=self.uid, group=self.gid)
        return proc_id(proc.pid)

    def wait_ready(self, p, timeout):
        """Until a real query answers; fails early when the engine died."""
        deadline = time.time() + timeout
        last = ''
        while True:
            if not alive(p):
                raise RecoveryError('%s exited while starting' % self.name, log=tail(self.log_path))
            if self.worth_querying():
                rc, out, err = self.query(self.ready_query)
                if rc == 0:
                    return out.strip()
                last = err.strip()
            if time.time() >= deadline:
                raise RecoveryError('%s did not answer a query within %s s: %s' % (self.name, timeout, last),
                                    log=tail(self.log_path))
            time.sleep(0.05)

    def _run(self, argv, user=None, env=None):
        done = _process.run_command(argv, env=clean_env(env), cwd=self.run_dir if os.path.isdir(self.run_dir) else '/',
                                    timeout=600, user=self.uid if user else None, group=self.gid if user else None,
                                    secrets=[self.db_password])
        if done.status != 'ok':
            return done.rc or 1, done.out, '%s: %s' % (argv[0], done.first_error_line())
        return done.rc, done.out, done.err

    def query_rows(self, sql, database=None):
        rc, out, err = self.query(sql, database)
        if rc != 0:
            raise RecoveryError('query failed on the recovered %s: %s' % (self.name, err.strip()[-500:]))
        return [line.split('\t') for line in out.splitlines() if line != '']


class PostgreSQL(Engine):
    name = 'postgresql'
    base_port = 55432
    ready_query = 'SELECT count(*) FROM pg_database'
    stop_signal = signal.SIGINT       # fast shutdown: a clean checkpoint, the layer stays usable
    kill_signal = signal.SIGQUIT      # immediate shutdown: the postmaster takes its children along

    def __init__(self, *args, **kwargs):
        super(PostgreSQL, self).__init__(*args, **kwargs)
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
        super(PostgreSQL, self).prepare()
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


class MariaDB(Engine):
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


ENGINES = {'postgresql': PostgreSQL, 'mariadb': MariaDB}


# -- sessions ----------------------------------------------------------------------------------

def state_path(name):
    return os.path.join(STATE_DIR, PREFIX + validate_name(name) + '.json')


def session_dir(name):
    return os.path.join(STATE_DIR, PREFIX + validate_name(name))


def load_session(name):
    try:
        with open(state_path(name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def save_session(session):
    os.makedirs(STATE_DIR, 0o700, exist_ok=True)
    path = state_path(session['name'])
    with open(path + '.tmp', 'w') as f:
        json.dump(session, f, indent=1, sort_keys=True)
    os.rename(path + '.tmp', path)


def list_sessions():
    sessions = []
    if os.path.isdir(STATE_DIR):
        for entry in sorted(os.listdir(STATE_DIR)):
            if entry.startswith(PREFIX) and entry.endswith('.json'):
                with open(os.path.join(STATE_DIR, entry)) as f:
                    sessions.append(json.load(f))
    return sessions


def health(session):
    """What is really there, read from the system rather than trusted from the state file."""
    table = mount_table()
    mounts = {}
    for key in ('archive_mount', 'layer_mount'):
        path = session.get(key)
        mounts[key] = 'missing' if path not in table else ('dead' if _is_dead(path) else 'ok')
    engine_up = alive(session.get('engine_proc'))
    rowfs_up = alive(session.get('rowfs_proc'))
    intact = mounts['archive_mount'] == 'ok' and mounts['layer_mount'] == 'ok' and rowfs_up
    return {'engine_running': engine_up, 'rowfs_running': rowfs_up, 'mounts': mounts, 'intact': intact}


def public(session):
    """A session as modules return it."""
    keys = ('name', 'archive', 'repository', 'engine', 'address', 'port', 'datadir', 'archive_mount',
            'layer_mount', 'socket_dir', 'started_at', 'state')
    out = dict((k, session.get(k)) for k in keys)
    out['pid'] = (session.get('engine_proc') or {}).get('pid')
    out['health'] = health(session)
    out['layer_bytes'] = delta_bytes(session.get('delta_dir') or '')
    return out


def stop_engine(session, immediate=False):
    """Stop the engine (clean shutdown unless ``immediate``). True if it was running."""
    p = session.get('engine_proc')
    cls = ENGINES.get(session.get('engine'))
    if not p or cls is None:
        return False
    first = cls.kill_signal if immediate else cls.stop_signal
    return stop_process(p, first=first, timeout=10 if immediate else 120, group=True)


def teardown(session):
    """Remove every piece of a session, in dependency order; safe on half-built or broken sessions.

    Returns the list of what was removed (for the task result)."""
    removed = []
    if stop_engine(session, immediate=True):
        removed.append('engine')
    layer, archive = session.get('layer_mount'), session.get('archive_mount')
    if layer and unmount(layer):
        removed.append('layer mount')
    if stop_process(session.get('rowfs_proc'), first=signal.SIGTERM, timeout=10):
        removed.append('rowfs')
    if archive and unmount(archive):
        removed.append('archive mount')
    for path in (layer, archive):
        if path:
            remove_mountpoint(path)
    for path in (session.get('delta_dir'), session.get('socket_dir'), session_dir(session['name'])):
        if path and os.path.isdir(path):
            shutil.rmtree(path)
            removed.append(path)
    try:
        os.unlink(state_path(session['name']))
        removed.append('state file')
    except FileNotFoundError:
        pass
    return removed


def orphan_mounts():
    """Our mount points (PREFIX, under MOUNT_ROOT) that no session file references."""
    known = set()
    for s in list_sessions():
        known.update([s.get('archive_mount'), s.get('layer_mount')])
    root = MOUNT_ROOT + '/'
    return sorted(p for p in mount_table() if p.startswith(root + PREFIX) and p not in known)
