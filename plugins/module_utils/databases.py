# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: the database modules' (snapshot, db_dump) way to an engine.

The connection options every database module takes, their check by the contract, and the
engine's ``Connection`` (module_utils/engines/<engine>.py) built from them. What an engine does
(freeze, dump, where its files live) is in its own module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.borgfleet.backup.plugins.module_utils import engines
from ansible_collections.borgfleet.backup.plugins.module_utils.contract import ContractError, check_database_settings
from ansible_collections.borgfleet.backup.plugins.module_utils.engines.base import DatabaseError, sweep_stale_secrets

ENGINES = tuple(engines.CONNECTIONS)


def check_settings(settings):
    """The contract's verdict on connection settings, as a DatabaseError (nothing has run yet)."""
    try:
        check_database_settings(settings)
    except ContractError as err:
        raise DatabaseError(str(err))


def engine_for(name, **params):
    classes = engines.CONNECTIONS
    if name not in classes:
        raise DatabaseError('unknown database engine %r (known: %s)' % (name, ', '.join(ENGINES)))
    check_settings(params)
    engine = classes[name](**params)
    engine.name = name
    return engine


def connection_argument_spec():
    """Options shared by the snapshot and db_dump modules to reach one database engine."""
    return dict(
        engine=dict(type='str', required=True, choices=list(ENGINES)),
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True),
        login_host=dict(type='str'),
        login_port=dict(type='int'),
        login_unix_socket=dict(type='str'),
        defaults_file=dict(type='path'),
        os_user=dict(type='str'),
        database=dict(type='str'),
    )


def engine_from_params(params):
    check_settings(params)  # the module's own options too (datadir, lvm_snapshot_size ...)
    sweep_stale_secrets()
    keys = ('login_user', 'login_password', 'login_host', 'login_port', 'login_unix_socket', 'defaults_file',
            'os_user', 'database')
    kwargs = dict((k, params.get(k)) for k in keys)
    if params['engine'] == 'postgresql' and not kwargs['os_user'] and os.geteuid() == 0 \
            and kwargs['login_password'] is None:
        kwargs['os_user'] = 'postgres'  # peer authentication, the Debian default
    return engine_for(params['engine'], **kwargs)
