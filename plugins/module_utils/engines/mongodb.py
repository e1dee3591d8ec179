# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: MongoDB - detect (server_facts), connect, freeze and dump (snapshot,
db_dump), recognise a data directory. Instant recovery does not start MongoDB.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.borgfleet.backup.plugins.module_utils.engines.base import (
    DEFAULT_FREEZE_TIMEOUT, QUERY_TIMEOUT, Connection, DatabaseError, Freeze, run)
from ansible_collections.borgfleet.backup.plugins.module_utils.probes import search, tcp_answers, to_int


# -- detect ------------------------------------------------------------------------------------

def detect(probe, storage):
    """What server_facts reports of MongoDB on this host (capabilities.mongodb)."""
    mongod = probe.which('mongod')
    conf = probe.read('/etc/mongod.conf')
    if not mongod and conf is None:
        return {'installed': False}
    out = {'installed': True, 'server_installed': bool(mongod),
           'version': search(probe.run(['mongod', '--version']).out, r'db version v?(\d+\.\d+\.\d+)')
           if mongod else None}
    dbpath = search(conf, r'(?m)^\s*dbPath:\s*["\']?([^"\'\s#]+)') or '/var/lib/mongodb'
    port = to_int(search(conf, r'(?m)^\s*port:\s*(\d+)')) or 27017
    out.update({'datadir': dbpath, 'port': port, 'running': tcp_answers('127.0.0.1', port)})
    out['storage'] = storage.describe(dbpath)
    return out


def is_datadir(dirpath, filenames, dirnames):
    """A MongoDB (WiredTiger) data directory."""
    return 'WiredTiger' in filenames and 'storage.bson' in filenames


# -- connect, freeze, dump ---------------------------------------------------------------------

class MongoDB(Connection):
    """fsyncLock is server-wide and survives the session, so it is set and cleared by two
    short calls; a leftover lock is cleared by the cleanup pass (``unlock``). Password auth is
    not supported here (mongosh only takes it on argv or in a URI): use local access."""

    name = 'mongodb'

    def _argv(self, script):
        argv = [self.binary('mongosh', 'mongo'), '--quiet']
        if self.login_host:
            argv.append('--host=%s' % self.login_host)
        if self.login_port:
            argv.append('--port=%d' % int(self.login_port))
        return argv + ['--eval', script]

    def query(self, script, timeout=QUERY_TIMEOUT):
        return run(self._argv(script), timeout=timeout)

    def datadir(self):
        out = self.query('print(db.adminCommand({getCmdLineOpts: 1}).parsed.storage.dbPath)')
        return out.strip().splitlines()[-1].rstrip('/')

    def extra_dirs(self):
        return []

    def freeze(self, timeout=DEFAULT_FREEZE_TIMEOUT):
        return _Freeze(self, timeout)

    def unlock(self):
        return self.query('db.fsyncUnlock()', timeout=30)

    def dump_command(self):
        argv = [self.binary('mongodump'), '--archive', '--gzip']
        # name=value: a value can never be read as an option of its own
        if self.login_host:
            argv.append('--host=%s' % self.login_host)
        if self.login_port:
            argv.append('--port=%d' % int(self.login_port))
        if self.database:
            argv.append('--db=%s' % self.database)
        return argv


class _Freeze(Freeze):
    def __init__(self, engine, timeout):
        super(_Freeze, self).__init__(engine.name, 'fsync_lock')
        self.db = engine
        self.timeout = timeout

    def __enter__(self):
        self.requested_at = time.time()
        try:
            self.db.query('db.fsyncLock()', timeout=self.timeout)
        except DatabaseError:
            self.db.unlock()
            self.released_at = time.time()
            raise
        self.acquired_at = time.time()
        return self

    def __exit__(self, *exc):
        try:
            self.db.unlock()
        finally:
            self.released_at = time.time()
        return False
