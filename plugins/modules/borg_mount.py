#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_mount
short_description: Mount or unmount a borg archive or a whole repository (FUSE)
description:
  - Runs C(borg mount) for one archive (or the whole repository, one directory per archive) at a stable
    mount point C(/run/borgfleet/mounts/<name>), read-only and lazy.
  - Mounts with C(allow_other) by default; without it no other user, root included, sees the files.
  - Every run first removes dead FUSE mounts under C(/run/borgfleet/mounts) (a mount whose process died
    answers C(ENOTCONN) to everything) with C(fusermount3 -uz).
version_added: 0.2.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  repository:
    description:
      - The borg repository. Required with O(state=mounted).
    type: str
    required: false
  state:
    description:
      - V(mounted) mounts (a healthy existing mount is left alone), V(unmounted) unmounts and removes the mount point.
    type: str
    choices: [mounted, unmounted]
    default: mounted
  archive:
    description:
      - Archive to mount. Omit to mount the whole repository.
    type: str
  match_archives:
    description:
      - With the whole repository, only archives matching this glob (e.g. C(etc-*)).
    type: str
  name:
    description:
      - Name of the mount point under C(/run/borgfleet/mounts). Default from O(archive), or C(repository).
      - Letters, digits and C(. _ -), at most 40 characters.
    type: str
  options:
    description:
      - FUSE options for C(borg mount -o).
    type: list
    elements: str
    default: [allow_other]
  cache_chunks:
    description:
      - Decrypted chunks borg keeps in memory for reads (C(BORG_MOUNT_DATA_CACHE_ENTRIES); borg's default is the
        number of CPUs, which makes random reads decrypt the same chunk again and again).
    type: int
    default: 64
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: full
    details: A healthy mount at the mount point is left as it is (it is not compared with O(archive)).
'''

EXAMPLES = r'''
- name: Mount one archive at /run/borgfleet/mounts/etc-latest
  borgfleet.backup.borg_mount:
    repository: ssh://borg@backup1.example.com:22/srv/borg/web1/etc
    passphrase: "{{ vault_etc_passphrase }}"
    ssh_key: /root/.ssh/borgfleet_ed25519
    ssh_known_hosts: /root/.ssh/borgfleet_known_hosts
    archive: etc-2026-11-01T02:00:00
    name: etc-latest
  no_log: true

- name: Unmount it
  borgfleet.backup.borg_mount:
    name: etc-latest
    state: unmounted
'''

RETURN = r'''
mountpoint:
  description: The mount point.
  returned: always
  type: str
  sample: /run/borgfleet/mounts/etc-latest
mounted:
  description: Whether the mount point is mounted after the task.
  returned: always
  type: bool
cleaned:
  description: Dead mounts that were removed under C(/run/borgfleet/mounts).
  returned: always
  type: list
  elements: str
duration:
  description: Seconds the mount or unmount took.
  returned: always
  type: float
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec, validate_archive_name)
from ansible_collections.borgfleet.backup.plugins.module_utils import recovery


def clean_dead_mounts(check_mode):
    dead = [p for p in recovery.mount_table() if p.startswith(recovery.MOUNT_ROOT + '/') and recovery.is_stale(p)]
    if not check_mode:
        for path in dead:
            recovery.unmount(path)
            recovery.remove_mountpoint(path)
    return dead


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec['repository'] = dict(type='str')
    argument_spec.update(
        state=dict(type='str', choices=['mounted', 'unmounted'], default='mounted'),
        archive=dict(type='str'),
        match_archives=dict(type='str'),
        name=dict(type='str'),
        options=dict(type='list', elements='str', default=['allow_other']),
        cache_chunks=dict(type='int', default=64),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE + [('archive', 'match_archives')],
                           required_if=[('state', 'mounted', ['repository'])],
                           required_one_of=[('name', 'archive', 'repository')])
    p = module.params
    started = time.time()
    try:
        if p['archive']:
            validate_archive_name(p['archive'])
        name = p['name'] or (recovery.name_from_archive(p['archive']) if p['archive'] else 'repository')
        mountpoint = recovery.mountpoint_for(name)
        cleaned = clean_dead_mounts(module.check_mode)
        mounted = mountpoint in recovery.mount_table() and mountpoint not in cleaned
        changed = bool(cleaned)
        if p['state'] == 'mounted' and not mounted:
            changed = True
            if not module.check_mode:
                recovery.prepare_mountpoint(mountpoint)
                borg = Borg.from_module(module)
                borg.version()
                os.environ['BORG_MOUNT_DATA_CACHE_ENTRIES'] = str(p['cache_chunks'])  # inherited by borg
                try:
                    borg.mount(mountpoint, name=p['archive'], options=p['options'],
                               match_archives=p['match_archives'])
                except BorgError:
                    recovery.remove_mountpoint(mountpoint)
                    raise
            mounted = True
        elif p['state'] == 'unmounted':
            if mounted:
                changed = True
                if not module.check_mode:
                    recovery.unmount(mountpoint)
            if not module.check_mode and os.path.isdir(mountpoint):
                recovery.remove_mountpoint(mountpoint)
            mounted = False
    except BorgError as e:
        module.fail_json(**e.to_fail_kwargs())
    except recovery.RecoveryError as e:
        module.fail_json(msg=e.msg)
    module.exit_json(changed=changed, mountpoint=mountpoint, mounted=mounted, cleaned=cleaned,
                     duration=round(time.time() - started, 3))


if __name__ == '__main__':
    main()
