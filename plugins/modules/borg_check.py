#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_check
short_description: Verify a borg repository and its archives
description:
  - Runs C(borg check) (never C(--repair)) on the repository's segments, the archives' metadata, and with
    O(verify_data) on every chunk's content (this reads all data and is slow).
  - Fails when borg finds a problem, with borg's own report.
version_added: 0.1.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  scope:
    description:
      - What to check.
    type: str
    choices: [all, repository, archives]
    default: all
  verify_data:
    description:
      - Also decrypt and verify every chunk (implies archive checks).
    type: bool
    default: false
  match_archives:
    description:
      - Only archives matching this glob (archive checks).
    type: str
  last:
    description:
      - Only the last N archives (archive checks).
    type: int
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: The check only reads, so it runs in check mode too.
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: full
'''

EXAMPLES = r'''
- name: Full check of the etc repository
  borgfleet.backup.borg_check:
    repository: /var/backups/borg/etc
    passcommand: cat /root/.borg-etc

- name: Verify the data of the last 3 archives
  borgfleet.backup.borg_check:
    repository: /var/backups/borg/etc
    passcommand: cat /root/.borg-etc
    scope: archives
    verify_data: true
    last: 3
'''

RETURN = r'''
ok:
  description: Whether borg found the repository consistent.
  returned: always
  type: bool
duration:
  description: Seconds the check took.
  returned: always
  type: float
output:
  description: Borg's messages.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec, parse_log_lines)


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(
        scope=dict(type='str', choices=['all', 'repository', 'archives'], default='all'),
        verify_data=dict(type='bool', default=False),
        match_archives=dict(type='str'),
        last=dict(type='int'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    borg = Borg.from_module(module)
    try:
        borg.check_installed()
        result = borg.check(repository_only=p['scope'] == 'repository',
                            archives_only=p['scope'] == 'archives' and not p['verify_data'],
                            verify_data=p['verify_data'], match_archives=p['match_archives'], last=p['last'])
    except BorgError as e:
        module.fail_json(ok=False, **e.to_fail_kwargs())
    records, plain = parse_log_lines(result.stderr)
    module.exit_json(changed=False, ok=True, duration=round(result.duration, 3),
                     output=[r.get('message') for r in records if r.get('message')] + plain)


if __name__ == '__main__':
    main()
