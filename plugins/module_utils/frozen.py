# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: a frozen copy of a local borg repository, made of hard links.

An instant-recovery session reads its archive from such a copy, never from the repository itself,
so backups, prune and compact of the repository run while the session lives (a ``borg mount`` of
the repository would hold its lock for the whole session).

Why links are enough (borg 1.2, borg/repository.py): a segment file is created once with O_EXCL
(``SyncFile``, mode ``xb``) and never opened for writing again; compact copies the live objects into
new segments and unlinks the old ones (``safe_unlink`` truncates a file only when it has no other
link); ``index.N``, ``hints.N``, ``integrity.N``, ``config`` and ``nonce`` are replaced by rename
(``SaveFile``, ``os.replace``), never rewritten in place. So a link keeps the bytes it had when it
was made. Made under the repository's lock (``borg with-lock``), the links are one committed state.

What the copy gets besides the links: its top-level files are real copies (a borg reading the copy
writes nothing there but its own lock files, and we want no inode of the repository that a future
borg could open for writing), the lock files of ``with-lock`` are dropped, and so are the segments
after the last committed transaction (``with-lock`` itself starts one it commits only when the
command is done).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import errno
import os
import pwd
import re
import shutil
import socket
import time

from ansible_collections.borgfleet.backup.plugins.module_utils.errors import RecoveryError

# The copy lives next to the repository (hard links need the same file system), under a name that no
# backup can have (backup names start with a letter or digit) and that pool scans skip.
PREFIX = '.borgfleet-ir-'
_TRANSACTION_FILE_RE = re.compile(r'^(?:index|hints)\.(\d+)$')
_LOCK_NAMES = ('lock.exclusive', 'lock.roster')


def is_frozen_copy_name(name):
    return name.startswith(PREFIX)


def copy_path_for(repository, session_name, host=None):
    """Where the frozen copy of a repository (its path on its own host) for a session goes: beside it.

    ``host`` (host_tag()) tells apart the sessions of several recovery hosts reading the same repository over SSH."""
    repository = os.path.normpath(repository.rstrip('/'))
    return os.path.join(os.path.dirname(repository), PREFIX + session_name + ('-' + host if host else ''))


def host_tag():
    """This host, for the names of its frozen copies on a backup server: a prefix of its machine id."""
    try:
        with open('/etc/machine-id') as f:
            machine_id = f.read().strip()
    except (IOError, OSError):
        machine_id = ''
    if re.match(r'^[0-9a-f]{32}$', machine_id):
        return machine_id[:12]
    return re.sub(r'[^A-Za-z0-9.-]', '-', socket.gethostname())[:40] or 'host'


def check_copy_path(repository, copy_path):
    """A frozen copy must sit beside its repository (the client's own directory, which its restricted key
    reads) and carry our prefix (so that nothing else is ever removed)."""
    repository = os.path.normpath(repository.rstrip('/'))
    copy_path = os.path.normpath(copy_path)
    if not os.path.isabs(copy_path) or os.path.dirname(copy_path) != os.path.dirname(repository) \
            or not is_frozen_copy_name(os.path.basename(copy_path)):
        raise RecoveryError('a frozen copy of %s must be a directory %s<name> beside it, not %s'
                            % (repository, PREFIX, copy_path))
    return copy_path


def link_command(repository, copy_path):
    """The command ``borg with-lock`` runs: ``cp -a -l`` makes directories and hard-links every file."""
    return ['cp', '-a', '-l', '-T', '--', os.path.abspath(repository), copy_path]


def last_transaction(copy_path):
    """The committed transaction the copy's index (or hints) belongs to; None without either."""
    found = [int(m.group(1)) for m in (_TRANSACTION_FILE_RE.match(n) for n in os.listdir(copy_path)) if m]
    return max(found) if found else None


