#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_repository_copy
short_description: A frozen copy of a borg repository made of hard links, beside it, for an instant-recovery session
description:
  - V(present) makes a fresh frozen copy of the local O(repository) at O(path) (replacing one left there) - C(cp -a -l)
    under the repository's lock (C(borg with-lock)), then the copy's top-level files are copied rather than linked,
    its lock files dropped and the segments after its last commit removed. Milliseconds and no extra space, because borg 1.2
    never rewrites a segment file (it writes new ones and deletes old ones) and replaces its index, hints and config by
    rename, so the links keep the repository's state of that moment while backups, prune and compact go on.
  - V(absent) removes the copy.
  - Runs on the host that holds the repository (a backup server), as the repository's owner (the borg user) so that
    the client's own restricted key (C(borg serve --restrict-to-path <pool>/<client>)) reads the copy. The
    instant_recovery role delegates it there for a session of a repository reached over SSH.
  - O(path) must be a directory beside the repository named C(.borgfleet-ir-...); nothing else is ever made or removed.
version_added: 0.3.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  path:
    description:
      - Where the copy goes (absolute, beside O(repository), named C(.borgfleet-ir-<session>-<host>)).
    type: path
    required: true
  state:
    description:
      - V(present) makes a fresh copy (always; an older one is replaced), V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reports what would change; nothing is made or removed.
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: partial
    details: V(absent) is idempotent; V(present) makes a fresh copy every time (the state of the repository now).
'''

EXAMPLES = r'''
- name: Freeze db1's pgdata repository for a recovery session on recovery1
  borgfleet.backup.borg_repository_copy:
    repository: /srv/borg/db1/pgdata
    path: /srv/borg/db1/.borgfleet-ir-pg-yesterday-0123456789ab
  become: true
  become_user: borg

- name: Remove it
  borgfleet.backup.borg_repository_copy:
    repository: /srv/borg/db1/pgdata
    path: /srv/borg/db1/.borgfleet-ir-pg-yesterday-0123456789ab
    state: absent
'''

RETURN = r'''
path:
  description: The copy.
  returned: always
  type: str
copy:
  description: With V(present), the copy's figures - C(transaction) (the borg transaction it holds), C(segments)
    (linked segment files), C(uncommitted_dropped), C(locked_seconds) (under the repository's lock), C(seconds).
  returned: when a copy was made
  type: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec)
from ansible_collections.borgfleet.backup.plugins.module_utils import frozen
from ansible_collections.borgfleet.backup.plugins.module_utils.errors import RecoveryError


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(
        path=dict(type='path', required=True),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    try:
        borg = Borg.from_module(module)
        path = frozen.check_copy_path(p['repository'], p['path'])
        if p['state'] == 'absent':
            exists = os.path.lexists(path)
            if exists and not module.check_mode:
                frozen.remove(path)
            module.exit_json(changed=exists, path=path)
        if module.check_mode:
            module.exit_json(changed=True, path=path)
        borg.check_installed()
        module.exit_json(changed=True, path=path, copy=frozen.freeze(borg, path))
    except BorgError as e:
        module.fail_json(**e.to_fail_kwargs())
    except RecoveryError as e:
        module.fail_json(msg=e.msg)
    except OSError as e:
        module.fail_json(msg='frozen copy %s of %s: %s' % (p['path'], p['repository'], e))


if __name__ == '__main__':
    main()
