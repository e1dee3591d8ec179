# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How the snapshot, db_dump and db_backup modules log in to a database engine
    # (module_utils/databases.py connection_argument_spec).
    DOCUMENTATION = r'''
options:
  engine:
    description:
      - Database engine.
    type: str
    required: true
    choices: [mariadb, mysql, postgresql, mongodb]
  login_user:
    description:
      - Database user (default the engine client's default; root over the socket for MariaDB).
    type: str
  login_password:
    description:
      - Password; handed to the client in a 0600 file, never on the command line.
    type: str
  login_host:
    description:
      - Database host (TCP); the socket is used when omitted.
    type: str
  login_port:
    description:
      - Database port.
    type: int
  login_unix_socket:
    description:
      - Socket path (MariaDB) or socket directory (PostgreSQL).
    type: str
  defaults_file:
    description:
      - MariaDB/MySQL option file with credentials, for example C(/etc/mysql/debian.cnf).
    type: path
  os_user:
    description:
      - OS user the database clients run as (PostgreSQL peer authentication); default C(postgres) for
        PostgreSQL without a password.
    type: str
'''
