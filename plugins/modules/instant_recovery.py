#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: instant_recovery
short_description: Start a database straight from a borg archive, writable, on a spare port
description:
  - V(started) mounts the archive (C(borg mount -o allow_other), read-only and lazy), puts the rowfs
    block-level redirect-on-write layer over it (untouched blocks are read from the archive, written blocks
    go to a sparse delta under C(/var/lib/borgfleet/recovery)), finds the PostgreSQL or MariaDB data
    directory in it, drops stale pid/lock files in the layer, starts the engine as the data directory's
    owner with its own settings on a spare port, and waits until a real query answers.
  - PostgreSQL 12 to 15 that needs recovery (a crash-consistent copy) starts as a standby that promotes
    itself at the end of its WAL (C(standby.signal), C(promote_trigger_file), and C(hot_standby=off) so that
    nothing is queried before). It replays the same WAL as crash recovery, but answers without waiting for
    the end-of-recovery checkpoint, which then runs in the background. The promoted copy is on a new
    timeline; it never follows production (C(primary_conninfo) and C(restore_command) are emptied) and
    never archives WAL. Other versions take plain crash recovery. The WAL prefetcher is off (each
    prefetched page would decrypt a whole chunk); C(shared_buffers) is a quarter of the host's memory
    between 128 MiB and 1 GiB, without huge pages.
  - A session never holds the lock of its repository. It reads a frozen copy of it, made of hard links beside
    the repository (C(<repository dir>/.borgfleet-ir-<name>)) under its lock in milliseconds (borg never rewrites a
    segment file, it writes new ones and deletes old ones), with a private C(BORG_BASE_DIR) whose security entry is
    the repository's (same key type, no older manifest). Backups, prune and compact of the repository run while the
    session lives, and the session's data never changes; the copy is removed with the session. Over SSH the copy is
    made on the backup server by the role (see O(plan_copy), O(repository_copy)), which also removes it
    (RV(remote_copies)); the module alone over SSH mounts the repository itself, holding its lock.
  - The archive and the repository are never written. Each session is recorded in
    C(/var/lib/borgfleet/recovery/ir-<name>.json) (archive, engine, port, mounts, pids, started at).
  - V(stopped) shuts the engine down cleanly and keeps the layer (V(started) again resumes with its changes);
    V(absent) stops the engine and removes the mounts, the layer and the state file;
    V(query) returns the sessions (changes nothing); V(cleanup) tears down every session that is broken (engine died while
    running, a mount dead or gone) and unmounts our mounts no session owns.
  - V(verified) proves that a backup restores (the verification of C(verify.yml)). It starts O(archive) (default the
    newest archive matching O(match_archives)) as a throwaway session, lists its databases, counts the rows of the
    largest table, runs O(query) if given, and always tears the session down, whatever failed. It returns the
    RV(report) and fails when the archive did not start or held no database.
  - Needs Debian's C(python3-pyfuse3) on the host (rowfs runs as its own process) and the engine's server
    binaries (C(postgresql-<version>) or C(mariadb-server)). The host can be another one than the one
    backed up (a recovery host), which pulls from the repository with its own key.
version_added: 0.2.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - borgfleet.backup.borg
  - ansible.builtin.action_common_attributes
