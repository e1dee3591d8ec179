#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_extract
short_description: Restore paths from a borg archive into a directory
description:
  - Runs C(borg extract) for the whole archive or selected paths, into O(target) (created if missing).
  - Ownership (when run as root), modes, timestamps, symlinks, ACLs and xattrs are restored by borg.
  - In check mode runs C(borg extract --dry-run) and returns the paths that would be written.
version_added: 0.1.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  archive:
    description:
      - Exact name of the archive to restore from.
    type: str
    required: true
  target:
    description:
      - Directory to restore into. Paths are recreated under it as they are in the archive (no leading C(/)).
    type: path
    required: true
  paths:
    description:
      - Paths inside the archive to restore (default everything). A leading C(/) is ignored.
    type: list
    elements: str
    default: []
  strip_components:
    description:
      - Remove this many leading path elements from every restored path.
    type: int
    default: 0
  exclude:
    description:
      - Exclude patterns (borg C(--exclude)).
    type: list
    elements: str
    default: []
  list_limit:
    description:
      - At most this many restored paths are returned in RV(files).
    type: int
    default: 1000
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: A real C(borg extract --dry-run) listing what would be written.
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: none
    details: Files are written again on every run.
'''

EXAMPLES = r'''
- name: Restore etc/nginx from an archive into /srv/restore
  borgfleet.backup.borg_extract:
    repository: ssh://borg@backup1.example.com:22/srv/borg/web1/etc
    passphrase: "{{ vault_etc_passphrase }}"
    ssh_key: /root/.ssh/borgfleet_ed25519
    ssh_known_hosts: /root/.ssh/borgfleet_known_hosts
    archive: etc-2026-11-01T02:00:00
    target: /srv/restore
    paths: [etc/nginx]
  no_log: true
'''

RETURN = r'''
files:
  description: Paths written (or that would be written in check mode), at most O(list_limit).
  returned: always
  type: list
  elements: str
nfiles:
  description: Number of paths written.
  returned: always
  type: int
target:
  description: The directory restored into.
  returned: always
  type: str
duration:
  description: Seconds the extract took.
  returned: always
  type: float
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec, validate_archive_name)


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(
        archive=dict(type='str', required=True),
        target=dict(type='path', required=True),
        paths=dict(type='list', elements='str', default=[]),
        strip_components=dict(type='int', default=0),
        exclude=dict(type='list', elements='str', default=[]),
        list_limit=dict(type='int', default=1000),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    borg = Borg.from_module(module)
    target = p['target']
    if os.path.exists(target) and not os.path.isdir(target):
        module.fail_json(msg='target %s exists and is not a directory' % target)
    try:
        validate_archive_name(p['archive'])
        borg.check_installed()
        if module.check_mode:
            # borg extract --dry-run still needs a working directory that exists.
            workdir = target if os.path.isdir(target) else '/'
        else:
            if not os.path.isdir(target):
                os.makedirs(target, 0o700)
            workdir = target
        files, result = borg.extract(p['archive'], workdir, paths=p['paths'],
                                     strip_components=p['strip_components'], exclude=p['exclude'],
                                     dry_run=module.check_mode)
    except BorgError as e:
        module.fail_json(**e.to_fail_kwargs())
    module.exit_json(changed=bool(files), files=files[:p['list_limit']], nfiles=len(files), target=target,
                     duration=round(result.duration, 3))


if __name__ == '__main__':
    main()
