# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How the snapshot and db_backup modules snapshot a database's storage
    # (module_utils/db_backup.py snapshot_argument_spec).
    DOCUMENTATION = r'''
options:
  name:
    description:
      - Backup name; names the snapshots (C(borgfleet-<name>-<n>)) and the stable mount path.
    type: str
    required: true
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
      - Exclude patterns (borg C(--exclude)); they match the paths as archived, under O(mount_root).
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
'''
