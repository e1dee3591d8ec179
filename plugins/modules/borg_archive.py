#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_archive
short_description: Create or delete a borg archive
description:
  - V(state=present) runs C(borg create) and returns the new archive's figures.
  - V(state=absent) deletes one archive by its exact name (and compacts the repository if asked).
version_added: 0.1.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  state:
    description:
      - V(present) creates the archive; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  name:
    description:
      - "Archive name or template. Borg placeholders such as C({now:%Y-%m-%dT%H:%M:%S}), C({hostname}),
        C({utcnow}) are expanded by borg. With V(state=absent), the exact archive name."
      - "Letters, digits and C(. _ - @ + : ,) plus placeholders; anything else is refused."
    type: str
    required: true
  paths:
    description:
      - Paths to back up (required with V(state=present)).
    type: list
    elements: path
  exclude:
    description:
      - Exclude patterns (borg C(--exclude), default style C(fm:)).
    type: list
    elements: str
    default: []
  exclude_if_present:
    description:
      - Skip directories containing a file of this name.
    type: list
    elements: str
    default: []
  exclude_caches:
    description:
      - Skip directories tagged with a CACHEDIR.TAG.
    type: bool
    default: true
  one_file_system:
    description:
      - Stay on the file system of each path (do not descend into mounts).
    type: bool
    default: true
  compression:
    description:
      - Compression spec, for example C(lz4), C(zstd,3), C(auto,zstd,6), C(none).
    type: str
    default: lz4
  files_cache:
    description:
      - Files cache mode (C(--files-cache)), for example C(ctime,size,inode) (borg's default) or
        C(ctime,size) for snapshots mounted at a stable path with changing inode numbers.
    type: str
  timestamp:
    description:
      - Archive time to record instead of now (ISO 8601), for imports and tests.
    type: str
  compact:
    description:
      - With V(state=absent), run C(borg compact) after the delete to free space.
    type: bool
    default: false
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: V(state=present) runs C(borg create --dry-run) (reads every file, writes nothing).
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: partial
    details: A name template with a time placeholder creates a new archive each run; a fixed name that exists
      already is reported unchanged. Deleting a missing archive is unchanged.
'''

EXAMPLES = r'''
- name: Back up /etc
  borgfleet.backup.borg_archive:
    repository: ssh://borg@backup1.example.com:22/srv/borg/web1/etc
    passphrase: "{{ vault_etc_passphrase }}"
    ssh_key: /root/.ssh/borgfleet_ed25519
    ssh_known_hosts: /root/.ssh/borgfleet_known_hosts
    name: "etc-{now:%Y-%m-%dT%H:%M:%S}"
    paths: [/etc]
    exclude: ['*.swp', /etc/ssl/private]
    compression: zstd,3
  no_log: true
  register: backup

- name: Delete one archive and free its space
  borgfleet.backup.borg_archive:
    repository: /var/backups/borg/etc
    passcommand: cat /root/.borg-etc
    name: etc-2026-11-01T02:00:00
    state: absent
    compact: true
'''

RETURN = r'''
archive:
  description: The archive created (or found, or deleted).
  returned: always
  type: dict
  contains:
    name:
      description: Archive name, placeholders expanded.
      type: str
    id:
      description: Archive id (not in check mode).
      type: str
    start:
      description: Start time.
      type: str
    end:
      description: End time.
      type: str
    duration:
      description: Seconds borg spent.
      type: float
    stats:
      description: C(nfiles), C(original_size), C(compressed_size), C(deduplicated_size) (bytes).
      type: dict
repository:
  description: Repository figures after the run (total and unique sizes, chunks), when created.
  returned: with state=present, not in check mode
  type: dict
warnings_from_borg:
  description: Warnings borg reported (for example a file that vanished while being read).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec, validate_archive_name)


def has_placeholder(name):
    return '{' in name


def find_archive(borg, name):
    for archive in borg.list_archives():
        if archive.get('name') == name:
            return archive
    return None


def create(module, borg):
    p = module.params
    name = p['name']
    if not has_placeholder(name):
        existing = find_archive(borg, name)
        if existing:
            return False, dict(archive=dict(name=name, id=existing.get('id'), start=existing.get('start')),
                               warnings_from_borg=[])
    result = borg.create(name, p['paths'], exclude=p['exclude'], exclude_caches=p['exclude_caches'],
                         one_file_system=p['one_file_system'], compression=p['compression'],
                         files_cache=p['files_cache'], exclude_if_present=p['exclude_if_present'],
                         timestamp=p['timestamp'], dry_run=module.check_mode)
    archive = result['archive']
    summary = dict(name=archive.get('name', name), id=archive.get('id'), start=archive.get('start'),
                   end=archive.get('end'), duration=archive.get('duration'), stats=archive.get('stats', {}))
    out = dict(archive=summary, warnings_from_borg=result.get('warnings', []))
    if 'cache' in result:
        out['repository'] = result['cache'].get('stats', {})
    return True, out


def delete(module, borg):
    p = module.params
    existing = find_archive(borg, p['name'])
    if not existing:
        return False, dict(archive=dict(name=p['name']), warnings_from_borg=[])
    if not module.check_mode:
        borg.delete_archive(p['name'])
        if p['compact']:
            borg.compact()
    return True, dict(archive=dict(name=p['name'], id=existing.get('id'), start=existing.get('start')),
                      warnings_from_borg=[])


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        name=dict(type='str', required=True),
        paths=dict(type='list', elements='path'),
        exclude=dict(type='list', elements='str', default=[]),
        exclude_if_present=dict(type='list', elements='str', default=[]),
        exclude_caches=dict(type='bool', default=True),
        one_file_system=dict(type='bool', default=True),
        compression=dict(type='str', default='lz4'),
        files_cache=dict(type='str'),
        timestamp=dict(type='str'),
        compact=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE,
                           required_if=[('state', 'present', ['paths'])])
    borg = Borg.from_module(module)
    try:
        validate_archive_name(module.params['name'])
        borg.check_installed()
        if module.params['state'] == 'present':
            changed, out = create(module, borg)
        else:
            changed, out = delete(module, borg)
    except BorgError as e:
        module.fail_json(**e.to_fail_kwargs())
    module.exit_json(changed=changed, **out)


if __name__ == '__main__':
    main()
