#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: db_dump
short_description: Stream a consistent database dump into a borg archive
description:
  - Runs the engine's dump tool under C(borg create --content-from-command), so the dump goes straight into
    the archive as one file (no temporary copy on disk) and a dump that fails fails the archive.
  - "MariaDB/MySQL: C(mariadb-dump --single-transaction) of all databases or of O(database), file
    C(<engine>-<database or all>.sql). PostgreSQL: C(pg_dump --format=custom) of O(database)
    (C(postgresql-<database>.pgdump)), or C(pg_dumpall) of the whole cluster, roles included, when
    O(database) is omitted (C(postgresql-all.sql)). MongoDB: C(mongodump --archive --gzip)
    (C(mongodb-<database or all>.archive.gz))."
  - Passwords go to the clients in a 0600 file (C(--defaults-extra-file), libpq C(passfile)), never on the
    command line.
version_added: 0.1.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - borgfleet.backup.database_login
  - ansible.builtin.action_common_attributes
options:
  archive_name:
    description:
      - Archive name template.
    type: str
    required: true
  database:
    description:
      - One database to dump; all of them when omitted.
    type: str
  compression:
    description:
      - Compression spec (PostgreSQL custom dumps are compressed already; borg's C(auto) mode notices).
    type: str
    default: auto,zstd,3
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Checks that the database answers and reports the dump command; writes nothing.
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: none
    details: Every run creates a new archive.
notes:
  - "Restore, MariaDB: C(borg extract --stdout REPO::ARCHIVE mariadb-all.sql | mariadb).
    PostgreSQL one database: C(borg extract --stdout REPO::ARCHIVE postgresql-app.pgdump | pg_restore
    --create --dbname postgres); whole cluster: C(borg extract --stdout REPO::ARCHIVE postgresql-all.sql |
    psql postgres). MongoDB: C(borg extract --stdout REPO::ARCHIVE mongodb-all.archive.gz | mongorestore
    --archive --gzip)."
'''

EXAMPLES = r'''
- name: Dump all MariaDB databases into borg
  borgfleet.backup.db_dump:
    repository: ssh://borg@backup1.example.com:22/srv/borg/db1/mariadb
    passphrase: "{{ vault_db_passphrase }}"
    archive_name: "mariadb-dump-{now:%Y-%m-%dT%H:%M:%S}"
    engine: mariadb
    defaults_file: /etc/mysql/debian.cnf

- name: Dump one PostgreSQL database (peer authentication as postgres)
  borgfleet.backup.db_dump:
    repository: /var/backups/borg/db1/pg
    passcommand: cat /root/.borg-pg
    archive_name: "pg-app-{now:%Y-%m-%dT%H:%M:%S}"
    engine: postgresql
    database: app
'''

RETURN = r'''
archive:
  description: The archive created (name, id, start, end, duration, stats).
  returned: success, not in check mode
  type: dict
dump:
  description: What was dumped - C(engine), C(database), C(file) (the name inside the archive), C(command)
    (argv of the dump tool; it never holds a password).
  returned: always
  type: dict
warnings_from_borg:
  description: Warnings borg reported.
  returned: success, not in check mode
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec)
from ansible_collections.borgfleet.backup.plugins.module_utils.databases import (
    DatabaseError, connection_argument_spec, engine_from_params)
from ansible_collections.borgfleet.backup.plugins.module_utils.db_backup import DUMP_COMPRESSION, dump_backup


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(connection_argument_spec())
    argument_spec.update(
        archive_name=dict(type='str', required=True),
        compression=dict(type='str', default=DUMP_COMPRESSION),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    borg = Borg.from_module(module)
    try:
        # Checks every connection setting with the contract before anything runs.
        engine = engine_from_params(p)
    except DatabaseError as e:
        module.fail_json(**e.to_fail_kwargs())
    try:
        out = dump_backup(borg, engine, p['archive_name'], p['compression'], module.check_mode)
    except (BorgError, DatabaseError) as e:
        engine.close()
        module.fail_json(**e.to_fail_kwargs())
    engine.close()
    module.exit_json(**out)


if __name__ == '__main__':
    main()
