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
  - ansible.builtin.action_common_attributes
options:
  state:
    description:
      - V(present) takes the snapshot, backs it up and removes it; V(absent) only removes leftovers of
        earlier runs of O(name).
    type: str
    choices: [present, absent]
    default: present
  name:
    description:
      - Backup name; names the snapshots (C(borgfleet-<name>-<n>)) and the stable mount path.
    type: str
    required: true
  archive_name:
    description:
      - Archive name template; required with V(state=present).
    type: str
  engine:
    description:
      - Database engine to quiesce.
    type: str
    required: true
    choices: [mariadb, mysql, postgresql, mongodb]
  datadir:
    description:
      - Data directory; asked from the running engine when omitted.
    type: path
  extra_paths:
    description:
      - More paths that must be in the same snapshot (for example a WAL or InnoDB log directory the engine
        does not report). pg_wal and tablespaces outside the data directory are found automatically.
    type: list
    elements: path
    default: []
  postgresql_mode:
    description:
      - V(auto) uses V(checkpoint) when one volume holds everything, else V(backup) (pg_backup_start/stop).
    type: str
    choices: [auto, checkpoint, backup]
    default: auto
  freeze_timeout:
    description:
      - Seconds to wait for the engine's lock before giving up (the freeze is aborted, the backup fails).
    type: int
    default: 10
  lvm_snapshot_size:
    description:
      - Size of LVM snapshots, for C(lvcreate) (C(--size 2G) or, with a C(%), C(--extents 20%ORIGIN)).
        Use the size recommended by C(server_facts).
    type: str
    default: 20%ORIGIN
  mount_root:
    description:
      - Where snapshots are mounted; keep it stable between runs (borg's files cache is keyed by path).
    type: path
    default: /run/borgfleet/snapshots
  exclude:
    description:
      - Exclude patterns (borg C(--exclude)).
    type: list
    elements: str
    default: []
  compression:
    description:
      - Compression spec.
    type: str
    default: lz4
  files_cache:
    description:
      - Files cache mode; inode numbers differ between snapshots, so the default leaves them out.
    type: str
    default: ctime,size
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
    role can fall back to a dump.
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

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec, validate_archive_name)
from ansible_collections.borgfleet.backup.plugins.module_utils.databases import (
    DatabaseError, connection_argument_spec, engine_from_params)
from ansible_collections.borgfleet.backup.plugins.module_utils.snapshot import (
    RunLock, SnapshotError, SnapshotSet, storage_of, volumes_for)


def source_paths(module, engine):
    datadir = module.params['datadir'] or engine.datadir()
    paths = [datadir] + engine.extra_dirs() + list(module.params['extra_paths'])
    out = []
    for path in paths:
        path = os.path.realpath(path)
        if path not in out:
            out.append(path)
    return out


def archive_paths(snapset, paths):
    """Stable paths of the sources under the mount, without one nested inside another."""
    mapped = sorted(set(snapset.path_in_snapshot(p) for p in paths))
    return [p for p in mapped if not any(p.startswith(q.rstrip('/') + '/') for q in mapped if q != p)]


def complete_pg_backup(snapset, freeze, datadir):
    """Add what a pg_backup_start/stop copy needs to the writable snapshot: backup_label,
    tablespace_map and the WAL segments written between start and stop (complete: stop
    switched to a new segment), like pg_basebackup's fetch mode."""
    for filename, content in sorted(freeze.files.items()):
        snapset.add_file(os.path.join(datadir, filename), content)
    first, last = freeze.wal_range
    wal_dir = os.path.realpath(os.path.join(datadir, 'pg_wal'))
    for segment in sorted(os.listdir(wal_dir)):
        if len(segment) == 24 and first <= segment <= last:
            with open(os.path.join(wal_dir, segment), 'rb') as f:
                snapset.add_file(os.path.join(wal_dir, segment), f.read())


