#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: resolve_backups
short_description: Validate and resolve a client's backups once (the inventory contract)
description:
  - Applies the inventory contract (docs/contract.md, C(plugins/module_utils/contract.py)) to this host's
    backups and returns them resolved - repository URL, archive name template, retention - in O(backups) of
    the result.
  - Fails with the contract's plain message when a backup is invalid, or when O(limit) names a backup no
    host of the play has (the message lists every host's backups). A host without the backup O(limit) names
    gets an empty list.
  - The role C(borgfleet.backup.borg_common) runs it once per play and registers the result; the other roles
    read C(_borgfleet_backups) from there.
  - Runs on the controller only; it reads the backup servers' settings from C(hostvars).
options:
  backups:
    description:
      - The host's C(borgfleet_backups).
    type: list
    elements: dict
    default: []
  limit:
    description:
      - The C(borgfleet_backup) extra var - only the backup of this name; empty for all.
    type: str
  backup_server:
    description:
      - The host's C(borgfleet_backup_server) - an inventory host of group C(backup_servers), or C(local);
        empty for the first host of C(backup_servers).
    type: str
  local_pool_path:
    description:
      - Where the repositories of a C(local) backup server live.
    type: str
    default: /var/lib/borgfleet/repos
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
    details: It only reads the inventory.
  diff_mode:
    support: none
  platform:
    platforms: all
notes:
  - The result carries the passphrases, so the action hides it itself (as C(no_log) would); a failure shows
    its message, which never holds a secret.
  - Idempotent - it only reads the inventory.
version_added: 0.2.0
author:
  - BorgFleet developers (@borgfleet)
'''

EXAMPLES = r'''
- name: Resolve this client's backups
  borgfleet.backup.resolve_backups:
    backups: "{{ borgfleet_backups }}"
    limit: "{{ borgfleet_backup }}"
    backup_server: "{{ borgfleet_backup_server }}"
    local_pool_path: "{{ borgfleet_local_pool_path }}"
  register: resolved
'''

RETURN = r'''
backups:
  description:
    - The resolved backups - name, client, server, local, pool, client_dir, repository_path, repository,
      archive_name, match_archives, paths, exclude, exclude_caches, one_file_system, compression, files_cache,
      encryption, append_only, retention, schedule, passphrase, passcommand, timezone, enabled, description,
      databases, snapshot and (remote servers) server_endpoint.
    - Items carry the passphrase - loop over them with C(no_log).
  returned: success
  type: list
  elements: dict
public_backups:
  description: The same without passphrase, passcommand and databases.
  returned: success
  type: list
  elements: dict
'''
