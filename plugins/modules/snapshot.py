#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: snapshot
short_description: Back up a running database from a consistent storage snapshot
description:
  - Quiesces the database engine only for the moment a storage snapshot takes, backs the snapshot up
    with borg, and always removes it again.
  - "MariaDB/MySQL: C(FLUSH TABLES WITH READ LOCK) held by one client session kept open on a pipe, bounded
    by O(freeze_timeout) (the lock request is killed after that, so writers are not blocked for long).
    PostgreSQL: C(CHECKPOINT) then an atomic snapshot when data, WAL and tablespaces share one volume, else
    C(pg_backup_start)/C(pg_backup_stop) in one session with the returned C(backup_label) written into the
    snapshot. MongoDB: C(db.fsyncLock())/C(db.fsyncUnlock())."
  - "Storage: btrfs (C(btrfs subvolume snapshot)) or LVM (C(lvcreate --snapshot)). The snapshot is mounted
    read-only at a stable path, C(<mount_root>/<name>/<original volume path>), and backed up with
    C(--files-cache ctime,size) so that unchanged files are not read again."
  - Snapshots and mounts carry the prefix C(borgfleet-<name>); leftovers of an interrupted run are removed
    before a new one starts, and V(state=absent) removes them alone.
version_added: 0.1.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - borgfleet.backup.database_login
  - borgfleet.backup.database_snapshot
  - ansible.builtin.action_common_attributes
options:
  state:
    description:
      - V(present) takes the snapshot, backs it up and removes it; V(absent) only removes leftovers of
        earlier runs of O(name).
    type: str
    choices: [present, absent]
    default: present
  archive_name:
    description:
      - Archive name template; required with V(state=present).
    type: str
  database:
    description:
      - Database to connect to (PostgreSQL, default C(postgres)).
    type: str
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reports the volumes that would be snapshotted and the leftovers that would be removed.
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: none
    details: Every V(state=present) run creates a new archive. V(state=absent) is idempotent.
notes:
  - Needs root (snapshots, mounts). LVM needs device-mapper; btrfs needs btrfs-progs.
  - Restore - extract the archive with C(strip_components) equal to the number of parts of
    O(mount_root) plus one and start the engine on the extracted data directory. It recovers as after a
    power loss (PostgreSQL in V(backup) mode reads the C(backup_label) stored in the archive).
'''

EXAMPLES = r'''
- name: Back up MariaDB from a btrfs snapshot
  borgfleet.backup.snapshot:
    repository: ssh://borg@backup1.example.com:22/srv/borg/db1/mariadb
    passphrase: "{{ vault_db_passphrase }}"
    name: mariadb
    archive_name: "mariadb-{now:%Y-%m-%dT%H:%M:%S}"
    engine: mariadb
  register: snap

- name: Remove leftovers of an interrupted run
  borgfleet.backup.snapshot:
    repository: /var/backups/borg/db1/mariadb
    name: mariadb
    engine: mariadb
    state: absent
'''

RETURN = r'''
archive:
  description: The archive created (name, id, start, end, duration, stats).
  returned: when a backup was made
  type: dict
freeze:
  description: How long writers were blocked.
  returned: when a backup was made
  type: dict
  contains:
    window:
      description: Seconds from asking for the lock to releasing it.
      type: float
    method:
      description: C(flush_tables_with_read_lock), C(checkpoint), C(backup_start_stop) or C(fsync_lock).
      type: str
    requested_at:
      description: Epoch time the lock was asked for.
      type: float
    acquired_at:
      description: Epoch time the lock was held (the snapshot followed).
      type: float
    released_at:
      description: Epoch time the lock was released.
      type: float
snapshot:
  description: The snapshots taken (C(volumes) - kind, snapshot, volume_root, mountpoint), the C(paths)
    archived, and when the snapshots were taken (C(started_at), C(finished_at), epoch; C(seconds)).
  returned: always
  type: dict
storage:
  description: Each source path (data directory, WAL, tablespaces) with its storage C(kind)
    (btrfs, lvm, plain) and C(snapshot_capable).
  returned: always
  type: list
  elements: dict
snapshot_capable:
  description: Whether every source path can be snapshotted; check mode reports it without failing, so a
    caller can choose a dump instead (the db_backup module decides by itself).
  returned: always
  type: bool
cleaned:
  description: Leftovers of earlier runs that were removed.
  returned: always
  type: list
  elements: dict
warnings_from_borg:
  description: Warnings borg reported.
  returned: when a backup was made
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec, validate_archive_name)
from ansible_collections.borgfleet.backup.plugins.module_utils.databases import (
    DatabaseError, connection_argument_spec, engine_from_params)
from ansible_collections.borgfleet.backup.plugins.module_utils.db_backup import (
    snapshot_argument_spec, snapshot_backup, source_paths, storage_report)
from ansible_collections.borgfleet.backup.plugins.module_utils.snapshot import RunLock, SnapshotError


def run(module, borg, engine, out):
    """Clean up leftovers of earlier runs, then (state=present) back up from a snapshot."""
    p = module.params
    if p['state'] == 'present':
        validate_archive_name(p['archive_name'])
        borg.version()
    try:
        paths = source_paths(engine, p['datadir'], p['extra_paths'])
    except DatabaseError:
        if p['state'] == 'present':
            raise
        # Cleaning up must work with the engine down: the state file says what we made.
        paths = []
    out['storage'], out['snapshot_capable'] = storage_report(paths)
    # Check mode reports snapshot_capable without failing (a plan); for real, plain storage fails.
    snapshot_backup(p, borg, engine, paths, out['snapshot_capable'], out, module.check_mode)


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(connection_argument_spec())
    argument_spec.update(snapshot_argument_spec())
    argument_spec.update(
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        archive_name=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE,
                           required_if=[('state', 'present', ['archive_name'])])
    p = module.params
    borg = Borg.from_module(module)
    try:
        # Checks every connection setting with the contract before anything runs.
        engine = engine_from_params(p)
    except DatabaseError as e:
        module.fail_json(**e.to_fail_kwargs())
    out = dict(changed=False, cleaned=[], snapshot={})
    try:
        with RunLock(p['name'], p['mount_root']):
            run(module, borg, engine, out)
    except (BorgError, DatabaseError, SnapshotError) as e:
        engine.close()
        module.fail_json(**e.to_fail_kwargs())
    engine.close()
    module.exit_json(**out)


if __name__ == '__main__':
    main()
