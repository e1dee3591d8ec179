#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: db_backup
short_description: Back up one database into borg, from a storage snapshot when it can, else by a streamed dump
description:
  - Decides how to back up a running database and does it, returning one outcome.
  - O(method=auto) probes the storage of every source path (data directory, WAL, tablespaces, O(extra_paths));
    when all of them are on btrfs or LVM it backs up from a snapshot (as M(borgfleet.backup.snapshot) does),
    else it streams a dump into borg (as M(borgfleet.backup.db_dump) does). RV(method) and RV(method_reason)
    say which and why. O(method=snapshot) fails on plain storage; O(method=dump) never probes the storage.
  - This is what the C(db_snapshot) role (and so C(backup.yml)) runs for each backup with C(databases).
version_added: 0.3.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - borgfleet.backup.database_login
  - borgfleet.backup.database_snapshot
  - ansible.builtin.action_common_attributes
options:
  method:
    description:
      - V(auto) snapshots on snapshot-capable storage and dumps otherwise; V(snapshot) and V(dump) force one.
    type: str
    choices: [auto, snapshot, dump]
    default: auto
  archive_name:
    description:
      - Archive name template, with borg placeholders (the roles use C(<backup>-{now:%Y-%m-%dT%H:%M:%S})).
    type: str
    required: true
  database:
    description:
      - One database to dump (all of them when omitted); for a snapshot, the database to connect to
        (PostgreSQL, default C(postgres)).
    type: str
  dump_compression:
    description:
      - Compression spec of a dump (O(compression) is the one of a snapshot backup). PostgreSQL custom dumps are
        compressed already; borg's C(auto) mode notices.
    type: str
    default: auto,zstd,3
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Chooses the method and reports the plan (the volumes to snapshot, or the dump command after a query
      proves the database answers); nothing is frozen or written.
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: none
    details: Every run creates a new archive.
notes:
  - Needs root for snapshots (mounts). Restore as described for M(borgfleet.backup.snapshot) and
    M(borgfleet.backup.db_dump).
'''

EXAMPLES = r'''
- name: Back up MariaDB (snapshot on btrfs/LVM, else a dump)
  borgfleet.backup.db_backup:
    repository: ssh://borg@backup1.example.com:22/srv/borg/db1/mariadb
    passphrase: "{{ vault_db_passphrase }}"
    name: mariadb
    archive_name: "mariadb-{now:%Y-%m-%dT%H:%M:%S}"
    engine: mariadb
    defaults_file: /etc/mysql/debian.cnf
  register: db_backup
  no_log: true

- name: Show how it was backed up
  ansible.builtin.debug:
    msg: "{{ db_backup.method }}: {{ db_backup.method_reason }}"
'''

RETURN = r'''
engine:
  description: The database engine (O(engine)).
  returned: always
  type: str
method:
  description: How the backup was (or, failed, would have been) made - C(snapshot) or C(dump).
  returned: when the method was chosen
  type: str
method_reason:
  description: Why that method, for example C(auto - /var/lib/mysql cannot be snapshotted (plain storage)).
  returned: when the method was chosen
  type: str
storage:
  description: Each source path with its storage C(kind) (btrfs, lvm, plain) and C(snapshot_capable).
  returned: when the storage was probed (method auto or snapshot)
  type: list
  elements: dict
archive:
  description: The archive created (name, id, start, end, duration, stats).
  returned: when a backup was made
  type: dict
warnings_from_borg:
  description: Warnings borg reported.
  returned: when a backup was made
  type: list
  elements: str
freeze:
  description: How long writers were blocked (window, method, requested_at, acquired_at, released_at).
  returned: when a snapshot backup was made
  type: dict
snapshot:
  description: The snapshots taken (volumes, paths, started_at, finished_at, seconds); in check mode the plan.
  returned: method snapshot
  type: dict
cleaned:
  description: Leftovers of earlier snapshot runs that were removed.
  returned: method snapshot
  type: list
  elements: dict
dump:
  description: What was dumped - C(engine), C(database), C(file) (the name inside the archive), C(command) (argv;
    never a password).
  returned: method dump
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec, validate_archive_name)
from ansible_collections.borgfleet.backup.plugins.module_utils.databases import (
    DatabaseError, connection_argument_spec, engine_from_params)
from ansible_collections.borgfleet.backup.plugins.module_utils.db_backup import (
    DUMP_COMPRESSION, METHODS, choose_method, dump_backup, snapshot_argument_spec, snapshot_backup,
    source_paths, storage_report)
from ansible_collections.borgfleet.backup.plugins.module_utils.snapshot import RunLock, SnapshotError


def probe(p, engine):
    """(source paths, storage report, all capable) - or, when the engine cannot say where its files are,
    nothing to snapshot (method auto then dumps, and the dump reports what is wrong with the database)."""
    try:
        paths = source_paths(engine, p['datadir'], p['extra_paths'])
    except DatabaseError:
        if p['method'] == 'snapshot':
            raise
        return [], [], False
    storage, capable = storage_report(paths)
    return paths, storage, capable


def run(module, borg, engine, out):
    p = module.params
    validate_archive_name(p['archive_name'])
    borg.version()
    paths, storage, capable = probe(p, engine) if p['method'] != 'dump' else ([], [], False)
    if p['method'] != 'dump':
        out['storage'] = storage
    out['method'], out['method_reason'] = choose_method(p['method'], storage)
    if out['method'] == 'dump':
        out.update(dump_backup(borg, engine, p['archive_name'], p['dump_compression'], module.check_mode))
        return
    out.update(cleaned=[], snapshot={})
    with RunLock(p['name'], p['mount_root']):
        snapshot_backup(p, borg, engine, paths, capable, out, module.check_mode)


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(connection_argument_spec())
    argument_spec.update(snapshot_argument_spec())
    argument_spec.update(
        method=dict(type='str', choices=list(METHODS), default='auto'),
        archive_name=dict(type='str', required=True),
        dump_compression=dict(type='str', default=DUMP_COMPRESSION),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    out = dict(changed=False, engine=p['engine'])
    borg = Borg.from_module(module)
    try:
        # Checks every connection setting with the contract before anything runs.
        engine = engine_from_params(p)
    except DatabaseError as e:
        module.fail_json(**dict(out, **e.to_fail_kwargs()))
    try:
        run(module, borg, engine, out)
    except (BorgError, DatabaseError, SnapshotError) as e:
        engine.close()
        # The outcome so far (method, why, leftovers cleaned) stays in the failed result.
        module.fail_json(**dict(out, **e.to_fail_kwargs()))
    engine.close()
    module.exit_json(**out)


if __name__ == '__main__':
    main()
