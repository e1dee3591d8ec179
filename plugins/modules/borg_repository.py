#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_repository
short_description: Initialise a borg repository and report on it
description:
  - Creates a borg repository when it does not exist (C(borg init)), and returns its id, encryption and sizes.
  - An existing repository is never re-initialised; a wrong passphrase fails and changes nothing.
version_added: 0.1.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  create:
    description:
      - When V(true), create the repository if it is missing. When V(false), only report on it (and fail if it
        does not exist).
    type: bool
    default: true
  encryption:
    description:
      - Encryption mode for a new repository. C(keyfile*) modes keep the key in the client's borg config
        directory (back it up!), C(repokey*) in the repository.
    type: str
    choices: [repokey-blake2, repokey, keyfile-blake2, keyfile, authenticated-blake2, authenticated, none]
    default: repokey-blake2
  append_only:
    description:
      - Make the repository append-only (deletions only marked until a non-append-only compact).
      - Applied at creation; for an existing local repository it is changed with C(borg config).
        An existing remote repository cannot be changed from the client (the server role does it).
    type: bool
  make_parent_dirs:
    description:
      - Create missing parent directories of the repository.
    type: bool
    default: true
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
notes:
  - The passphrase reaches borg through the environment only.
'''

EXAMPLES = r'''
- name: Create the repository of the etc backup
  borgfleet.backup.borg_repository:
    repository: ssh://borg@backup1.example.com:22/srv/borg/web1/etc
    passphrase: "{{ vault_etc_passphrase }}"
    ssh_key: /root/.ssh/borgfleet_ed25519
    ssh_known_hosts: /root/.ssh/borgfleet_known_hosts
  no_log: true

- name: Read a repository's figures
  borgfleet.backup.borg_repository:
    repository: /var/backups/borg/etc
    passcommand: cat /root/.borg-etc
    create: false
  register: repo
'''

RETURN = r'''
created:
  description: Whether the repository was created by this run (in check mode, would be created).
  returned: always
  type: bool
repository:
  description: The repository as borg reports it.
  returned: when the repository exists (after creation, not in check mode)
  type: dict
  contains:
    id:
      description: Repository id.
      type: str
    location:
      description: Repository location.
      type: str
    encryption:
      description: Encryption mode.
      type: str
    last_modified:
      description: Time of the last change.
      type: str
    stats:
      description: borg's cache stats (total_size, total_csize, unique_size, unique_csize, total_chunks,
        total_unique_chunks).
      type: dict
    append_only:
      description: Append-only flag (local repositories only; null when not readable from here).
      type: bool
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec)


def summarize(info, append_only):
    repo = info.get('repository', {})
    return dict(
        id=repo.get('id'),
        location=repo.get('location'),
        last_modified=repo.get('last_modified'),
        encryption=(info.get('encryption') or {}).get('mode'),
        stats=(info.get('cache') or {}).get('stats', {}),
        append_only=append_only,
    )


def read_append_only(borg):
    if borg.settings.is_remote:
        return None
    return borg.config_get('append_only') == '1'


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(
        create=dict(type='bool', default=True),
        encryption=dict(type='str', default='repokey-blake2',
                        choices=['repokey-blake2', 'repokey', 'keyfile-blake2', 'keyfile',
                                 'authenticated-blake2', 'authenticated', 'none']),
        append_only=dict(type='bool'),
        make_parent_dirs=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    borg = Borg.from_module(module)
    changed = created = False
    try:
        borg.check_installed()
        exists = borg.exists()
        if not p['create'] and not exists:
            module.fail_json(msg='repository %s does not exist' % p['repository'], error_kind='repository_missing')
        if not exists:
            created = changed = True
            if module.check_mode:
                module.exit_json(changed=True, created=True)
            borg.init(encryption=p['encryption'], append_only=bool(p['append_only']),
                      make_parent_dirs=p['make_parent_dirs'])
        append_only = read_append_only(borg)
        if p['create'] and p['append_only'] is not None and append_only is not None \
                and append_only != p['append_only']:
            changed = True
            if not module.check_mode:
                borg.config_set('append_only', '1' if p['append_only'] else '0')
            append_only = p['append_only']
        info = borg.info()
    except BorgError as e:
        module.fail_json(**e.to_fail_kwargs())
    module.exit_json(changed=changed, created=created, repository=summarize(info, append_only))


if __name__ == '__main__':
    main()
