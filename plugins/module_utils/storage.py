# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: the one answer to "can this directory be snapshotted, how, and
from which root?", used by server_facts (to report it) and by snapshot (to act on it).

- btrfs: a read-only snapshot of the subvolume holding the path (the nearest directory at or
  above it whose inode is 256), with btrfs-progs installed;
- LVM: a snapshot of the logical volume mounted there, with lvcreate installed and free extents
  in its volume group;
- anything else is "plain": not snapshot-capable (a logical dump is the way).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

from ansible_collections.borgfleet.backup.plugins.module_utils import _process, mounts
from ansible_collections.borgfleet.backup.plugins.module_utils.probes import to_int

# A btrfs subvolume's root directory always has this inode number (BTRFS_FIRST_FREE_OBJECTID).
BTRFS_SUBVOLUME_INO = 256


def btrfs_subvolume_root(path, mountpoint):
    """The nearest directory at or above path (inside the mount) that is a subvolume root."""
    current = path
    while True:
        try:
            st = os.lstat(current)
        except OSError:
            return None
        if stat.S_ISDIR(st.st_mode) and st.st_ino == BTRFS_SUBVOLUME_INO:
            return current
        if current == mountpoint or current == '/':
            return None
        current = os.path.dirname(current)


def lvm_logical_volumes(tools):
    """[{lv, vg, path, dm_path, size_bytes, attr, vg_free_bytes, vg_extent_bytes, vg_free_extents}] or error."""
    result = tools.run(['lvs', '--reportformat', 'json', '--units', 'b', '--nosuffix', '-o',
                        'lv_name,vg_name,lv_path,lv_dm_path,lv_size,lv_attr,vg_free,vg_extent_size,vg_free_count'])
    if not result.ok:
        return None, result.first_error_line()
    try:
        rows = json.loads(result.out)['report'][0]['lv']
    except (ValueError, KeyError, IndexError):
        return None, 'could not parse lvs output'
    out = []
    for row in rows:
        out.append({'lv': row.get('lv_name'), 'vg': row.get('vg_name'), 'path': row.get('lv_path'),
                    'dm_path': row.get('lv_dm_path'), 'size_bytes': to_int(row.get('lv_size')),
                    'attr': row.get('lv_attr'), 'vg_free_bytes': to_int(row.get('vg_free')),
                    'vg_extent_bytes': to_int(row.get('vg_extent_size')),
                    'vg_free_extents': to_int(row.get('vg_free_count'))})
    return out, None


def match_logical_volume(source, volumes):
    """The LV whose device is the mount source (/dev/mapper/vg-lv, /dev/vg/lv or /dev/dm-N)."""
    if not source or not source.startswith('/dev/'):
        return None
    real = os.path.realpath(source)
    for lv in volumes or []:
        for candidate in (lv.get('dm_path'), lv.get('path')):
            if candidate and (candidate == source or os.path.realpath(candidate) == real):
                return lv
    return None


class Storage:
    """Reads the mount table and the list of logical volumes once, then answers ``of(path)``."""

    def __init__(self, tools=None):
        self.tools = tools or _process.Tools(timeout=30)
        self.mounts = mounts.read_mounts()
        self._lvs = None

    def logical_volumes(self):
        if self._lvs is None:
            self._lvs = lvm_logical_volumes(self.tools) if self.tools.which('lvs') else (None, 'lvs not installed')
        return self._lvs

    def of(self, path):
        """dict(path, kind=btrfs|lvm|plain, mount, volume_root, snapshot_capable, reason, btrfs_subvolume, lv).

        ``mount`` is the mount table's entry (mountpoint, source, fstype); ``volume_root`` is what a
        snapshot copies: the subvolume (btrfs) or the mount point (LVM, plain); ``lv`` the
        logical volume's row of lvs; ``reason`` says why it is not snapshot-capable."""
        path = os.path.realpath(path)
        mount = mounts.mount_of(path, self.mounts) or {}
        out = {'path': path, 'kind': 'plain', 'mount': mount, 'volume_root': mount.get('mountpoint'),
               'snapshot_capable': False, 'reason': None}
        if mount.get('fstype') == 'btrfs':
            out['kind'] = 'btrfs'
            out['volume_root'] = subvolume = btrfs_subvolume_root(path, mount['mountpoint'])
            if subvolume is None:
                out['reason'] = 'no btrfs subvolume holds %s' % path
            elif not self.tools.which('btrfs'):
                out['reason'] = 'btrfs-progs not installed'
            else:
                out['snapshot_capable'] = True
            return out
        volumes, error = self.logical_volumes()
        lv = match_logical_volume(mount.get('source'), volumes)
        if lv is None:
            if error and (mount.get('source') or '').startswith('/dev/mapper/'):
                out['lvm_error'] = error
            out['reason'] = 'neither LVM nor btrfs under %s' % path
            return out
        out.update(kind='lvm', lv=lv)
        if not self.tools.which('lvcreate'):
            out['reason'] = 'lvcreate not found'
        elif not lv['vg_free_extents']:
            out['reason'] = 'volume group %s has no free extents for a snapshot' % lv['vg']
        else:
            out['snapshot_capable'] = True
        return out
