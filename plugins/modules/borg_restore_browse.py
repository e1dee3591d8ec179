#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_restore_browse
short_description: Browse an archive level by level, or find a path across archives and when it changed
description:
  - With O(archive), lists one directory level of the archive (O(path), default the top) - name, type, size,
    mtime, mode, owner and link target of each entry, directories first - what a restore page shows.
  - The directories leading to a backed-up path (C(var) and C(var/lib) of an archive of C(/var/lib/app)) have no
    item in a borg archive; they are listed as directories whose size, mtime, mode and owner are null.
  - Without O(archive), searches O(path) - an exact path or a glob such as C(etc/nginx/*.conf) - in every
    archive matching O(match_archives) and returns, per path, the archives holding it and the changes
    between consecutive archives (added, modified by size/mtime, removed).
  - With O(archive) and O(dest), writes every item of the archive (C(borg list --json-lines), gzip-compressed
    as it streams) to the new file O(dest) on the managed host instead of returning a level - the whole tree
    for an index (the service's C(index_archive) job fetches it), never through the task's result.
  - Read-only; never writes to the repository.
version_added: 0.2.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  archive:
    description: Archive to browse. Omit to search across archives.
    type: str
  path:
    description:
      - Browse - the directory to list (no leading C(/) needed; empty = top level).
      - Search - the path or glob pattern to look for (required).
    type: str
    default: ''
  match_archives:
    description: Search only archives matching this glob (e.g. C(etc-*)).
    type: str
  last:
    description: Search only the newest N archives (0 = all).
    type: int
    default: 0
  dest:
    description:
      - With O(archive) - a file to write every item of the archive to (gzip of JSON lines, mode 0600).
        It must not exist; its directory must.
    type: path
  limit:
    description: At most this many entries (browse) or matching paths (search).
    type: int
    default: 1000
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Writes O(dest) in check mode too (a file of its own, never the repository).
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: partial
    details: With O(dest) the file must not exist yet.
'''

EXAMPLES = r'''
- name: What is in etc/ of last night's archive
  borgfleet.backup.borg_restore_browse:
    repository: ssh://borg@backup1.example.com:22/srv/borg/web1/etc
    passphrase: "{{ vault_etc_passphrase }}"
    archive: etc-2026-11-25T02:00:00
    path: etc
  no_log: true

- name: Which archives hold nginx.conf, and when did it change
  borgfleet.backup.borg_restore_browse:
    repository: ssh://borg@backup1.example.com:22/srv/borg/web1/etc
    passphrase: "{{ vault_etc_passphrase }}"
    match_archives: etc-*
    path: /etc/nginx/nginx.conf
  no_log: true

- name: Every item of an archive into a file, for an index
  borgfleet.backup.borg_restore_browse:
    repository: ssh://borg@backup1.example.com:22/srv/borg/web1/etc
    passphrase: "{{ vault_etc_passphrase }}"
    archive: etc-2026-11-25T02:00:00
    dest: /tmp/etc-items.jsonl.gz
  no_log: true
'''

RETURN = r'''
entries:
  description: Browse - one level of the archive (name, path, type, size, mtime, mode, user, group, linktarget).
  returned: with archive
  type: list
  elements: dict
truncated:
  description: Whether more entries (browse) or paths (search) existed than O(limit).
  returned: always
  type: bool
found:
  description: >-
    Search - per matching path, C(archives) holding it ([{archive, time, size, mtime, type}], oldest first)
    and C(changes) ([{archive, time, change, size, mtime}], change one of added, modified, removed).
  returned: without archive
  type: list
  elements: dict
items:
  description: With O(dest) - the number of items written.
  returned: with dest
  type: int
archives_searched:
  description: Number of archives searched.
  returned: without archive
  type: int
'''

import fnmatch
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec, validate_archive_name)

ENTRY_KEYS = ('type', 'size', 'mtime', 'mode', 'user', 'group', 'linktarget')
GLOB_RE = re.compile(r'[*?\[]')


def browse(borg, archive, path, limit):
    """Direct children of ``path``, directories first. borg leaves out the deeper levels itself."""
    path = path.strip('/')
    entries = []
    for item in borg.list_children(archive, path):
        p = item['path']
        entry = dict((k, item.get(k)) for k in ENTRY_KEYS)
        entry.update(name=p.rsplit('/', 1)[-1], path=p)
        entries.append(entry)
    if not entries:
        entries = implied_directories(borg, archive, path)
    entries.sort(key=lambda e: (e['type'] != 'd', e['name']))
    return entries[:limit], len(entries) > limit


def implied_directories(borg, archive, path):
    """The directories leading to what was backed up: borg stores no item for the parents of a backed-up
    path (an archive of /var/lib/app holds var/lib/app, not var), so their levels list empty. Only then is
    the level read again whole, and the next element of each deeper path is a directory (no size,
    mode, owner or mtime: the archive has none)."""
    prefix = path + '/' if path else ''
    items, _ = borg.list_contents(archive, paths=[path] if path else [])
    names = set(item['path'][len(prefix):].split('/', 1)[0] for item in items
                if item['path'].startswith(prefix) and len(item['path']) > len(prefix))
    return [dict(dict((k, None) for k in ENTRY_KEYS), type='d', name=name, path=prefix + name) for name in names]


def search(borg, pattern, match_archives, last, limit):
    pattern = pattern.strip('/')
    parts = pattern.split('/')
    # borg takes a path prefix; the glob part is matched here on full paths.
    fixed = []
    for part in parts:
        if GLOB_RE.search(part):
            break
        fixed.append(part)
    prefix = '/'.join(fixed)
    is_glob = len(fixed) < len(parts)
    archives = borg.list_archives(match_archives=match_archives, last=last or None)
    by_path = {}
    for archive in archives:
        items, _ = borg.list_contents(archive['name'], paths=[prefix] if prefix else [])
        for item in items:
            p = item['path']
            if (fnmatch.fnmatchcase(p, pattern) if is_glob else p == pattern):
                by_path.setdefault(p, {})[archive['name']] = dict(
                    archive=archive['name'], time=archive.get('time') or archive.get('start'),
                    size=item.get('size'), mtime=item.get('mtime'), type=item.get('type'))
    found = []
    for p in sorted(by_path)[:limit]:
        present = by_path[p]
        changes, previous = [], None
        for archive in archives:  # oldest first
            now = present.get(archive['name'])
            when = archive.get('time') or archive.get('start')
            if now and previous is None:
                changes.append(dict(archive=archive['name'], time=when, change='added', size=now['size'],
                                    mtime=now['mtime']))
            elif now and (now['size'], now['mtime'], now['type']) != (previous['size'], previous['mtime'],
                                                                      previous['type']):
                changes.append(dict(archive=archive['name'], time=when, change='modified', size=now['size'],
                                    mtime=now['mtime']))
            elif now is None and previous is not None:
                changes.append(dict(archive=archive['name'], time=when, change='removed', size=None, mtime=None))
            previous = now
        found.append(dict(path=p, archives=[present[a['name']] for a in archives if a['name'] in present],
                          changes=changes))
    return found, len(by_path) > limit, len(archives)


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec.update(
        archive=dict(type='str'),
        path=dict(type='str', default=''),
        match_archives=dict(type='str'),
        last=dict(type='int', default=0),
        limit=dict(type='int', default=1000),
        dest=dict(type='path'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE + [('archive', 'match_archives')])
    p = module.params
    borg = Borg.from_module(module)
    try:
        borg.version()
        if p['dest'] and not p['archive']:
            module.fail_json(msg='dest needs archive: it receives the items of one archive')
        if p['archive'] and p['dest']:
            validate_archive_name(p['archive'])
            module.exit_json(changed=True, items=borg.write_items(p['archive'], p['dest']), truncated=False)
        if p['archive']:
            validate_archive_name(p['archive'])
            entries, truncated = browse(borg, p['archive'], p['path'], p['limit'])
            module.exit_json(changed=False, entries=entries, truncated=truncated)
        if not p['path'].strip('/'):
            module.fail_json(msg='path is required to search across archives')
        found, truncated, searched = search(borg, p['path'], p['match_archives'], p['last'], p['limit'])
        module.exit_json(changed=False, found=found, truncated=truncated, archives_searched=searched)
    except BorgError as e:
        module.fail_json(**e.to_fail_kwargs())


if __name__ == '__main__':
    main()