def settle(copy_path):
    """Make the linked tree a repository of its own: drop lock files and the uncommitted tail, copy the
    top-level files (break their links). Returns the figures of the copy."""
    for name in _LOCK_NAMES:
        path = os.path.join(copy_path, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    for entry in os.scandir(copy_path):
        if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_nlink > 1:
            st = entry.stat(follow_symlinks=False)
            tmp = entry.path + '.borgfleet-copy'
            shutil.copy2(entry.path, tmp)
            os.chown(tmp, st.st_uid, st.st_gid)
            os.replace(tmp, entry.path)
    transaction = last_transaction(copy_path)
    segments = dropped = 0
    data = os.path.join(copy_path, 'data')
    for dirpath, _dirnames, filenames in os.walk(data):
        for name in filenames:
            if not name.isdigit():
                continue
            if transaction is not None and int(name) > transaction:
                os.unlink(os.path.join(dirpath, name))  # a link: the repository keeps its own
                dropped += 1
            else:
                segments += 1
    return {'transaction': transaction, 'segments': segments, 'uncommitted_dropped': dropped}


def freeze(borg, copy_path):
    """Hard-link a frozen copy of ``borg``'s local repository at ``copy_path`` (under its lock)."""
    if borg.settings.is_remote:
        raise RecoveryError('a frozen copy is made on the host of the repository, not over SSH (%s)'
                            % borg.settings.repository)
    check_copy_path(borg.settings.repository, copy_path)
    started = time.time()
    if os.path.lexists(copy_path):  # a leftover of a killed start, or the copy of an older session of that name
        remove(copy_path)
    as_owner(borg, os.stat(borg.settings.repository)).with_lock(link_command(borg.settings.repository, copy_path))
    locked = time.time()
    figures = settle(copy_path)
    # Under the lock: borg's start-up, lock and commit, and the links (cp alone: milliseconds, bench/instant_recovery).
    figures.update(locked_seconds=round(locked - started, 3), seconds=round(time.time() - started, 3))
    return figures


def as_owner(borg, st):
    """``borg`` itself, or - when root works on a repository of another user (the borg user of a backup server) -
    a Borg running as that user with its home as BORG_BASE_DIR: what borg writes under the lock (a commit) and the
    links' directories stay the owner's, who serves the repository and reads the copy."""
    if os.geteuid() != 0 or st.st_uid == 0:
        return borg
    settings = copy.copy(borg.settings)
    settings.run_as = (st.st_uid, st.st_gid)
    try:
        settings.borg_base_dir = pwd.getpwuid(st.st_uid).pw_dir
    except KeyError:
        raise RecoveryError('the owner (uid %d) of %s is no user of this host' % (st.st_uid, borg.settings.repository))
    return type(borg)(settings)


def remove(copy_path, timeout=10):
    """Remove a frozen copy (only ours: the name says so). True if there was one."""
    if not copy_path or not os.path.isabs(copy_path) \
            or not is_frozen_copy_name(os.path.basename(os.path.normpath(copy_path))):
        raise RecoveryError('refusing to remove %r: not a frozen copy' % (copy_path,))
    if os.path.islink(copy_path):
        raise RecoveryError('refusing to remove %s: a symbolic link, not a frozen copy' % copy_path)
    if not os.path.lexists(copy_path):
        return False
    # The borg mount that read the copy releases its lock (files in the copy) as it exits, just after the
    # unmount: a file gone meanwhile is fine, a directory not empty yet is tried again.
    deadline = time.time() + timeout
    while True:
        try:
            shutil.rmtree(copy_path, onerror=gone_is_fine)
            return True
        except OSError as e:
            if e.errno != errno.ENOTEMPTY or time.time() >= deadline:
                raise
            time.sleep(0.05)


def gone_is_fine(func, path, exc_info):
    """shutil.rmtree's onerror: a file already gone is removed enough; anything else is raised."""
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


# -- borg's security database for the copy --------------------------------------------------------

def repository_id(copy_path):
    with open(os.path.join(copy_path, 'config')) as f:
        for line in f:
            key, sep, value = line.partition('=')
            if sep and key.strip() == 'id':
                return value.strip()
    raise RecoveryError('%s has no repository id in its config' % copy_path)


def borg_dirs(env):
    """borg's config, security and keys directories for an environment (borg/helpers/fs.py, 1.2)."""
    base = env.get('BORG_BASE_DIR') or env.get('HOME') or os.path.expanduser('~')
    config_home = os.path.join(base, '.config')
    if not env.get('BORG_BASE_DIR'):
        config_home = env.get('XDG_CONFIG_HOME', config_home)
    config = env.get('BORG_CONFIG_DIR', os.path.join(config_home, 'borg'))
    return {'config': config, 'security': env.get('BORG_SECURITY_DIR', os.path.join(config, 'security')),
            'keys': env.get('BORG_KEYS_DIR', os.path.join(config, 'keys'))}


def known_ids(real_env, location):
    """Ids of the repositories borg's security database (of ``real_env``) knows at ``location``."""
    security = borg_dirs(real_env)['security']
    ids = []
    try:
        entries = sorted(os.listdir(security))
    except OSError:
        return ids
    for repo_id in entries:
        try:
            with open(os.path.join(security, repo_id, 'location')) as f:
                if f.read() == location:
                    ids.append(repo_id)
        except (IOError, OSError):
            pass
    return ids


_SSH_RE = re.compile(r'^(ssh://[^/]+)(/.*)$')


def ssh_path(url):
    """The path on the server of an ``ssh://`` repository URL, or None (another form)."""
    m = _SSH_RE.match(url or '')
    return os.path.normpath(m.group(2)) if m else None


def ssh_url_with_path(url, path):
    """``url`` (ssh://user@host:port/...) leading to ``path`` instead: as borg writes a location (canonical)."""
    return _SSH_RE.match(url).group(1) + os.path.normpath(path)


def seed_security(location, repo_ids, real_env, private_base):
    """A private BORG_BASE_DIR for reading the copy at ``location``, whose security entry is the repository's own.

    Same repository id at another place: with the repository's base dir borg would ask about a
    relocated repository. A fresh base dir alone would trust the copy blindly. So the copy gets the
    repository's known key type and newest manifest timestamp (borg still refuses a downgrade to no
    encryption or an older manifest), with the copy's own location; the repository's entry is not touched.
    An id borg does not know yet stays unknown (borg's first-use rules, as for the repository).
    Returns the environment to add (BORG_BASE_DIR, and BORG_KEYS_DIR for keyfile repositories)."""
    real = borg_dirs(real_env)
    mine = borg_dirs({'BORG_BASE_DIR': private_base})
    for repo_id in repo_ids:
        src, dst = os.path.join(real['security'], repo_id), os.path.join(mine['security'], repo_id)
        known = [n for n in ('key-type', 'manifest-timestamp') if os.path.isfile(os.path.join(src, n))]
        if len(known) < 2:
            continue
        os.makedirs(dst, 0o700, exist_ok=True)
        for name in known:
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
        with open(os.path.join(dst, 'location'), 'w') as f:
            f.write(location)
    return {'BORG_BASE_DIR': private_base, 'BORG_KEYS_DIR': real['keys']}
