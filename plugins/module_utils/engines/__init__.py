# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: one module per database engine, each holding what is specific to it:
``detect(probe, storage)`` for server_facts, a ``base.Connection`` subclass (freeze, dump) for
snapshot and db_dump, ``is_datadir()`` and (when instant recovery can start it) a
``base.Recovered`` subclass. A new engine is a new module here and a line in each table below.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.borgfleet.backup.plugins.module_utils.engines import mariadb, mongodb, postgresql

# engine name (as the contract spells it) -> the Connection class the backup modules use
CONNECTIONS = {'mariadb': mariadb.MariaDB, 'mysql': mariadb.MariaDB, 'postgresql': postgresql.PostgreSQL,
               'mongodb': mongodb.MongoDB}
# engines instant recovery can start on a recovered data directory
RECOVERABLE = {'postgresql': postgresql.Recovered, 'mariadb': mariadb.Recovered}
# what a data directory in an archive looks like, tried in this order
DATADIR_TESTS = (('postgresql', postgresql.is_datadir), ('mariadb', mariadb.is_datadir),
                 ('mongodb', mongodb.is_datadir))
# server_facts' capabilities: key -> detect(probe, storage)
DETECT = (('mysql', mariadb.detect), ('postgresql', postgresql.detect), ('mongodb', mongodb.detect))