def backup(module, borg, engine, paths, volumes):
    p = module.params
    snapset = SnapshotSet(p['name'], p['mount_root'], p['lvm_snapshot_size'])
    pg_mode = p['postgresql_mode']
    if pg_mode == 'auto':
        pg_mode = 'checkpoint' if len(volumes) == 1 else 'backup'
    freeze_kwargs = dict(timeout=p['freeze_timeout'])
    if engine.name == 'postgresql':
        freeze_kwargs['mode'] = pg_mode
    writable = engine.name == 'postgresql' and pg_mode == 'backup'
    result = {}
    try:
        freeze = engine.freeze(**freeze_kwargs)
        with freeze:
            started = time.time()
            snapset.create(volumes, writable=writable)
            finished = time.time()
        snapset.mount(writable=writable)
        if writable:
            complete_pg_backup(snapset, freeze, paths[0])
            snapset.seal()
        targets = archive_paths(snapset, paths)
        result['snapshot'] = dict(volumes=snapset.describe(), paths=targets, started_at=started,
                                  finished_at=finished, seconds=round(finished - started, 3))
        result['freeze'] = freeze.as_dict()
        created = borg.create(p['archive_name'], targets, exclude=p['exclude'], compression=p['compression'],
                              files_cache=p['files_cache'])
    finally:
        # Always: a failing borg, a failing mount or a failing freeze leaves nothing behind.
        try:
            snapset.remove()
        finally:
            engine.close()
    archive = created['archive']
    result['archive'] = dict(name=archive.get('name'), id=archive.get('id'), start=archive.get('start'),
                             end=archive.get('end'), duration=archive.get('duration'),
                             stats=archive.get('stats', {}))
    result['warnings_from_borg'] = created.get('warnings', [])
    return result


def run(module, borg, engine, out):
    """Clean up leftovers of earlier runs, then (state=present) back up from a snapshot."""
    p = module.params
    if p['state'] == 'present':
        validate_archive_name(p['archive_name'])
        borg.version()
    try:
        paths = source_paths(module, engine)
    except DatabaseError:
        if p['state'] == 'present':
            raise
        # Cleaning up must work with the engine down: the state file says what we made.
        paths = []
    storage = [dict(path=path, kind=st['kind'], snapshot_capable=st['snapshot_capable'])
               for path, st in ((path, storage_of(path)) for path in paths)]
    out['storage'] = storage
    out['snapshot_capable'] = bool(storage) and all(st['snapshot_capable'] for st in storage)
    volumes = volumes_for(paths) if out['snapshot_capable'] else []
    leftovers = SnapshotSet.leftovers(p['name'], p['mount_root'], volumes)
    if not leftovers.is_empty():
        out['cleaned'] = leftovers.describe() or [dict(mountpoint=leftovers.base)]
        out['changed'] = True
        if not module.check_mode:
            leftovers.remove()
    if p['state'] == 'present':
        out['changed'] = True
        if module.check_mode:
            # A plan, not a failure: roles ask this to choose between snapshot and dump.
            out['snapshot'] = dict(volumes=[dict(kind=v['kind'], volume_root=v['volume_root'])
                                            for v in volumes], paths=paths)
        else:
            volumes_for(paths)  # raises with the reason when some path cannot be snapshotted
            out.update(backup(module, borg, engine, paths, volumes))


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(connection_argument_spec())
    argument_spec.update(
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        name=dict(type='str', required=True),
        archive_name=dict(type='str'),
        datadir=dict(type='path'),
        extra_paths=dict(type='list', elements='path', default=[]),
        postgresql_mode=dict(type='str', choices=['auto', 'checkpoint', 'backup'], default='auto'),
        freeze_timeout=dict(type='int', default=10),
        lvm_snapshot_size=dict(type='str', default='20%ORIGIN'),
        mount_root=dict(type='path', default='/run/borgfleet/snapshots'),
        exclude=dict(type='list', elements='str', default=[]),
        compression=dict(type='str', default='lz4'),
        files_cache=dict(type='str', default='ctime,size'),
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
