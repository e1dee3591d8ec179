# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: storage snapshots (btrfs, LVM) mounted at stable paths.

Every object we create carries the prefix ``borgfleet-`` and the backup's name, and a
small state file under the mount root records what a run created *before* it creates it,
so a later run (or ``cleanup()``) removes exactly our leftovers after a crash or a kill.

Layout for backup ``db`` and a volume whose root is ``/srv/mysql``:
- btrfs: read-only snapshot ``<fs mount>/.borgfleet-snapshots/borgfleet-db-<n>``;
- LVM: snapshot LV ``<vg>/borgfleet-db-<n>``;
- either mounted read-only at ``/run/borgfleet/snapshots/db/srv/mysql`` - the same path every
  run, so borg's files cache (``--files-cache ctime,size``: inode numbers change between
  snapshots) recognises unchanged files.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import json
import os
import re

from ansible_collections.borgfleet.backup.plugins.module_utils import _process, storage
from ansible_collections.borgfleet.backup.plugins.module_utils.mounts import mounts_under
from ansible_collections.borgfleet.backup.plugins.module_utils.errors import CommandError

PREFIX = 'borgfleet-'
DEFAULT_MOUNT_ROOT = '/run/borgfleet/snapshots'
BTRFS_SNAPSHOT_DIR = '.borgfleet-snapshots'
DEFAULT_LVM_SIZE = '20%ORIGIN'
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')
CMD_TIMEOUT = 120


class SnapshotError(CommandError):
    pass


def run(argv, timeout=CMD_TIMEOUT):
    """stdout of argv, or SnapshotError."""
    return _process.check_command(argv, error=SnapshotError, what=' '.join(argv[:3]), timeout=timeout)


def try_run(argv, timeout=CMD_TIMEOUT):
    """How argv ended (a _process.Completed: rc, out, err), for commands allowed to fail."""
    return _process.run_command(argv, timeout=timeout)


def check_name(name):
    if not NAME_RE.match(name or ''):
        raise SnapshotError('backup name %r is not allowed for snapshots' % (name,))
    return name


def storage_of(path):
    """How ``path`` can be snapshotted: storage.Storage().of(path)."""
    return storage.Storage().of(path)


def volumes_for(paths):
    """Distinct volumes holding ``paths`` (data dir, WAL, tablespaces), in a stable order."""
    volumes, seen = [], set()
    probe = storage.Storage()
    for path in paths:
        found = probe.of(path)
        if not found['snapshot_capable']:
            raise SnapshotError('%s is on %s storage (%s at %s): it cannot be snapshotted (%s); use method dump'
                                % (path, found['mount'].get('fstype'), found['mount'].get('source'),
                                   found['mount'].get('mountpoint'), found['reason']))
        key = found['volume_root']
        if key not in seen:
            seen.add(key)
            volumes.append(found)
    return volumes


class RunLock:
    """One run per backup at a time: a second run would take the first one's snapshots for
    leftovers. flock dies with its process, so a killed run never blocks the next one."""

    def __init__(self, backup, mount_root=DEFAULT_MOUNT_ROOT):
        self.path = os.path.join(mount_root.rstrip('/'), '%s%s.lock' % (PREFIX, check_name(backup)))
        self.fd = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise SnapshotError('another snapshot run of backup %s is in progress (%s is locked)'
                                % (os.path.basename(self.path)[len(PREFIX):-5], self.path))
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the lock; the file stays (removing it would race a waiter)
        return False


