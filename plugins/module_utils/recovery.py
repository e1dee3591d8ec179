# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: mounts, rowfs and sessions for restore and instant recovery.

What is specific to an engine (its data directory, how it starts, answers and stops) is in
module_utils/engines/<engine>.py (``Recovered``); ``ENGINES`` names those instant recovery starts.

One instant-recovery session = a frozen copy of a local repository (hard links, module_utils/frozen.py:
the session holds no lock of the repository) + a borg mount of the archive from it (read-only, lazy) + a rowfs layer over
it (writes go to a sparse delta) + a database engine started on the layer. Each session is a JSON
file under STATE_DIR so that ``absent`` and ``cleanup`` can always find and remove every piece,
even after the engine was killed or a mount died. Every mount and state name carries PREFIX so a
cleanup pass only ever touches ours.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import sys
import time

from ansible_collections.borgfleet.backup.plugins.module_utils import _process, engines, frozen
from ansible_collections.borgfleet.backup.plugins.module_utils._process import alive
from ansible_collections.borgfleet.backup.plugins.module_utils.errors import RecoveryError
from ansible_collections.borgfleet.backup.plugins.module_utils.mounts import mount_table

MOUNT_ROOT = '/run/borgfleet/mounts'
STATE_DIR = '/var/lib/borgfleet/recovery'
ROWFS_PATH = '/usr/local/lib/borgfleet/rowfs.py'  # put there by plugins/action/instant_recovery.py
RUN_DIR = '/run/borgfleet/recovery'   # engine sockets: short paths (unix sockets allow ~107 bytes)
PREFIX = 'ir-'
READ_AHEAD_KIB = 4096
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$')


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
        proc = _process.run_command(['fusermount3', '-u', '--', path], env=_process.clean_env(), timeout=timeout)
        if proc.rc == 0 or path not in mount_table():
            return True
        if time.time() >= deadline or _is_dead(path):
            break
        time.sleep(0.2)
    proc = _process.run_command(['fusermount3', '-uz', '--', path], env=_process.clean_env(), timeout=timeout)
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


# -- rowfs -------------------------------------------------------------------------------------

def rowfs_script():
    """Where rowfs is on this host: the module's action plugin puts the collection's
    plugins/module_utils/rowfs.py there before every started session."""
    if not os.path.isfile(ROWFS_PATH):
        raise RecoveryError('rowfs is not on this host (%s): run instant_recovery as an Ansible task of the '
                            'borgfleet.backup collection, whose action plugin copies it there' % ROWFS_PATH)
    return ROWFS_PATH


def fuse_python():
    """A python3 that has pyfuse3: the module's own, or the system one (Debian's python3-pyfuse3)
    when the module runs in a virtualenv."""
    import importlib.util
    if importlib.util.find_spec('pyfuse3') and importlib.util.find_spec('trio'):
        return sys.executable  # known without starting a python
    system = '/usr/bin/python3'
    if _process.run_command([system, '-c', 'import pyfuse3, trio'], env=_process.clean_env(), timeout=60).ok:
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
                              _process.clean_env(), stdout=log, stderr=_process.STDOUT)
    deadline = time.time() + timeout
    while mountpoint not in mount_table():
        if proc.poll() is not None:
            raise RecoveryError('rowfs exited (rc %s) before mounting %s' % (proc.returncode, mountpoint),
                                log=_process.tail(log_path))
        if time.time() >= deadline:
            proc.kill()
            raise RecoveryError('rowfs did not mount %s within %s s' % (mountpoint, timeout),
                                log=_process.tail(log_path))
        time.sleep(0.05)
    return _process.proc_id(proc.pid)


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
        engine = next((name for name, test in engines.DATADIR_TESTS if test(dirpath, names, dirnames)), None)
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


ENGINES = engines.RECOVERABLE


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
            'layer_mount', 'socket_dir', 'started_at', 'state', 'frozen_copy')
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
    return _process.stop_process(p, first=first, timeout=10 if immediate else 120, group=True)


def teardown(session):
    """Remove every piece of a session, in dependency order; safe on half-built or broken sessions.

    Returns the list of what was removed (for the task result)."""
    removed = []
    if stop_engine(session, immediate=True):
        removed.append('engine')
    layer, archive = session.get('layer_mount'), session.get('archive_mount')
    if layer and unmount(layer):
        removed.append('layer mount')
    if _process.stop_process(session.get('rowfs_proc'), first=signal.SIGTERM, timeout=10):
        removed.append('rowfs')
    if archive and unmount(archive):
        removed.append('archive mount')
    for path in (layer, archive):
        if path:
            remove_mountpoint(path)
    # Nothing reads the copy any more. One on a backup server is the role's to remove (remote_copy()).
    if session.get('frozen_copy') and not session.get('frozen_copy_host') and frozen.remove(session['frozen_copy']):
        removed.append('frozen copy')
    for path in (session.get('delta_dir'), session.get('socket_dir'), session_dir(session['name'])):
        if path and os.path.isdir(path):
            # A file that vanishes meanwhile (an engine or rowfs still exiting) is as good as removed.
            shutil.rmtree(path, onerror=frozen.gone_is_fine)
            removed.append(path)
    try:
        os.unlink(state_path(session['name']))
        removed.append('state file')
    except FileNotFoundError:
        pass
    return removed


def remote_copy(session):
    """The frozen copy a session read on a backup server (inventory host, path, the repository's path there), or None."""
    if not (session and session.get('frozen_copy') and session.get('frozen_copy_host')):
        return None
    return {'host': session['frozen_copy_host'], 'path': session['frozen_copy'],
            'repository': session.get('frozen_copy_of')}


def orphan_mounts():
    """Our mount points (PREFIX, under MOUNT_ROOT) that no session file references."""
    known = set()
    for s in list_sessions():
        known.update([s.get('archive_mount'), s.get('layer_mount')])
    root = MOUNT_ROOT + '/'
    return sorted(p for p in mount_table() if p.startswith(root + PREFIX) and p not in known)
