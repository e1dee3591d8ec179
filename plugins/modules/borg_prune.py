#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_prune
short_description: Apply a retention to one backup's archives
description:
  - Runs C(borg prune) on the archives matching O(match_archives) only, keeping what the rules say, then
    C(borg compact) to free the space when something was pruned.
  - In check mode runs C(borg prune --dry-run) and returns exactly what would be kept (with the rule that keeps
    each) and what would be pruned.
version_added: 0.1.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  match_archives:
    description:
      - Glob selecting the archives this retention applies to, for example C(etc-*). Required so that one
        backup's retention never prunes another backup's archives; pass C(*) to mean all archives.
    type: str
    required: true
  keep_within:
    description:
      - Keep every archive younger than this interval (C(2d), C(12H), C(1w), C(1m), C(1y)).
    type: str
  keep_secondly:
    description: Number of secondly archives to keep.
    type: int
  keep_minutely:
    description: Number of minutely archives to keep.
    type: int
  keep_hourly:
    description: Number of hourly archives to keep.
    type: int
  keep_daily:
    description: Number of daily archives to keep.
    type: int
  keep_weekly:
    description: Number of weekly archives to keep.
    type: int
  keep_monthly:
    description: Number of monthly archives to keep.
    type: int
  keep_yearly:
    description: Number of yearly archives to keep.
    type: int
  compact:
    description:
      - Run C(borg compact) after pruning to free the space (it does nothing on an append-only repository).
    type: bool
    default: true
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: A real C(borg prune --dry-run).
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: full
notes:
  - At least one keep rule is required; a prune with no rule would delete every matching archive.
'''

EXAMPLES = r'''
- name: Keep 7 daily, 4 weekly and 6 monthly archives of the etc backup
  borgfleet.backup.borg_prune:
    repository: /var/backups/borg/etc
    passcommand: cat /root/.borg-etc
    match_archives: "etc-*"
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 6

- name: What would a 2-day retention remove?
  borgfleet.backup.borg_prune:
    repository: /var/backups/borg/etc
    passcommand: cat /root/.borg-etc
    match_archives: "etc-*"
    keep_within: 2d
  check_mode: true
  register: plan
'''

RETURN = r'''
kept:
  description: "Archives kept, each with the rule that keeps it, for example V(daily #1)."
  returned: always
  type: list
  elements: dict
pruned:
  description: Archives pruned (or, in check mode, that would be pruned).
  returned: always
  type: list
  elements: dict
compacted:
  description: Whether C(borg compact) ran.
  returned: always
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec)

RULES = ('within', 'secondly', 'minutely', 'hourly', 'daily', 'weekly', 'monthly', 'yearly')


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(
        match_archives=dict(type='str', required=True),
        keep_within=dict(type='str'),
        compact=dict(type='bool', default=True),
    )
    for rule in RULES[1:]:
        argument_spec['keep_%s' % rule] = dict(type='int')
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE,
                           required_one_of=[['keep_%s' % r for r in RULES]])
    p = module.params
    keep = dict((rule, p['keep_%s' % rule]) for rule in RULES if p['keep_%s' % rule])
    borg = Borg.from_module(module)
    compacted = False
    try:
        borg.check_installed()
        outcome = borg.prune(p['match_archives'], keep, dry_run=module.check_mode)
        if outcome['pruned'] and p['compact'] and not module.check_mode:
            borg.compact()
            compacted = True
    except BorgError as e:
        module.fail_json(**e.to_fail_kwargs())
    module.exit_json(changed=bool(outcome['pruned']), kept=outcome['kept'], pruned=outcome['pruned'],
                     compacted=compacted)


if __name__ == '__main__':
    main()
