#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_archive_info
short_description: List borg archives with their figures, or browse the content of one archive
description:
  - Without O(archive), lists the archives of a repository (optionally only those matching a glob), with
    their statistics when O(stats=true).
  - With O(archive), lists the items of that archive under O(path), at most O(limit) of them.
version_added: 0.1.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  archive:
    description:
      - Exact archive name whose content to list.
    type: str
  match_archives:
    description:
      - Shell-style glob limiting the archives listed, for example C(etc-*) for one backup's archives.
    type: str
  last:
    description:
      - Only the last N archives (after O(match_archives)).
    type: int
  stats:
    description:
      - Include each archive's statistics (C(borg info); slower on large repositories).
    type: bool
    default: false
  path:
    description:
      - With O(archive), only items under these paths inside the archive (no leading slash needed).
    type: list
    elements: str
    default: []
  limit:
    description:
      - With O(archive), the most items returned; RV(truncated) says when there were more.
    type: int
    default: 1000
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
'''

EXAMPLES = r'''
- name: Archives of the etc backup, with sizes
  borgfleet.backup.borg_archive_info:
    repository: /var/backups/borg/etc
    passcommand: cat /root/.borg-etc
    match_archives: "etc-*"
    stats: true
  register: listing

- name: What is under etc/nginx in one archive
  borgfleet.backup.borg_archive_info:
    repository: /var/backups/borg/etc
    passcommand: cat /root/.borg-etc
    archive: etc-2026-11-01T02:00:00
    path: [etc/nginx]
    limit: 200
'''

RETURN = r'''
archives:
  description: Archives, oldest first.
  returned: without archive
  type: list
  elements: dict
  contains:
    name:
      description: Archive name.
      type: str
    id:
      description: Archive id.
      type: str
    start:
      description: Start time (with stats) or archive time.
      type: str
    end:
      description: End time (with stats).
      type: str
    duration:
      description: Seconds the backup took (with stats).
      type: float
    stats:
      description: C(nfiles), C(original_size), C(compressed_size), C(deduplicated_size) (with stats).
      type: dict
contents:
  description: Items of the archive (path, type, mode, user, group, size, mtime, linktarget).
  returned: with archive
  type: list
  elements: dict
truncated:
  description: Whether more items existed than O(limit).
  returned: with archive
  type: bool
repository:
  description: Repository figures (with stats).
  returned: with stats
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec)

ITEM_KEYS = ('path', 'type', 'mode', 'user', 'group', 'size', 'mtime', 'linktarget')


def list_archives(module, borg):
    p = module.params
    if p['stats']:
        info = borg.archive_info(match_archives=p['match_archives'], last=p['last'])
        archives = [dict(name=a.get('name'), id=a.get('id'), start=a.get('start'), end=a.get('end'),
                         duration=a.get('duration'), stats=a.get('stats', {}))
                    for a in info.get('archives', [])]
        return dict(archives=archives, repository=(info.get('cache') or {}).get('stats', {}))
    archives = [dict(name=a.get('name'), id=a.get('id'), start=a.get('start') or a.get('time'))
                for a in borg.list_archives(match_archives=p['match_archives'], last=p['last'])]
    return dict(archives=archives)


def list_contents(module, borg):
    p = module.params
    items, truncated = borg.list_contents(p['archive'], paths=[x.lstrip('/') for x in p['path']],
                                          limit=p['limit'])
    contents = [dict((k, item.get(k)) for k in ITEM_KEYS) for item in items]
    return dict(contents=contents, truncated=truncated)


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(
        archive=dict(type='str'),
        match_archives=dict(type='str'),
        last=dict(type='int'),
        stats=dict(type='bool', default=False),
        path=dict(type='list', elements='str', default=[]),
        limit=dict(type='int', default=1000),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE + [('archive', 'match_archives')])
    borg = Borg.from_module(module)
    try:
        borg.check_installed()
        out = list_contents(module, borg) if module.params['archive'] else list_archives(module, borg)
    except BorgError as e:
        module.fail_json(**e.to_fail_kwargs())
    module.exit_json(changed=False, **out)


if __name__ == '__main__':
    main()
