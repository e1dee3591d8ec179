# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: PostgreSQL."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os


def layout(datadir):
    """Where WAL and tablespaces really live: a snapshot is crash-consistent only if one
    snapshot holds them all."""
    wal = os.path.realpath(os.path.join(datadir, 'pg_wal'))
    tablespaces = []
    tbl = os.path.join(datadir, 'pg_tblspc')
    try:
        for entry in sorted(os.listdir(tbl)):
            tablespaces.append(os.path.realpath(os.path.join(tbl, entry)))
    except OSError:
        pass
    try:
        dev = os.stat(datadir).st_dev
        same = all(os.stat(p).st_dev == dev for p in [wal] + tablespaces)
    except OSError:
        same = None
    return {'wal_directory': wal, 'tablespaces': tablespaces, 'single_filesystem': same}