options:
  repository:
    description:
      - The borg repository. Required with O(state=started) and O(state=verified).
    type: str
    required: false
  state:
    description:
      - What the session should be; see the description.
    type: str
    choices: [started, stopped, absent, query, cleanup, verified]
    default: started
  name:
    description:
      - Session name (letters, digits, C(. _ -), at most 40). Default derived from O(archive); with
        O(state=verified) C(verify-<backup>) when O(backup) is given. A session of that name left by an
        interrupted verification is torn down first.
    type: str
  backup:
    description:
      - With O(state=verified), the name of the backup verified, reported in RV(report).
    type: str
  match_archives:
    description:
      - With O(state=verified) and no O(archive), a glob (the backup's C(<backup>-*)) whose newest archive is
        verified.
    type: str
  archive:
    description:
      - Archive holding the data directory (a crash-consistent copy - a snapshot or a stopped server).
      - Required with O(state=started) unless O(name) names an existing session; with O(state=verified), unless
        O(match_archives) is given.
    type: str
  engine:
    description:
      - Database engine; V(auto) detects it (PostgreSQL by C(PG_VERSION) + C(global/pg_control), MariaDB by
        C(ibdata1) + the C(mysql) system schema).
    type: str
    choices: [auto, postgresql, mariadb]
    default: auto
  datadir:
    description:
      - Path of the data directory inside the archive (no leading C(/) needed); detected when omitted.
    type: str
  address:
    description:
      - IP address the engine listens on.
    type: str
    default: 127.0.0.1
  port:
    description:
      - TCP port; V(0) picks a free one (from 55432 for PostgreSQL, 53306 for MariaDB).
    type: int
    default: 0
  timeout:
    description:
      - Seconds to wait for the engine to answer a query (crash recovery runs first).
    type: int
    default: 300
  verify:
    description:
      - After start, list the databases and count the rows of the largest table (returned in RV(verify)).
    type: bool
    default: false
  query:
    description:
      - An SQL query to run once the engine answers; its rows are returned in RV(query_rows).
    type: str
  query_database:
    description:
      - Database O(query) runs in (PostgreSQL default C(postgres)).
    type: str
  db_user:
    description:
      - Database user for the queries. Default the data directory owner's name (PostgreSQL, by peer
        authentication) or C(root) (MariaDB, by unix socket authentication).
    type: str
  db_password:
    description:
      - Password for O(db_user), passed in the environment (C(PGPASSWORD)/C(MYSQL_PWD)), never in argv.
    type: str
  mount_cache_chunks:
    description:
      - Decrypted chunks the borg mount keeps in memory (C(BORG_MOUNT_DATA_CACHE_ENTRIES); borg's default is the
        number of CPUs). A database reads pages at random - without this cache every 8 KiB read decrypts a
        whole chunk (about 2 MiB) again - measured here 18 ms per random read instead of 1 ms.
      - Memory is at most this many chunks (about 2 MiB each with borg's default chunker).
    type: int
    default: 512
  plan_copy:
    description:
      - With a repository over SSH (C(ssh://user@host:port/path)) and no O(repository_copy), when a session is to be
        built, only return where its frozen copy is to be made on the backup server (RV(copy_needed)); nothing is
        mounted. The role then makes it there (M(borgfleet.backup.borg_repository_copy)) and calls again with
        O(repository_copy).
    type: bool
    default: false
  repository_copy:
    description:
      - Path on the backup server of the frozen copy of O(repository) a new session reads instead of the repository
        (beside it, named C(.borgfleet-ir-...)). Over SSH without it, the session mounts the repository itself and
        holds its lock while it is mounted.
    type: str
  repository_copy_host:
    description:
      - Inventory name of the host holding O(repository_copy), recorded with the session and returned in
        RV(remote_copies) when the session is removed.
    type: str
  keep_on_failure:
    description:
      - Leave a session that failed to start in place for inspection (V(cleanup) or V(absent) remove it).
        Not with O(state=verified), which always tears its session down.
    type: bool
    default: false
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reports what would change; nothing is mounted or started.
  diff_mode:
    support: none
  idempotent:
    description: Whether running the task again with the same options changes nothing.
    support: full
    details: A running, healthy session is left as it is.
'''

EXAMPLES = r'''
- name: Start PostgreSQL from last night's archive on a spare port
  borgfleet.backup.instant_recovery:
    repository: ssh://borg@backup1.example.com:22/srv/borg/db1/pgdata
    passphrase: "{{ vault_pg_passphrase }}"
    ssh_key: /root/.ssh/borgfleet_ed25519
    ssh_known_hosts: /root/.ssh/borgfleet_known_hosts
    archive: pgdata-2026-11-25T02:00:00
    name: pg-yesterday
    address: 10.0.0.5
    verify: true
  register: recovered
  no_log: true

- name: Throw it away
  borgfleet.backup.instant_recovery:
    name: pg-yesterday
    state: absent

- name: Prove that the newest archive of backup pgdata starts and holds its data, then remove it
  borgfleet.backup.instant_recovery:
    state: verified
    backup: pgdata
    repository: ssh://borg@backup1.example.com:22/srv/borg/db1/pgdata
    passphrase: "{{ vault_pg_passphrase }}"
    match_archives: pgdata-*
  register: verification
  no_log: true

- name: Tear down whatever a failure left behind
  borgfleet.backup.instant_recovery:
    state: cleanup
'''

RETURN = r'''
session:
  description: The session (started/stopped; with V(verified), as it was before it was torn down); absent after
    V(absent).
  returned: when state is started, stopped or verified (once started)
  type: dict
  contains:
    name: {description: Session name., type: str}
    archive: {description: Archive recovered., type: str}
    engine: {description: C(postgresql) or C(mariadb)., type: str}
    address: {description: Listen address., type: str}
    port: {description: TCP port., type: int}
    socket_dir: {description: Directory of the engine's unix socket., type: str}
    frozen_copy: {description: 'The frozen copy of the repository the session reads (on the backup server over SSH); null
        when it mounts the repository itself (over SSH without O(repository_copy)).', type: str}
    datadir: {description: Data directory in the writable layer., type: str}
    pid: {description: Engine process id (null when stopped)., type: int}
    started_at: {description: 'When the session was created (UTC, ISO 8601).', type: str}
    layer_bytes: {description: Bytes held by the writable layer (what the engine really wrote)., type: int}
    health: {description: Mounts and processes as found on the host., type: dict}
sessions:
  description: All sessions (V(query)); those kept (V(cleanup)).
  returned: when state is query or cleanup
  type: list
  elements: dict
frozen_copy:
  description: The frozen copy made for a new session of a local repository - C(transaction) (the borg transaction it
    holds), C(segments) (linked), C(uncommitted_dropped), C(locked_seconds) (under the repository's lock - borg's
    start-up included), C(seconds) (all).
  returned: when a session of a local repository was built
  type: dict
copy_needed:
  description: With O(plan_copy), the path on the backup server where the new session's frozen copy is to be made;
    null when no session is to be built (it runs, or resumes).
  returned: when state is started
  type: str
remote_copies:
  description: Frozen copies on backup servers that sessions removed by this task read, for the role to remove -
    C(host) (O(repository_copy_host)), C(path), C(repository) (the repository's path there).
  returned: when a session with one was removed
  type: list
  elements: dict
removed:
  description: What was torn down (V(absent), V(cleanup), or a broken session rebuilt by V(started)).
  returned: always
  type: list
  elements: str
ready_seconds:
  description: Seconds from the start of the task to the first answered query.
  returned: when the engine was started
  type: float
timings:
  description: Seconds since the start of the task when the frozen copy was ready (C(frozen_copy); over SSH the role
    made it before the task), the archive was mounted (C(mount)), the layer mounted
    (C(layer)), the data directory located (C(located)), the engine started (C(engine_started)) and the first
    query answered (C(ready)).
  returned: when a new session was built
  type: dict
verify:
  description: Databases, the largest table and its row count.
  returned: when O(verify=true)
  type: dict
query_rows:
  description: Rows of O(query), each a list of column strings.
  returned: when O(query) is given
  type: list
  elements: list
report:
  description: The verification (O(state=verified)), also when it failed - C(backup), C(archive), C(passed),
    C(engine), C(ready_seconds) (from the start of the task to the first answered query), C(total_seconds)
    (session torn down included), C(databases), C(largest_table), C(rows), C(query_rows), C(layer_bytes),
    C(msg) (why it did not pass; empty when it passed).
  returned: when state is verified
  type: dict
'''

import copy
import datetime
import os
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.borg import (
    BORG_COMMON_MUTUALLY_EXCLUSIVE, Borg, BorgError, borg_common_argument_spec, validate_archive_name)
from ansible_collections.borgfleet.backup.plugins.module_utils import frozen, recovery as rc


def frozen_reader(borg, session, p):
    """The Borg that mounts the session's archive: one of a frozen copy of the repository (module_utils/frozen.py),
    read with a private BORG_BASE_DIR seeded with the repository's security entry. The session then holds no lock
    of the repository: backups, prune and compact of it run while the session lives.

    A local repository: the copy is hard-linked beside it here, under its lock (milliseconds). Over SSH: the role
    made it on the backup server (borg_repository_copy) and names it in O(repository_copy); without one, the
    repository itself is mounted and its lock held while the session is mounted."""
    real_env = dict(os.environ, **borg.settings.environment())
    if not borg.settings.is_remote:
        path = frozen.copy_path_for(borg.settings.repository, session['name'])
        session.update(frozen_copy=path, frozen_copy_host=None, frozen_copy_of=borg.settings.repository)
        rc.save_session(session)  # before the copy exists: whatever fails from here, teardown removes it
        session['frozen'] = frozen.freeze(borg, path)
        location = path
        repo_ids = [frozen.repository_id(path)]
    elif p['repository_copy']:
        server_path = frozen.ssh_path(borg.settings.repository)
        if not server_path:
            raise rc.RecoveryError('repository_copy needs an ssh://user@host:port/path repository, not %s'
                                   % borg.settings.repository)
        path = frozen.check_copy_path(server_path, p['repository_copy'])
        session.update(frozen_copy=path, frozen_copy_host=p['repository_copy_host'] or 'unknown',
                       frozen_copy_of=server_path)
        location = frozen.ssh_url_with_path(borg.settings.repository, path)
        repo_ids = frozen.known_ids(real_env, frozen.ssh_url_with_path(borg.settings.repository, server_path))
    else:
        return borg
    session['borg_base'] = os.path.join(rc.session_dir(session['name']), 'borg')
    rc.save_session(session)
    settings = copy.copy(borg.settings)
    settings.repository = location
    env = frozen.seed_security(location, repo_ids, real_env, session['borg_base'])
    settings.borg_base_dir = env.pop('BORG_BASE_DIR')
    settings.extra_environment = env
    return Borg(settings)


def copy_to_make(p, name):
    """With O(plan_copy), where the role is to make the frozen copy on the backup server; else None."""
    server_path = frozen.ssh_path(p['repository'])
    if not (p['plan_copy'] and not p['repository_copy'] and server_path):
        return None
    return frozen.copy_path_for(server_path, name, frozen.host_tag())


def torn_down(session, result):
    """Tear a session down into ``result``: what was removed, and its copy on a backup server for the role."""
    result['removed'] = result.get('removed', []) + rc.teardown(session)
    remote = rc.remote_copy(session)
    if remote:
        result.setdefault('remote_copies', []).append(remote)
    return result


def build(module, p, name, started):
    """Frozen copy, mount, layer, engine: a fresh session. Recorded before each step so failures can be undone."""
    base = rc.PREFIX + name
    session = {
        'name': name, 'archive': p['archive'], 'repository': p['repository'], 'state': 'starting',
        'address': p['address'], 'engine': None, 'port': None,
        'archive_mount': rc.mountpoint_for(base + '-archive'), 'layer_mount': rc.mountpoint_for(base),
        'delta_dir': os.path.join(rc.session_dir(name), 'delta'), 'socket_dir': os.path.join(rc.RUN_DIR, name),
        'started_at': datetime.datetime.utcnow().replace(microsecond=0).isoformat() + 'Z',
        'frozen_copy': None, 'timings': {},
    }
    os.makedirs(rc.session_dir(name), 0o700, exist_ok=True)
    rc.save_session(session)
    borg = Borg.from_module(module)
    borg.check_installed()
    borg = frozen_reader(borg, session, p)
    if session['frozen_copy']:
        session['timings']['frozen_copy'] = round(time.time() - started, 3)
    rc.prepare_mountpoint(session['archive_mount'])
    # borg mount reads it from its environment (the module's, inherited by run_command).
    os.environ['BORG_MOUNT_DATA_CACHE_ENTRIES'] = str(p['mount_cache_chunks'])
    borg.mount(session['archive_mount'], name=p['archive'], options=('allow_other',))
    rc.set_read_ahead(session['archive_mount'])
    session['timings']['mount'] = round(time.time() - started, 3)
    session['rowfs_proc'] = rc.start_rowfs(session['archive_mount'], session['delta_dir'], session['layer_mount'],
                                           os.path.join(rc.session_dir(name), 'rowfs.log'))
    rc.set_read_ahead(session['layer_mount'])
    session['timings']['layer'] = round(time.time() - started, 3)
    rc.save_session(session)

    # Locate the data directory in the archive (borg's own mount: cheaper to walk than the layer).
    if p['datadir']:
        rel = p['datadir'].strip('/')
        engine = p['engine']
        if engine == 'auto':
            found = rc.find_datadirs(os.path.join(session['archive_mount'], rel), max_depth=0)
            if not found:
                raise rc.RecoveryError('%s in archive %s is not a PostgreSQL or MariaDB data directory'
                                       % (rel, p['archive']))
            engine = found[0][0]
    else:
        found = [f for f in rc.find_datadirs(session['archive_mount'])
                 if p['engine'] == 'auto' or f[0] == p['engine']]
        found = [f for f in found if f[0] in rc.ENGINES]
        if not found:
            raise rc.RecoveryError('no %s data directory found in archive %s' % (
                'PostgreSQL or MariaDB' if p['engine'] == 'auto' else p['engine'], p['archive']))
        engine, path = found[0]
        rel = os.path.relpath(path, session['archive_mount'])
    session['engine'] = engine
    session['datadir'] = os.path.join(session['layer_mount'], rel)
    session['timings']['located'] = round(time.time() - started, 3)
    rc.save_session(session)
    start_engine(module, p, session, started)
    session['timings']['ready'] = round(time.time() - started, 3)
    return session


def make_engine(p, session):
    cls = rc.ENGINES[session['engine']]
    if not session.get('port'):
        taken = [s.get('port') for s in rc.list_sessions() if s['name'] != session['name']]
        session['port'] = p['port'] or rc.pick_port(session['address'], cls.base_port, taken)
    log_path = os.path.join(rc.session_dir(session['name']), session['engine'] + '.log')
    return cls(session['datadir'], session['socket_dir'], log_path, session['port'], session['address'],
               db_user=p['db_user'], db_password=p['db_password'])


def start_engine(module, p, session, started):
    engine = make_engine(p, session)
    if not rc.port_free(session['address'], session['port']):
        raise rc.RecoveryError('port %s on %s is in use' % (session['port'], session['address']))
    session['engine_proc'] = engine.start()
    if 'timings' in session and 'ready' not in session['timings']:  # a session being built, not resumed
        session['timings']['engine_started'] = round(time.time() - started, 3)
    rc.save_session(session)
    engine.wait_ready(session['engine_proc'], p['timeout'])
    session['state'] = 'running'
    rc.save_session(session)
    return engine


def extras(p, engine):
    out = {}
    if p['verify']:
        out['verify'] = engine.verify()
    if p['query']:
        out['query_rows'] = engine.query_rows(p['query'], p['query_database'])
    return out


def newest_archive(module, p):
    archives = Borg.from_module(module).list_archives(match_archives=p['match_archives'], last=1)
    if not archives:
        raise rc.RecoveryError('no archive of this backup (none matches %s)' % p['match_archives'])
    return archives[-1]['name']


def failure_of(e):
    """fail_json keywords for an exception: borg's own message and kind, recovery's message and engine log."""
    if isinstance(e, BorgError):
        return e.to_fail_kwargs()
    if isinstance(e, rc.RecoveryError):
        return {'msg': e.msg, 'log': e.log}
    return {'msg': 'instant recovery failed: %s: %s' % (type(e).__name__, e), 'exception': traceback.format_exc()}


def run_verification(module, p, name, started):
    """state=verified: start the archive as a throwaway session, check it, and tear it down whatever happened."""
    report = dict(backup=p['backup'], archive=p['archive'], passed=False, engine=None, ready_seconds=None,
                  total_seconds=None, databases=[], largest_table=None, rows=None, query_rows=None,
                  layer_bytes=None, msg='')
    result = dict(changed=not module.check_mode, removed=[], report=report)
    if module.check_mode:  # which archive would be verified; nothing is started or removed
        try:
            report['archive'] = report['archive'] or newest_archive(module, p)
        except (BorgError, rc.RecoveryError) as e:
            module.fail_json(report=report, **failure_of(e))
        report.update(passed=None, msg='check mode: nothing started')
        module.exit_json(**result)
    fail = None
    try:
        if not report['archive']:
            report['archive'] = p['archive'] = newest_archive(module, p)
        leftover = rc.load_session(name)
        if leftover:  # of a verification that was killed
            torn_down(leftover, result)
        session = build(module, p, name, started)
        engine = make_engine(p, session)
        report.update(engine=session['engine'], ready_seconds=round(time.time() - started, 3))
        checked = engine.verify()
        report.update(databases=checked['databases'], largest_table=checked['largest_table'], rows=checked['rows'])
        if p['query']:
            report['query_rows'] = engine.query_rows(p['query'], p['query_database'])
        if not report['databases']:
            raise rc.RecoveryError('the recovered %s lists no database' % session['engine'])
        report['passed'] = True
    except Exception as e:  # reported below, after the teardown
        fail = failure_of(e)
        report['msg'] = fail['msg']
    finally:
        # Whatever failed (start, check, query), nothing of the session stays: mounts, engine, rowfs, layer.
        session = rc.load_session(name)
        if session:
            result['session'] = rc.public(session)
            report['layer_bytes'] = result['session']['layer_bytes']
            try:
                torn_down(session, result)
            except Exception as e:  # still a report: the verification failed, and says why
                if not fail:
                    fail = failure_of(e)
                    fail['msg'] = report['msg'] = 'tearing the session down failed: %s' % fail['msg']
                report['passed'] = False
        report['total_seconds'] = round(time.time() - started, 3)
    if fail:
        module.fail_json(**dict(result, **fail))
    module.exit_json(**result)


def cleanup(check_mode):
    removed, kept, remote_copies = [], [], []
    for session in rc.list_sessions():
        h = rc.health(session)
        healthy = h['intact'] and (h['engine_running'] or session.get('state') == 'stopped')
        if healthy:
            kept.append(rc.public(session))
            continue
        removed.append('session %s' % session['name'])
        if not check_mode:
            removed += rc.teardown(session)
            if rc.remote_copy(session):
                remote_copies.append(rc.remote_copy(session))
    for path in rc.orphan_mounts():
        removed.append(path)
        if not check_mode:
            rc.unmount(path)
            rc.remove_mountpoint(path)
    return removed, kept, remote_copies


def main():
    argument_spec = borg_common_argument_spec()
    argument_spec['repository'] = dict(type='str')
    argument_spec.update(
        state=dict(type='str', choices=['started', 'stopped', 'absent', 'query', 'cleanup', 'verified'],
                   default='started'),
        name=dict(type='str'),
        backup=dict(type='str'),
        match_archives=dict(type='str'),
        archive=dict(type='str'),
        engine=dict(type='str', choices=['auto', 'postgresql', 'mariadb'], default='auto'),
        datadir=dict(type='str'),
        address=dict(type='str', default='127.0.0.1'),
        port=dict(type='int', default=0),
        timeout=dict(type='int', default=300),
        verify=dict(type='bool', default=False),
        query=dict(type='str'),
        query_database=dict(type='str'),
        db_user=dict(type='str'),
        db_password=dict(type='str', no_log=True),
        keep_on_failure=dict(type='bool', default=False),
        mount_cache_chunks=dict(type='int', default=512),
        plan_copy=dict(type='bool', default=False),
        repository_copy=dict(type='str'),
        repository_copy_host=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=BORG_COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    started = time.time()
    state = p['state']
    result = dict(changed=False, removed=[])
    session = None
    building = None  # the name of a session this run is creating: undone if it fails
    try:
        if state == 'query':
            module.exit_json(sessions=[rc.public(s) for s in rc.list_sessions()], **result)
        if state == 'cleanup':
            removed, kept, remote_copies = cleanup(module.check_mode)
            module.exit_json(changed=bool(removed), removed=removed, sessions=kept, remote_copies=remote_copies)
        if p['archive']:
            validate_archive_name(p['archive'])
        if state == 'verified':
            if not p['repository'] or not (p['archive'] or p['match_archives']):
                module.fail_json(msg='state=verified needs repository, and archive or match_archives')
            p['name'] = p['name'] or ('verify-' + p['backup'] if p['backup'] else None)
        if not p['name'] and not p['archive']:
            module.fail_json(msg='name or archive is required with state=%s' % state)
        name = rc.validate_name(p['name'] or rc.name_from_archive(p['archive']))
        p['address'] = rc.validate_address(p['address'])
        if state == 'verified':
            run_verification(module, p, name, started)
        session = rc.load_session(name)
        if session and p['archive'] and session['archive'] != p['archive'] and state != 'absent':
            module.fail_json(msg='session %s already recovers archive %s: remove it (state=absent) or choose '
                                 'another name' % (name, session['archive']))

        if state == 'absent':
            if session:
                result['changed'] = True
                if not module.check_mode:
                    torn_down(session, result)
            module.exit_json(**result)

        if state == 'stopped':
            if session is None:
                module.fail_json(msg='no instant recovery session named %s' % name)
            if rc.alive(session.get('engine_proc')):
                result['changed'] = True
                if not module.check_mode:
                    rc.stop_engine(session)
            if not module.check_mode:
                session['engine_proc'] = None
                session['state'] = 'stopped'
                rc.save_session(session)
            module.exit_json(session=rc.public(session), **result)

        # state == started
        if session is None and not p['repository']:
            module.fail_json(msg='repository is required to start a new session')
        if session is None and not p['archive']:
            module.fail_json(msg='archive is required to start a new session')
        h = rc.health(session) if session else None
        if h and h['intact'] and h['engine_running']:
            engine = make_engine(p, session)
            module.exit_json(session=rc.public(session), **dict(result, **extras(p, engine)))
        result['changed'] = True
        if module.check_mode:
            module.exit_json(session=rc.public(session) if session else None, **result)
        if h and h['intact']:
            # Stopped (or the engine died): start it again on the same layer.
            engine = start_engine(module, p, session, started)
        else:
            if session:
                # Broken (a mount died): nothing of the old layer can be trusted; start afresh.
                torn_down(session, result)
                p['archive'] = p['archive'] or session['archive']
                p['repository'] = p['repository'] or session['repository']
            result['copy_needed'] = copy_to_make(p, name)
            if result['copy_needed']:  # the role makes it on the backup server, then calls again with it
                result['changed'] = bool(result['removed'])
                module.exit_json(**result)
            building = name
            session = build(module, p, name, started)
            engine = make_engine(p, session)
        result['ready_seconds'] = round(time.time() - started, 3)
        if session.get('timings'):
            result['timings'] = session['timings']
        if session.get('frozen') and building:
            result['frozen_copy'] = session['frozen']
        result.update(extras(p, engine))
        module.exit_json(session=rc.public(session), **result)
    except Exception as e:  # a half-built session is undone whatever went wrong
        fail = failure_of(e)
        partial = rc.load_session(building) if building else None
        if partial and not p['keep_on_failure']:
            fail.update(torn_down(partial, {}))
        module.fail_json(**fail)


if __name__ == '__main__':
    main()
