#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_restore
short_description: Restore paths of a borg archive to their original place or anywhere else, safely
description:
  - Restores selected paths (or everything) of an archive under O(target) - C(/) puts them back where
    they were. Runs on the host that receives the files, which reads the repository with its own key, so
    restoring onto another host than the one backed up is running this module there.
  - Before writing, lists what the archive holds for those paths and compares with what is on disk.
    Files that are already identical (type, size, mtime, mode) are skipped. Anything else that would be
    replaced is a conflict - the restore is refused unless O(overwrite=true), and then a copy of every
    replaced file is kept under O(backup_dir) first.
  - Ownership (as root), modes, timestamps, symlinks, ACLs and xattrs are restored by C(borg extract).
  - Check mode is a dry run, returning what would be written and what would be replaced.
version_added: 0.2.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  archive:
    description: Exact name of the archive.
    type: str
    required: true
  paths:
    description: Paths inside the archive (a leading C(/) is ignored); empty = everything.
    type: list
    elements: str
    default: []
  target:
    description: Directory to restore under; C(/) restores to the original place.
    type: path
    default: /
  strip_components:
    description: Leading path elements removed from every restored path.
    type: int
    default: 0
  overwrite:
    description: Replace existing files that differ (after copying them to O(backup_dir)).
    type: bool
    default: false
  backup_dir:
    description:
      - Where copies of replaced files go, under their path relative to O(target).
      - Default C(/var/lib/borgfleet/restore-backups/<archive>-<time>).
    type: path
  list_limit:
    description: At most this many paths in RV(files) and RV(conflicts).
    type: int
    default: 1000
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: A dry run listing what would be written and replaced.
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: full
    details: Files identical to the archive (type, size, mtime, mode) are not written again.
'''

EXAMPLES = r'''
- name: Put /etc/nginx back as it was last night, keeping a copy of what it replaces
  borgfleet.backup.borg_restore:
    repository: ssh://borg@backup1.example.com:22/srv/borg/web1/etc
    passphrase: "{{ vault_etc_passphrase }}"
    archive: etc-2026-11-25T02:00:00
    paths: [etc/nginx]
    overwrite: true
  no_log: true

- name: Restore a home directory into /srv/restore (dry run first with --check)
  borgfleet.backup.borg_restore:
    repository: /var/lib/borgfleet/repos/web1/home
    passcommand: cat /root/.borg-home
    archive: home-2026-11-25T02:00:00
    paths: [home/alice]
    target: /srv/restore
'''

RETURN = r'''
files:
  description: Paths (under O(target)) written, or that would be written in check mode.
  returned: always
  type: list
  elements: str
nfiles:
  description: Number of items written (or that would be).
  returned: always
  type: int
skipped:
  description: Number of items already identical on disk.
  returned: always
  type: int
conflicts:
  description: Existing paths that differ from the archive and would be replaced.
  returned: always
  type: list
  elements: str
replaced:
  description: Paths replaced (their previous content is under RV(backup_dir)).
  returned: always
  type: list
  elements: str
backup_dir:
  description: Where copies of replaced files were put (null when nothing was replaced).
  returned: always
  type: str
bytes:
  description: Size of the regular files written.
  returned: always
  type: int
duration:
  description: Seconds the restore took.
  returned: always
  type: float
