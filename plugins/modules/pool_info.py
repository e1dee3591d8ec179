#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pool_info
short_description: Capacity of a backup server's storage pools and the size of each repository in them
description:
  - For each storage pool, the capacity and free space of its filesystem, every borg repository under it with
    its size on disk (C(du)), and a warning when the filesystem is used beyond O(warn_percent).
  - Merges in the borg figures (original and deduplicated size, archive count, last archive) that each client
    read from its own repositories with M(borgfleet.backup.borg_repository_stats); this module never runs borg,
    so it needs no passphrase.
version_added: 0.2.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  pools:
    description:
      - The pools, as in C(borgfleet_storage_pools).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Pool name.
        type: str
        required: true
      path:
        description: Absolute path of the pool.
        type: path
        required: true
  repository_stats:
    description:
      - Per-repository figures read by the clients. Each entry has C(server) (inventory name of its backup
        server, or V(local)), C(local), C(client), C(name) (backup), C(repository_path), and either C(failed)
        with C(msg) or C(stats), C(archive_count), C(backup_archive_count), C(last_archive).
      - Entries of other servers are ignored (see O(server)).
    type: list
    elements: dict
    default: []
  server:
    description:
      - Inventory name of this host. Only entries of O(repository_stats) whose repositories live here are used
        (C(server) equal to it, or C(local) entries of the client of that name). Empty uses every entry.
    type: str
    default: ''
  warn_percent:
    description:
      - Warn when a pool's filesystem is used to this percentage or more.
    type: int
    default: 80
  timeout:
    description:
      - Seconds a filesystem query may take.
    type: int
    default: 5
  size_timeout:
    description:
      - Seconds C(du) may take for one repository.
    type: int
    default: 120
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Read-only; runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    description: Read-only, so running it again changes nothing.
    support: full
'''

EXAMPLES = r'''
- name: Analyse this backup server's pools
  borgfleet.backup.pool_info:
    pools: "{{ borgfleet_storage_pools }}"
    warn_percent: 85
  register: pools
'''

RETURN = r'''
pools:
  description: One entry per pool.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: "Pool name.", type: str}
    path: {description: "Pool path.", type: str}
    exists: {description: "Whether the pool directory exists.", type: bool}
    mountpoint: {description: "Filesystem holding the pool.", type: str}
    fstype: {description: "Its type.", type: str}
    device: {description: "Its device.", type: str}
    total_bytes: {description: "Filesystem size.", type: int}
    used_bytes: {description: "Used.", type: int}
    free_bytes: {description: "Available (as df).", type: int}
    used_percent: {description: "Used percentage (as df Use%).", type: float}
    warn: {description: "used_percent >= O(warn_percent).", type: bool}
    repositories_size_bytes: {description: "Sum of the repositories' sizes on disk.", type: int}
    repositories:
      description: Repositories under the pool (found on disk, or known from O(repository_stats)).
      type: list
      elements: dict
      contains:
        path: {description: "Repository path.", type: str}
        client: {description: "Owning client (inventory name).", type: str}
        backup: {description: "Backup name.", type: str}
        exists: {description: "Whether it exists on disk.", type: bool}
        size_on_disk_bytes: {description: "du of the repository directory.", type: int}
        borg:
          description: C(stats) (original_size, compressed_size, deduplicated_size, total_chunks, unique_chunks),
            C(archive_count), C(backup_archive_count), C(last_archive) (name, time); null when no client read it.
          type: dict
        borg_error: {description: "Why the client could not read it.", type: str}
alerts:
  description: Human-readable warnings (pool over the threshold, missing pool, unreadable repository).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.facts import analyze_pool, stats_for_host
from ansible_collections.borgfleet.backup.plugins.module_utils.probes import Probe


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pools=dict(type='list', elements='dict', required=True,
                       options=dict(name=dict(type='str', required=True), path=dict(type='path', required=True))),
            repository_stats=dict(type='list', elements='dict', default=[]),
            server=dict(type='str', default=''),
            warn_percent=dict(type='int', default=80),
            timeout=dict(type='int', default=5),
            size_timeout=dict(type='int', default=120),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not 0 < p['warn_percent'] <= 100:
        module.fail_json(msg='warn_percent must be between 1 and 100, got %s' % p['warn_percent'])
    probe = Probe(timeout=p['timeout'])
    entries = stats_for_host(p['repository_stats'], p['server'])
    pools, warnings = [], []
    for pool in p['pools']:
        result = analyze_pool(probe, pool, entries, p['warn_percent'], p['size_timeout'])
        pools.append(result)
        if not result['exists']:
            warnings.append('pool %s: %s does not exist' % (result['name'], result['path']))
        elif result['warn']:
            warnings.append('pool %s (%s) is %.1f%% full (threshold %d%%): %d bytes free'
                            % (result['name'], result['path'], result['used_percent'], p['warn_percent'],
                               result['free_bytes']))
        for repo in result['repositories']:
            if repo.get('borg_error'):
                warnings.append('repository %s: %s' % (repo['path'], repo['borg_error']))
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, pools=pools, alerts=warnings)


if __name__ == '__main__':
    main()
