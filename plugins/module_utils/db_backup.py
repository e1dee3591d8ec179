# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: one database backup into borg, from a storage snapshot or by a
streamed dump, and the rule that chooses between them (used by the db_backup, snapshot and
db_dump modules).

- ``choose_method()``: method ``auto`` snapshots when every source path (data directory, WAL,
  tablespaces, extra paths) is on snapshot-capable storage, else dumps; it says why.
- ``snapshot_backup()``: clean up leftovers of interrupted runs, quiesce, snapshot, mount
  read-only at a stable path, ``borg create``, and always remove the snapshots.
- ``dump_backup()``: the engine's dump tool under ``borg create --content-from-command``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import validate_archive_name
from ansible_collections.borgfleet.backup.plugins.module_utils.snapshot import (
    SnapshotSet, storage_of, volumes_for)

METHODS = ('auto', 'snapshot', 'dump')
DUMP_COMPRESSION = 'auto,zstd,3'  # PostgreSQL custom dumps are compressed already; borg's auto mode notices


def snapshot_argument_spec():
    """Options of a snapshot backup (the snapshot and db_backup modules; doc fragment database_snapshot)."""
    return dict(
        name=dict(type='str', required=True),
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


def archive_summary(created):
    """The archive part of a borg create result, as every module returns it."""
    archive = created['archive']
    return dict(name=archive.get('name'), id=archive.get('id'), start=archive.get('start'),
                end=archive.get('end'), duration=archive.get('duration'), stats=archive.get('stats', {}))


# --- dump ---

def dump_plan(engine):
    """(argv, file name inside the archive) for this engine and database."""
    database = engine.database
    if engine.name == 'postgresql':
        if database:
            return engine.dump_command(), 'postgresql-%s.pgdump' % database
        return engine.dump_all_command(), 'postgresql-all.sql'
    suffix = {'mongodb': 'archive.gz'}.get(engine.name, 'sql')
    return engine.dump_command(), '%s-%s.%s' % (engine.name, database or 'all', suffix)


def dump_backup(borg, engine, archive_name, compression, check_mode):
    """Stream the engine's dump into a new archive (check mode: prove the database answers)."""
    validate_archive_name(archive_name)
    borg.version()
    argv, filename = dump_plan(engine)
    out = dict(changed=True, dump=dict(engine=engine.name, database=engine.database, file=filename, command=argv))
    if check_mode:
        engine.datadir()  # proves the database answers with these credentials
        return out
    created = borg.create_from_command(archive_name, argv, filename, compression=compression)
    out['archive'] = archive_summary(created)
    out['warnings_from_borg'] = created.get('warnings', [])
    return out


# --- snapshot ---

def source_paths(engine, datadir=None, extra_paths=()):
    """Real paths a snapshot must hold: the data directory (asked from the engine when not given),
    the engine's other directories (WAL, tablespaces) and ``extra_paths``, each once."""
    paths = [datadir or engine.datadir()] + engine.extra_dirs() + list(extra_paths)
    out = []
    for path in paths:
        path = os.path.realpath(path)
        if path not in out:
            out.append(path)
    return out


def storage_report(paths):
    """Each path's storage kind and whether it can be snapshotted; and whether all of them can."""
    storage = [dict(path=path, kind=st['kind'], snapshot_capable=st['snapshot_capable'])
               for path, st in ((path, storage_of(path)) for path in paths)]
    return storage, bool(storage) and all(st['snapshot_capable'] for st in storage)


def choose_method(method, storage):
    """(method used, why) for the requested method and the storage report of the source paths."""
    if method == 'dump':
        return 'dump', 'method dump requested'
    if method == 'snapshot':
        return 'snapshot', 'method snapshot requested'
    plain = [st for st in storage if not st['snapshot_capable']]
    if storage and not plain:
        return 'snapshot', 'auto: %s on snapshot-capable storage (%s)' % (
            ', '.join(st['path'] for st in storage), ', '.join(sorted(set(st['kind'] for st in storage))))
    if not storage:
        return 'dump', 'auto: no source path to snapshot'
    return 'dump', 'auto: %s cannot be snapshotted (%s storage)' % (
        ', '.join(st['path'] for st in plain), ', '.join(sorted(set(st['kind'] for st in plain))))


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


def _snapshot_and_create(p, borg, engine, paths, volumes):
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
    result['archive'] = archive_summary(created)
    result['warnings_from_borg'] = created.get('warnings', [])
    return result


def snapshot_backup(p, borg, engine, paths, capable, out, check_mode):
    """Clean up leftovers of earlier runs of backup ``p['name']``, then (state present) back up
    ``paths`` from a snapshot; results go into ``out``. Hold snapshot.RunLock around it.

    ``p`` holds the snapshot module's options (name, archive_name, state, mount_root,
    lvm_snapshot_size, postgresql_mode, freeze_timeout, exclude, compression, files_cache)."""
    present = p.get('state', 'present') == 'present'
    volumes = volumes_for(paths) if capable else []
    leftovers = SnapshotSet.leftovers(p['name'], p['mount_root'], volumes)
    if not leftovers.is_empty():
        out['cleaned'] = leftovers.describe() or [dict(mountpoint=leftovers.base)]
        out['changed'] = True
        if not check_mode:
            leftovers.remove()
    if not present:
        return
    out['changed'] = True
    if check_mode:
        # A plan, not a failure.
        out['snapshot'] = dict(volumes=[dict(kind=v['kind'], volume_root=v['volume_root']) for v in volumes],
                               paths=paths)
        return
    volumes_for(paths)  # raises with the reason when some path cannot be snapshotted
    out.update(_snapshot_and_create(p, borg, engine, paths, volumes))