'''

import datetime
import os
import pwd
import shutil
import stat
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec, validate_archive_name)

BORG_TYPES = {'d': stat.S_IFDIR, '-': stat.S_IFREG, 'l': stat.S_IFLNK, 'p': stat.S_IFIFO,
              'c': stat.S_IFCHR, 'b': stat.S_IFBLK, 's': stat.S_IFSOCK}


def mtime_ns(item):
    """borg list's mtime (local ISO time with microseconds) as ns since the epoch."""
    dt = datetime.datetime.strptime(item['mtime'][:26], '%Y-%m-%dT%H:%M:%S.%f')
    return int(time.mktime(dt.timetuple())) * 10 ** 9 + dt.microsecond * 1000


def destination(target, path, strip):
    parts = path.split('/')[strip:]
    return os.path.join(target, *parts) if parts else None


def classify(item, dest):
    """'new', 'same' or 'conflict' for one archived item against what is at dest."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return 'new'
    kind = BORG_TYPES.get(item['type'])
    if stat.S_IFMT(st.st_mode) != kind:
        return 'conflict'
    if kind == stat.S_IFDIR:
        return 'same'  # restoring into an existing directory merges; its files are judged one by one
    if kind == stat.S_IFLNK:
        return 'same' if os.readlink(dest) == item.get('linktarget') else 'conflict'
    mode_ok = stat.S_IMODE(st.st_mode) == stat.S_IMODE(int(item.get('mode_bits', st.st_mode)))
    if st.st_uid != owner_uid(item):
        return 'conflict'  # borg extract would change the owner
    # borg lists mtimes rounded to the microsecond
    if st.st_size == item.get('size') and abs(st.st_mtime_ns - mtime_ns(item)) <= 1000 and mode_ok:
        return 'same'
    return 'conflict'


def owner_uid(item):
    """The uid borg extract gives the file: the archived user name's uid here, else the archived uid."""
    try:
        return pwd.getpwnam(item.get('user') or '').pw_uid
    except KeyError:
        return item.get('uid')


def mode_bits(mode_text):
    """'-rw-r--r--' -> 0o644 (with setuid/setgid/sticky)."""
    bits = 0
    for i, (ch, on) in enumerate(zip(mode_text[1:10], 'rwxrwxrwx')):
        if ch in (on, 's', 't'):
            bits |= 1 << (8 - i)
    if mode_text[3] in 'sS':
        bits |= stat.S_ISUID
    if mode_text[6] in 'sS':
        bits |= stat.S_ISGID
    if mode_text[9] in 'tT':
        bits |= stat.S_ISVTX
    return bits


def keep_copy(dest, target, backup_dir):
    rel = os.path.relpath(dest, target)
    copy = os.path.join(backup_dir, rel)
    os.makedirs(os.path.dirname(copy), 0o700, exist_ok=True)
    if os.path.islink(dest):
        os.symlink(os.readlink(dest), copy)
    elif os.path.isdir(dest):
        shutil.copytree(dest, copy, symlinks=True)
    else:
        shutil.copy2(dest, copy, follow_symlinks=False)
        st = os.lstat(dest)
        os.chown(copy, st.st_uid, st.st_gid)
    return copy


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(
        archive=dict(type='str', required=True),
        paths=dict(type='list', elements='str', default=[]),
        target=dict(type='path', default='/'),
        strip_components=dict(type='int', default=0),
        overwrite=dict(type='bool', default=False),
        backup_dir=dict(type='path'),
        list_limit=dict(type='int', default=1000),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    started = time.time()
    target = os.path.abspath(p['target'])
    if os.path.exists(target) and not os.path.isdir(target):
        module.fail_json(msg='target %s exists and is not a directory' % target)
    paths = [x.strip('/') for x in p['paths'] if x.strip('/')]
    borg = Borg.from_module(module)
    try:
        validate_archive_name(p['archive'])
        borg.version()
        items, _ = borg.list_contents(p['archive'], paths=paths)
        if paths and not items:
            module.fail_json(msg='archive %s holds none of %s' % (p['archive'], ', '.join(paths)))
        write, same, conflicts = [], [], []
        for item in items:
            dest = destination(target, item['path'], p['strip_components'])
            if dest is None:
                continue
            item['mode_bits'] = mode_bits(item.get('mode', '-' * 10))
            state = classify(item, dest)
            if state == 'same':
                same.append(item)
            else:
                write.append((item, dest))
                if state == 'conflict':
                    conflicts.append(dest)
        result = dict(files=[d for i, d in write][:p['list_limit']], nfiles=len(write), skipped=len(same),
                      conflicts=conflicts[:p['list_limit']], replaced=[], backup_dir=None,
                      bytes=sum(i.get('size') or 0 for i, d in write if i['type'] == '-'))
        changed = bool(write)
        if conflicts and not p['overwrite']:
            module.fail_json(msg='%d existing path(s) under %s differ from archive %s and would be replaced '
                                 '(first: %s): set overwrite=true to replace them (a copy is kept), or restore '
                                 'into another target' % (len(conflicts), target, p['archive'], conflicts[0]),
                             **result)
        if module.check_mode or not changed:
            module.exit_json(changed=changed, duration=round(time.time() - started, 3), **result)

        if conflicts:
            backup_dir = p['backup_dir'] or os.path.join(
                '/var/lib/borgfleet/restore-backups',
                '%s-%s' % (p['archive'].replace('/', '_'), datetime.datetime.now().strftime('%Y%m%dT%H%M%S')))
            for dest in conflicts:
                keep_copy(dest, target, backup_dir)
            result.update(backup_dir=backup_dir, replaced=conflicts[:p['list_limit']])
        if not os.path.isdir(target):
            os.makedirs(target, 0o700)
        # Identical files are left alone: skipped by their exact path (through a private file, in any number).
        skip = [i['path'] for i in same if i['type'] != 'd']
        borg.extract(p['archive'], target, paths=paths, strip_components=p['strip_components'], skip_paths=skip)
    except BorgError as e:
        module.fail_json(**e.to_fail_kwargs())
    module.exit_json(changed=True, duration=round(time.time() - started, 3), **result)


if __name__ == '__main__':
    main()
