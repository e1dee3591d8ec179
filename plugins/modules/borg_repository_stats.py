#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_repository_stats
short_description: Sizes, archive count and last archive of a borg repository
description:
  - Reads a repository with C(borg info --json) (original, compressed and deduplicated sizes of all its archives)
    and C(borg list --json) (archive count, last archive). Used by the pool analysis; runs on the client that owns
    the repository, with its passphrase and SSH key.
  - Read-only; never creates the repository.
version_added: 0.2.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  match_archives:
    description:
      - Glob of this backup's archives (for example C(etc-*)); C(backup_archive_count) and C(last_archive) count
        only these. Without it, every archive counts.
    type: str
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    description: Read-only, so running it again changes nothing.
    support: full
'''

EXAMPLES = r'''
- name: Figures of the etc repository
  borgfleet.backup.borg_repository_stats:
    repository: ssh://borg@backup1.example.com:22/srv/borg/web1/etc
    passphrase: "{{ vault_etc_passphrase }}"
    match_archives: etc-*
  register: repo_stats
'''

RETURN = r'''
repository:
  description: C(id), C(location), C(encryption), C(last_modified) of the repository.
  returned: success
  type: dict
stats:
  description: Totals over every archive in the repository, in bytes.
  returned: success
  type: dict
  contains:
    original_size: {description: "Sum of the archives' original sizes.", type: int}
    compressed_size: {description: "The same after compression.", type: int}
    deduplicated_size: {description: "Unique compressed data, what the repository really stores.", type: int}
    total_chunks: {description: "Chunk references.", type: int}
    unique_chunks: {description: "Distinct chunks.", type: int}
archive_count:
  description: Archives in the repository.
  returned: success
  type: int
backup_archive_count:
  description: Archives matching O(match_archives) (all archives without it).
  returned: success
  type: int
last_archive:
  description: C(name) and C(time) (start, local time of the client as borg records it) of the newest matching
    archive; null when there is none.
  returned: success
  type: dict
duration:
  description: Seconds the borg calls took.
  returned: success
  type: float
'''

import fnmatch
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec)


def summarize(info, archives, matching):
    repo = info.get('repository') or {}
    stats = (info.get('cache') or {}).get('stats') or {}
    last = matching[-1] if matching else None  # borg lists oldest first
    return dict(
        repository=dict(id=repo.get('id'), location=repo.get('location'),
                        encryption=(info.get('encryption') or {}).get('mode'),
                        last_modified=repo.get('last_modified')),
        stats=dict(original_size=stats.get('total_size'), compressed_size=stats.get('total_csize'),
                   deduplicated_size=stats.get('unique_csize'), total_chunks=stats.get('total_chunks'),
                   unique_chunks=stats.get('total_unique_chunks')),
        archive_count=len(archives),
        backup_archive_count=len(matching),
        last_archive=dict(name=last.get('name'), time=last.get('start') or last.get('time')) if last else None,
    )


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(match_archives=dict(type='str'))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE)
    borg = Borg.from_module(module)
    started = time.time()
    try:
        borg.version()
        info = borg.info()
        archives = borg.list_archives()
    except BorgError as e:
        module.fail_json(**e.to_fail_kwargs())
    pattern = module.params['match_archives']
    # Archive names are plain ([A-Za-z0-9._-] + a timestamp): fnmatch agrees with borg's glob here
    # and saves a second listing over SSH.
    matching = [a for a in archives if fnmatch.fnmatchcase(a.get('name', ''), pattern)] if pattern else archives
    module.exit_json(changed=False, duration=round(time.time() - started, 3),
                     **summarize(info, archives, matching))


if __name__ == '__main__':
    main()