class SnapshotSet:
    """The snapshots of one backup: create (all volumes, in a quiesced moment), mount, remove."""

    def __init__(self, backup, mount_root=DEFAULT_MOUNT_ROOT, lvm_size=None):
        self.backup = check_name(backup)
        self.mount_root = mount_root.rstrip('/')
        self.base = os.path.join(self.mount_root, self.backup)
        self.state_path = os.path.join(self.mount_root, '%s%s.json' % (PREFIX, self.backup))
        self.lvm_size = lvm_size or DEFAULT_LVM_SIZE
        self.created = []  # [{kind, volume_root, snapshot (path or vg/lv), mountpoint}]

    # -- state file: written before each creation, so a killed run leaves a trail -----------
    def _save(self):
        os.makedirs(self.mount_root, mode=0o700, exist_ok=True)
        tmp = self.state_path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump({'backup': self.backup, 'created': self.created}, f)
        os.rename(tmp, self.state_path)

    def mountpoint(self, volume_root):
        return self.base + volume_root if volume_root != '/' else self.base

    def path_in_snapshot(self, path):
        """Where ``path`` (on one of the volumes) appears under the stable mount."""
        path = os.path.realpath(path)
        for item in sorted(self.created, key=lambda i: len(i['volume_root']), reverse=True):
            root = item['volume_root']
            if path == root or path.startswith(root.rstrip('/') + '/'):
                return item['mountpoint'] + path[len(root):]
        raise SnapshotError('%s is on none of the snapshotted volumes' % path)

    def create(self, volumes, writable=False):
        """Take one snapshot per volume; must be fast: the database is frozen meanwhile.

        ``writable`` leaves btrfs snapshots writable so a caller can add files (PostgreSQL's
        backup_label) before ``seal()`` makes them read-only."""
        for n, volume in enumerate(volumes):
            item = dict(kind=volume['kind'], volume_root=volume['volume_root'],
                        mountpoint=self.mountpoint(volume['volume_root']))
            if volume['kind'] == 'btrfs':
                snapdir = os.path.join(volume['mount']['mountpoint'], BTRFS_SNAPSHOT_DIR)
                item['snapshot'] = os.path.join(snapdir, '%s%s-%d' % (PREFIX, self.backup, n))
                item['fs_mount'] = volume['mount']['mountpoint']
                self.created.append(item)
                self._save()
                if not os.path.isdir(snapdir):
                    os.mkdir(snapdir, 0o700)
                argv = ['btrfs', 'subvolume', 'snapshot']
                if not writable:
                    argv.append('-r')
                run(argv + [volume['volume_root'], item['snapshot']])
            elif volume['kind'] == 'lvm':
                vg, lv = volume['lv']['vg'], volume['lv']['lv']
                item['snapshot'] = '%s/%s%s-%d' % (vg, PREFIX, self.backup, n)
                item['fstype'] = volume['mount']['fstype']
                self.created.append(item)
                self._save()
                size = self.lvm_size
                size_opt = ['--extents', size] if '%' in size else ['--size', size]
                run(['lvcreate', '--snapshot', '--name', item['snapshot'].split('/', 1)[1]] + size_opt
                    + ['%s/%s' % (vg, lv)])
            else:
                raise SnapshotError('cannot snapshot %s storage' % volume['kind'])
        return self.created

    def add_file(self, path, content):
        """Write a file into writable snapshots (PostgreSQL's backup_label), at the place ``path``
        has on the original volume: btrfs through the snapshot itself, LVM through its rw mount."""
        path = os.path.realpath(path)
        for item in self.created:
            root = item['volume_root']
            if path == root or path.startswith(root.rstrip('/') + '/'):
                base = item['snapshot'] if item['kind'] == 'btrfs' else item['mountpoint']
                with open(base + path[len(root):], 'wb' if isinstance(content, bytes) else 'w') as f:
                    f.write(content)
                return
        raise SnapshotError('%s is on none of the snapshotted volumes' % path)

    def seal(self):
        """Make writable snapshots read-only before borg reads them."""
        for item in self.created:
            if item['kind'] == 'btrfs':
                run(['btrfs', 'property', 'set', '-ts', item['snapshot'], 'ro', 'true'])
            else:
                run(['mount', '-o', 'remount,ro', item['mountpoint']])

    def mount(self, writable=False):
        for item in self.created:
            os.makedirs(item['mountpoint'], mode=0o700, exist_ok=True)
            if item['kind'] == 'btrfs':
                run(['mount', '--bind', '-o', 'ro', item['snapshot'], item['mountpoint']])
            else:
                device = '/dev/%s' % item['snapshot']
                # xfs refuses a second mount of the same filesystem UUID; ext4 replays its
                # journal into the (writable) snapshot device, then serves it read-only.
                opts = 'rw' if writable else 'ro'
                opts += ',nouuid' if item.get('fstype') == 'xfs' else ''
                run(['mount', '-o', opts, device, item['mountpoint']])

    # -- teardown: also used on leftovers of a killed run -------------------------------------
    def remove(self):
        """Unmount and delete everything this set (or a killed run's state file) created.

        Tries every step even when one fails, then raises the first failure."""
        errors = []
        for target in mounts_under(self.base):
            proc = try_run(['umount', target])
            if proc.rc != 0:
                # A reader (a shell in the directory) keeps it busy: detach it lazily so the
                # snapshot underneath can still go; the kernel frees it when the reader leaves.
                proc = try_run(['umount', '--lazy', target])
                if proc.rc != 0:
                    errors.append('umount %s: %s' % (target, proc.err.strip()))
        for item in reversed(self.created):
            try:
                if item['kind'] == 'btrfs':
                    if os.path.exists(item['snapshot']):
                        run(['btrfs', 'subvolume', 'delete', '--commit-after', item['snapshot']])
                elif item['kind'] == 'lvm':
                    proc = try_run(['lvs', item['snapshot']], timeout=30)
                    if proc.rc == 0:
                        run(['lvremove', '--yes', item['snapshot']])
            except SnapshotError as e:
                errors.append(e.msg)
        if not errors:
            self.created = []
            if os.path.exists(self.state_path):
                os.unlink(self.state_path)
            if os.path.isdir(self.base):
                _remove_empty_dirs(self.base)
        if errors:
            raise SnapshotError('cleanup of snapshots of %s incomplete: %s' % (self.backup, '; '.join(errors)))

    @classmethod
    def leftovers(cls, backup, mount_root=DEFAULT_MOUNT_ROOT, volumes=()):
        """A set holding what an earlier run of ``backup`` left: its state file, plus any
        ``borgfleet-<backup>-*`` snapshot found on the given volumes (state lost)."""
        found = cls(backup, mount_root)
        if os.path.exists(found.state_path):
            with open(found.state_path) as f:
                found.created = json.load(f).get('created', [])
        known = set(i.get('snapshot') for i in found.created)
        for volume in volumes:
            if volume['kind'] == 'btrfs':
                snapdir = os.path.join(volume['mount']['mountpoint'], BTRFS_SNAPSHOT_DIR)
                if os.path.isdir(snapdir):
                    for entry in sorted(os.listdir(snapdir)):
                        path = os.path.join(snapdir, entry)
                        if entry.startswith('%s%s-' % (PREFIX, backup)) and path not in known:
                            found.created.append(dict(kind='btrfs', snapshot=path, volume_root=None,
                                                      mountpoint=None))
            elif volume['kind'] == 'lvm':
                vg = volume['lv']['vg']
                proc = try_run(['lvs', '--noheadings', '-o', 'lv_name', vg], timeout=30)
                for name in proc.out.split():
                    snap = '%s/%s' % (vg, name)
                    if name.startswith('%s%s-' % (PREFIX, backup)) and snap not in known:
                        found.created.append(dict(kind='lvm', snapshot=snap, volume_root=None, mountpoint=None))
        return found

    def is_empty(self):
        return not self.created and not mounts_under(self.base)

    def describe(self):
        return [dict(kind=i['kind'], snapshot=i['snapshot'], volume_root=i['volume_root'],
                     mountpoint=i['mountpoint']) for i in self.created]


def _remove_empty_dirs(top):
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        if not filenames:
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
