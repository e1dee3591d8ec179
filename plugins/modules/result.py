#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: result
short_description: Show a role's per-backup report and record it in the run's stats, in one task
description:
  - The result tail of the client-side roles (role C(borgfleet.backup.borg_common), C(tasks_from=result)). Builds
    the report of a looped borg module result registered with C(no_log) - one entry per backup, C(backup),
    C(client), C(repository), C(failed), C(skipped), C(changed), the listed module keys, never a secret - and
    returns it as C(msg), shown at every verbosity as M(ansible.builtin.debug) shows it.
  - With O(stats_key), records the report in the run's stats as M(ansible.builtin.set_stats) does with its
    defaults (aggregated over the hosts of the run, not per host), so one backup run needs one task for both.
  - Never fails; C(failures) names each failed backup with its message, for the task that then fails the host
    (a failed task's stats would be dropped, so the failure is a task of its own).
  - Runs on the controller only.
options:
  results:
    description:
      - The registered result of the loop over the backups (C(results) holds one result per item).
    type: dict
    required: true
  keys:
    description:
      - Module result keys the report shows.
    type: list
    elements: str
    default: []
  stats_key:
    description:
      - Key of the run's stats to record the report under; empty for none.
    type: str
  stats_keys:
    description:
      - Module result keys the stats hold.
    type: list
    elements: str
    default: []
  extra:
    description:
      - Entries appended to the report and to the stats (the role backup's database backups).
    type: list
    elements: dict
    default: []
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: It only reads what the loop before it registered.
  diff_mode:
    support: none
  platform:
    platforms: all
notes:
  - Idempotent - it only reads the registered result.
version_added: 0.3.0
author:
  - BorgFleet developers (@borgfleet)
'''

EXAMPLES = r'''
- name: borgfleet backup result
  borgfleet.backup.result:
    results: "{{ backups_raw }}"
    keys: [archive, warnings_from_borg]
    stats_key: borgfleet_backup
    stats_keys: [archive]
  register: report

- name: Stop if a backup failed
  ansible.builtin.fail:
    msg: "{{ report.failures }}"
  when: report.failures | length > 0
'''

RETURN = r'''
msg:
  description: The report, one entry per backup.
  returned: always
  type: list
  elements: dict
failures:
  description: Backup name -> message of each failed backup (empty when none failed).
  returned: always
  type: dict
'''
