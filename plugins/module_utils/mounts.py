# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: the mount table, read from /proc/self/mountinfo.

Read without stat(): a dead FUSE mount fails every stat, and a hung NFS server blocks it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

MOUNTINFO = '/proc/self/mountinfo'


def unescape(field):
    """mountinfo writes space, tab, newline and backslash of a path as \\ooo (octal)."""
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """[{device_number, root, mountpoint, fstype, source}] in the kernel's (mount) order."""
    mounts = []
    for line in (text or '').splitlines():
        left, sep, right = line.partition(' - ')
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append({'device_number': fields[2], 'root': unescape(fields[3]),
                       'mountpoint': unescape(fields[4]), 'fstype': tail[0], 'source': unescape(tail[1])})
    return mounts


def read_mounts():
    with open(MOUNTINFO) as f:
        return parse_mountinfo(f.read())


def mount_table():
    """{mountpoint: fstype} of every mount now."""
    return dict((m['mountpoint'], m['fstype']) for m in read_mounts())


def mount_of(path, mounts):
    """The mount holding path (longest mountpoint prefix; the last mounted wins on ties)."""
    best = None
    for m in mounts:
        mp = m['mountpoint']
        if path == mp or path.startswith(mp.rstrip('/') + '/'):
            if best is None or len(mp) >= len(best['mountpoint']):
                best = m
    return best


def mounts_under(root, mounts=None):
    """Mount points at or below ``root``, deepest first (to unmount in order)."""
    found = set()
    for m in read_mounts() if mounts is None else mounts:
        target = m['mountpoint']
        if target == root or target.startswith(root.rstrip('/') + '/'):
            found.add(target)
    return sorted(found, key=len, reverse=True)
