# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: the only code that runs borg.

Shape (after borgmatic): small builders return argv lists, one executor runs them with the
secrets in the environment, parses ``--json`` / ``--log-json`` and turns failures into
``BorgError`` with a ``kind`` a caller can act on. Modules turn ``BorgError`` into fail_json.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import gzip
import io
import json
import os
import re
import shlex
import shutil
import socket
import tempfile
import time

from ansible_collections.borgfleet.backup.plugins.module_utils import _process
from ansible_collections.borgfleet.backup.plugins.module_utils.errors import CommandError

DEFAULT_LOCK_WAIT = 600  # borg's own default is 1 s: far too short for scheduled work.
# borg retries a held lock every lock_wait/20 s (30 s for 600), also when the lock is a stale one it
# removes at once: after a killed run (a repository and a cache lock) the next command slept a
# minute or more. So every command first tries with this short wait, and waits long only when
# a live borg holds the lock (a lock timeout happens before borg does anything).
QUICK_LOCK_WAIT = 1

# Archive and backup names become part of `repo::archive` and of glob patterns: keep them
# to a conservative alphabet. Borg placeholders ({now:...}, {hostname}) are allowed in
# templates and expanded by borg itself, never by a shell.
ARCHIVE_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._@+:,{}%-]{0,199}$')
SUPPORTED_MAJOR = 1  # borg 2 has another command line (rcreate, ...): refuse it clearly.


class BorgError(CommandError):
    """A borg command failed. ``kind`` classifies the failure for callers and messages."""

    def __init__(self, msg, kind='unknown', cmd=None, rc=None, stderr=''):
        super(BorgError, self).__init__(msg, cmd=cmd, rc=rc, stderr=stderr)
        self.kind = kind

    def to_fail_kwargs(self):
        kwargs = super(BorgError, self).to_fail_kwargs()
        kwargs['error_kind'] = self.kind
        return kwargs


def borg_common_argument_spec():
    """Options shared by every borg module; documented by the borgfleet.backup.borg doc fragment."""
    return dict(
        repository=dict(type='str', required=True),
        passphrase=dict(type='str', no_log=True),
        passcommand=dict(type='str', no_log=True),
        ssh_key=dict(type='path'),
        ssh_known_hosts=dict(type='path'),
        ssh_strict_host_key_checking=dict(type='bool', default=True),
        remote_path=dict(type='str'),
        lock_wait=dict(type='int', default=DEFAULT_LOCK_WAIT),
        borg_binary=dict(type='str', default='borg'),
        borg_base_dir=dict(type='path'),
        borg_timeout=dict(type='int'),
    )


BORG_COMMON_MUTUALLY_EXCLUSIVE = [('passphrase', 'passcommand')]


def validate_archive_name(name, what='archive name'):
    """Refuse names that borg would misread or that could not be matched safely."""
    if not isinstance(name, str) or not ARCHIVE_NAME_RE.match(name) or '::' in name:
        raise BorgError(
            '%s %r is not allowed: use letters, digits and . _ - @ + : , (at most 200 characters, '
            'starting with a letter or digit; borg placeholders like {now} are allowed)' % (what, name),
            kind='invalid_name')
    return name


class BorgSettings:
    """Where the repository is and how to reach and unlock it."""

    def __init__(self, repository, passphrase=None, passcommand=None, ssh_key=None, ssh_known_hosts=None,
                 ssh_strict_host_key_checking=True, remote_path=None, lock_wait=DEFAULT_LOCK_WAIT,
                 borg_binary='borg', borg_base_dir=None, borg_timeout=None):
        if not repository:
            raise BorgError('repository is required', kind='invalid_input')
        if repository.startswith('-'):
            raise BorgError('repository %r must not start with "-"' % repository, kind='invalid_input')
        self.repository = repository
        self.passphrase = passphrase
        self.passcommand = passcommand
        self.ssh_key = ssh_key
        self.ssh_known_hosts = ssh_known_hosts
        self.ssh_strict_host_key_checking = ssh_strict_host_key_checking
        self.remote_path = remote_path
        self.lock_wait = lock_wait
        self.borg_binary = borg_binary
        self.borg_base_dir = borg_base_dir
        if borg_timeout is not None and borg_timeout < 0:
            raise BorgError('borg_timeout must be 0 (none) or a number of seconds, not %s' % borg_timeout,
                            kind='invalid_input')
        self.borg_timeout = borg_timeout or None
        # Set by callers, not users: more borg settings for the environment (BORG_KEYS_DIR of a frozen copy),
        # and (uid, gid) to run borg as (a repository's owner, when root works on a backup server).
        self.extra_environment = {}
        self.run_as = None

    @classmethod
    def from_params(cls, params):
        keys = borg_common_argument_spec().keys()
        return cls(**dict((k, params.get(k)) for k in keys if params.get(k) is not None))

    @property
    def is_remote(self):
        return self.repository.startswith('ssh://') or bool(re.match(r'^[^/:]+@[^/:]+:', self.repository))

    def rsh(self):
        """BORG_RSH: borg splits it with shlex, so every part is quoted."""
        argv = ['ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=15',
                '-o', 'ServerAliveInterval=10', '-o', 'ServerAliveCountMax=30']
        # Host keys are pinned in known_hosts by the client role; without strict checking we
        # still only accept a *new* host (trust on first use), never a changed one.
        argv += ['-o', 'StrictHostKeyChecking=%s' % ('yes' if self.ssh_strict_host_key_checking else 'accept-new')]
        if self.ssh_known_hosts:
            argv += ['-o', 'UserKnownHostsFile=%s' % self.ssh_known_hosts]
        if self.ssh_key:
            argv += ['-o', 'IdentitiesOnly=yes', '-i', self.ssh_key]
        return ' '.join(shlex.quote(a) for a in argv)

    def environment(self):
        env = {
            'LC_ALL': 'C.UTF-8',
            'LANG': 'C.UTF-8',
            'BORG_RSH': self.rsh(),
            'BORG_EXIT_CODES': 'modern',  # borg >= 1.4 reports warnings as 100-127; older ignore it
            # Never answer borg's interactive questions with stdin: fail with a clear error instead.
            'BORG_RELOCATED_REPO_ACCESS_IS_OK': 'no',
            'BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK': 'no',
            'BORG_CHECK_I_KNOW_WHAT_I_AM_DOING': 'NO',
            'BORG_DELETE_I_KNOW_WHAT_I_AM_DOING': 'NO',
            'BORG_DISPLAY_PASSPHRASE': 'no',
        }
        if self.passphrase is not None:
            env['BORG_PASSPHRASE'] = self.passphrase
        elif self.passcommand:
            env['BORG_PASSCOMMAND'] = self.passcommand
        else:
            # An empty passphrase would silently be tried against an encrypted repository;
            # an unencrypted one needs none.
            env['BORG_PASSPHRASE'] = ''
        if self.borg_base_dir:
            env['BORG_BASE_DIR'] = self.borg_base_dir
        env.update(self.extra_environment)
        if not os.environ.get('BORG_HOST_ID'):  # an operator's own setting wins
            hostid = host_id()
            if hostid:
                env['BORG_HOST_ID'] = hostid
        return env

    def secrets(self):
        return [s for s in (self.passphrase, self.passcommand) if s]

    def location(self, archive=None):
        if archive is None:
            return self.repository
        return '%s::%s' % (self.repository, archive)


_HOST_ID = []


def host_id():
    """A stable BORG_HOST_ID for this host: ``<hostname>@<machine-id>``, or None (borg's own default).

    borg removes a stale lock (its process gone) only when the lock's host id is its own. Its
    default, ``<fqdn>@<MAC>``, changes when DNS answers differently and is random where no MAC is
    found (containers, OpenVZ), so a killed run's lock would need a manual break-lock. Both parts
    here come from local files, never from the network."""
    if not _HOST_ID:
        try:
            with open('/etc/machine-id') as f:
                machine_id = f.read().strip()
        except (IOError, OSError):
            machine_id = ''
        ok = re.match(r'^[0-9a-f]{32}$', machine_id)
        _HOST_ID.append('%s@%s' % (socket.gethostname(), machine_id) if ok else None)
    return _HOST_ID[0]


# Classification of borg's failures ------------------------------------------------------------

_MSGID_KINDS = {
    'PassphraseWrong': 'wrong_passphrase',
    'NoPassphraseFailure': 'passphrase_missing',
    'PasscommandFailure': 'passphrase_missing',
    'Repository.DoesNotExist': 'repository_missing',
    'Repository.InvalidRepository': 'repository_missing',
    'Repository.AlreadyExists': 'exists',
    'Repository.InsufficientFreeSpaceError': 'no_space',
    'LockTimeout': 'locked',
    'LockFailed': 'locked',
    'LockError': 'locked',
    'PathNotAllowed': 'permission_denied',
    'Archive.DoesNotExist': 'archive_missing',
    'Archive.AlreadyExists': 'exists',
    'Cache.RepositoryAccessAborted': 'relocated',
    'Cache.EncryptionMethodMismatch': 'relocated',
}

# (regex on stderr text, kind); first match wins, so the most specific come first.
_TEXT_KINDS = [
    (re.compile(r'No space left on device|InsufficientFreeSpace|Insufficient free space', re.I), 'no_space'),
    (re.compile(r'passphrase supplied .* is incorrect', re.I), 'wrong_passphrase'),
    (re.compile(r'Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED', re.I), 'host_key'),
    (re.compile(r'Permission denied \(publickey|Too many authentication failures', re.I), 'auth_refused'),
    (re.compile(r'is not inside of an allowed path|PathNotAllowed|not allowed by --restrict', re.I),
     'permission_denied'),
    (re.compile(r'Connection refused|No route to host|Could not resolve hostname|Connection timed out|'
                r'Network is unreachable|Name or service not known', re.I), 'unreachable'),
    (re.compile(r'does not exist|is not a valid repository', re.I), 'repository_missing'),
    (re.compile(r'Failed to create/acquire the lock', re.I), 'locked'),
    (re.compile(r'Connection closed by remote host', re.I), 'connection_closed'),
]

_NO_SPACE_RE = re.compile(r'No space left on device|InsufficientFreeSpace|Insufficient free space', re.I)
# Where a full file system stopped borg: in the repository (a frame of borg's repository code, or the
# server's `borg serve`: the storage pool) - otherwise on this host (borg's cache under BORG_BASE_DIR,
# or the files being restored). Both read from borg's traceback, measured with borg 1.2 on full tmpfs.
_REPOSITORY_SIDE_RE = re.compile(r'/repository\.py"|, in serve$|^Remote:.*No space left|Insufficient ?free ?space',
                                 re.I | re.M)

_HINTS = {
    'wrong_passphrase': 'wrong passphrase for repository {repo}: borg refused the key; nothing was changed',
    'passphrase_missing': 'repository {repo} is encrypted and no passphrase (or a failing passcommand) was given',
    'repository_missing': 'repository {repo} does not exist or is not a borg repository (run setup first)',
    'locked': 'repository {repo} is locked by another borg run (waited {lock_wait} s); '
              'retry later or raise lock_wait - never break a lock a live borg holds',
    'unreachable': 'backup server for {repo} is unreachable: {detail}',
    'auth_refused': 'the backup server refused this client\'s SSH key for {repo}: {detail}',
    'host_key': 'host key of the backup server for {repo} does not match the pinned known_hosts entry: {detail}',
    'permission_denied': 'the backup server\'s forced command does not allow {repo}: {detail}',
    'no_space': 'no space left on the storage pool holding repository {place}: {detail}',
    'no_space_local': 'no space left on this host while borg worked on {repo}: borg\'s cache (BORG_BASE_DIR) '
                      'or the files being restored are on a full file system: {detail}',
    'exists': '{detail}',
    'archive_missing': '{detail}',
    'relocated': 'repository {repo} looks moved or replaced since this client last used it; '
                 'refusing to continue: {detail}',
    'connection_closed': 'connection to the backup server for {repo} closed: is borg installed there and '
                         'allowed by its authorized_keys? {detail}',
}


def parse_log_lines(stderr):
    """Split stderr of a ``--log-json`` run into (records, plain lines)."""
    records, plain = [], []
    for line in (stderr or '').splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith('{'):
            try:
                rec = json.loads(line)
            except ValueError:
                plain.append(line)
                continue
            if isinstance(rec, dict):
                records.append(rec)
                continue
        plain.append(line)
    return records, plain


def _messages(records, plain):
    msgs = [r.get('message', '') for r in records if r.get('type') == 'log_message']
    return [m for m in msgs if m] + plain


def classify(rc, stderr, settings=None):
    """Return (kind, detail) for a failed borg run."""
    records, plain = parse_log_lines(stderr)
    errors = [r for r in records if r.get('levelname') in ('ERROR', 'CRITICAL')]
    text = '\n'.join(_messages(records, plain))
    kind = None
    for rec in errors:
        kind = _MSGID_KINDS.get(rec.get('msgid') or '')
        if kind:
            break
    # A refused SSH connection shows up as a generic "connection closed"; the ssh lines say why.
    if kind in (None, 'repository_missing'):
        for pattern, text_kind in _TEXT_KINDS:
            if pattern.search(text):
                if kind is None or text_kind in ('no_space',):
                    kind = text_kind
                break
    kind = kind or 'unknown'
    if kind == 'no_space':
        if not _REPOSITORY_SIDE_RE.search(text):
            kind = 'no_space_local'
        # The exception's own line ("OSError: [Errno 28] No space left on device", "Insufficient free space
        # to complete transaction (required: ..., available: ...)"), not the traceback or system details.
        lines = [line.strip() for line in text.splitlines() if _NO_SPACE_RE.search(line)]
        return kind, lines[-1][:300] if lines else ''
    detail_lines = [m for m in _messages(errors, []) if 'Traceback' not in m]
    remote = [m for m in _messages(records, plain) if m.startswith('Remote:') or 'ssh:' in m]
    detail = '; '.join((remote + detail_lines)[:4])
    if not detail and text.strip():
        detail = text.strip().splitlines()[-1]
    return kind, detail


def error_message(kind, detail, settings):
    template = _HINTS.get(kind)
    repo = settings.repository if settings else '?'
    lock_wait = settings.lock_wait if settings else '?'
    if not template:
        return 'borg failed for %s: %s' % (repo, detail or 'no error text')
    return template.format(repo=repo, place=repository_place(repo), detail=detail, lock_wait=lock_wait)


def repository_place(repository):
    """'/srv/borg/web1/etc on backup server backup1' for ssh://borg@backup1:22/srv/borg/web1/etc (the path
    starts with the pool's); a local path is returned as it is."""
    match = _SSH_URL_RE.match(repository)
    if not match:
        return repository
    return '%s on backup server %s' % (repository[match.end() - 1:], match.group('host'))


_SSH_URL_RE = re.compile(r'^ssh://(?:[^@/]+@)?(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?/')


def probe_ssh_port(repository, timeout=5):
    """Return why the repository's SSH port cannot be reached, or None if it answers."""
    match = _SSH_URL_RE.match(repository)
    if not match:
        return None
    host, port = match.group('host').strip('[]'), int(match.group('port') or 22)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except (OSError, socket.timeout) as e:
        return 'ssh: connect to host %s port %s: %s' % (host, port, getattr(e, 'strerror', None) or e)
    return None


# Runners: how a command is executed --------------------------------------------------------

def subprocess_runner(argv, environ_update, cwd=None, timeout=None, daemon=False, user=None, stdout_sink=None):
    """Run argv without a shell; returns (rc, stdout, stderr) like AnsibleModule.run_command.

    Through module_utils/_process: borg is stopped with SIGINT, a bounded wait, then SIGKILL on a
    timeout, when the playbook goes away, or when the module is killed (raises _process.Stopped)."""
    env = dict(os.environ)
    env.update(environ_update)
    return _process.run(argv, env, cwd=cwd, timeout=timeout, daemon=daemon, user=user, stdout_sink=stdout_sink)


def _succeeded(rc):
    # Legacy exit codes: 1 = warning. Modern (borg >= 1.4): 100-127 = warning.
    return rc == 0 or rc == 1 or 100 <= rc <= 127


def _with_lock_wait(argv, seconds):
    """argv with our --lock-wait value replaced (the first one, before any user data), or None."""
    end = argv.index('--') if '--' in argv else len(argv)
    if '--lock-wait' not in argv[:end]:
        return None
    i = argv.index('--lock-wait')
    return argv[:i + 1] + [str(seconds)] + argv[i + 2:]


class BorgResult:
    def __init__(self, rc, stdout, stderr, duration, warnings):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.duration = duration
        self.warnings = warnings

    def json(self, cmd):
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise BorgError('could not parse the JSON output of %s' % ' '.join(cmd[:2]), kind='bad_output',
                            cmd=cmd, rc=self.rc, stderr=self.stderr[-2000:])


class Borg:
    """Builds and runs borg commands for one repository."""

    def __init__(self, settings, runner=subprocess_runner):
        self.settings = settings
        self.runner = runner
        self._version = None

    @classmethod
    def from_module(cls, module):
        return cls(BorgSettings.from_params(module.params))

    # -- execution --------------------------------------------------------------------------
    def _common(self):
        opts = ['--log-json', '--lock-wait', str(self.settings.lock_wait)]
        if self.settings.remote_path:
            opts += ['--remote-path', self.settings.remote_path]
        return opts

    def command(self, subcommand, options=(), positionals=()):
        """argv for `borg <subcommand> <common> <options> -- <positionals>`."""
        argv = [self.settings.borg_binary] + list(subcommand) + self._common() + list(options)
        if positionals:
            argv += ['--'] + list(positionals)
        return argv

    def _execute(self, argv, cwd, daemon=False, stdout_sink=None):
        secrets = self.settings.secrets()
        kwargs = {'timeout': self.settings.borg_timeout} if self.settings.borg_timeout else {}
        if daemon:
            kwargs['daemon'] = True
        if self.settings.run_as:
            kwargs['user'] = self.settings.run_as
        if stdout_sink is not None:
            kwargs['stdout_sink'] = stdout_sink
        try:
            rc, out, err = self.runner(argv, self.settings.environment(), cwd=cwd, **kwargs)
        except _process.Stopped as e:
            raise self._stopped(argv, e, secrets)
        return rc, _process.mask(out, secrets), _process.mask(err, secrets)

    def run(self, argv, cwd=None, daemon=False, stdout_sink=None):
        """Run one borg command; ``stdout_sink`` (see _process.run) takes its stdout as it comes. A sink
        must accept a restart (its ``restart()`` is called) when a locked repository makes borg run twice."""
        started = time.time()
        quick = _with_lock_wait(argv, QUICK_LOCK_WAIT) if self.settings.lock_wait > QUICK_LOCK_WAIT else None
        rc, out, err = self._execute(quick or argv, cwd, daemon, stdout_sink)
        if quick and not _succeeded(rc) and classify(rc, err, self.settings)[0] == 'locked':
            if stdout_sink is not None:
                stdout_sink.restart()
            rc, out, err = self._execute(argv, cwd, daemon, stdout_sink)
        duration = time.time() - started
        if _succeeded(rc):
            records, plain = parse_log_lines(err)
            warnings = [r.get('message') for r in records if r.get('levelname') == 'WARNING'
                        and r.get('message')] if rc else []
            return BorgResult(rc, out, err, duration, warnings)
        if rc == 2 and 'usage: borg' in err and 'invalid choice' in err:
            self.version()  # a borg 2 command line refusing ours raises "not supported" here
        kind, detail = classify(rc, err, self.settings)
        if kind == 'connection_closed':
            # ssh's own complaint can be lost when borg exits first: ask the network directly.
            refused = probe_ssh_port(self.settings.repository)
            if refused:
                kind, detail = 'unreachable', refused
        if rc in (-2, 127) and not err.strip():
            kind, detail = 'not_installed', '%s not found' % self.settings.borg_binary
        raise BorgError(error_message(kind, detail, self.settings), kind=kind, cmd=argv, rc=rc,
                        stderr=err[-4000:])

    def _stopped(self, argv, stopped, secrets):
        what = 'borg %s' % argv[1] if len(argv) > 1 else 'borg'
        how = 'with SIGINT, then SIGKILL' if stopped.rc == -9 else 'with SIGINT'
        if stopped.reason == 'timeout':
            msg = ('%s on %s ran longer than borg_timeout (%s s) and was stopped %s; '
                   % (what, self.settings.repository, self.settings.borg_timeout, how))
        else:
            msg = '%s on %s was stopped %s: the playbook running it went away; ' % (what, self.settings.repository, how)
        msg += ('an interrupted borg create leaves a checkpoint archive (<name>.checkpoint) that the next '
                'backup reuses' if argv[1:2] == ['create'] else 'borg rolls back what it had not committed')
        return BorgError(msg, kind='timeout' if stopped.reason == 'timeout' else 'stopped', cmd=argv,
                         rc=stopped.rc, stderr=_process.mask(stopped.stderr, secrets)[-4000:])

    def check_installed(self):
        """Fail early and clearly when borg is missing, without starting it (borg takes ~0.3 s to start;
        the version is only read when a command line is refused, see run())."""
        binary = self.settings.borg_binary
        found = shutil.which(binary) if os.sep not in binary else (binary if os.access(binary, os.X_OK) else None)
        if not found:
            raise BorgError('borg is not installed on this host (%s not found in PATH); run setup.yml, which '
                            'installs it' % binary, kind='not_installed', cmd=[binary])
        return found

    def version(self):
        if self._version is None:
            rc, out, err = self.runner([self.settings.borg_binary, '--version'], {'LC_ALL': 'C.UTF-8'})
            if rc != 0:
                raise BorgError('borg is not installed or does not run (%s --version: rc %s, %s)'
                                % (self.settings.borg_binary, rc, (err or out).strip()[:200]),
                                kind='not_installed', cmd=[self.settings.borg_binary, '--version'], rc=rc,
                                stderr=err)
            match = re.search(r'(\d+)\.(\d+)\.(\d+)', out)
            if not match:
                raise BorgError('cannot read the borg version from %r' % out.strip(), kind='not_installed')
            self._version = tuple(int(x) for x in match.groups())
            if self._version[0] != SUPPORTED_MAJOR:
                raise BorgError('borg %s is not supported: BorgFleet needs borg 1.x (1.2 or newer)'
                                % '.'.join(map(str, self._version)), kind='not_installed')
        return self._version

    # -- repository ---------------------------------------------------------------------------
    def info(self):
        argv = self.command(['info'], ['--json'], [self.settings.location()])
        return self.run(argv).json(argv)

    def exists(self):
        """True if the repository can be opened, False if it does not exist; other errors raise."""
        try:
            self.info()
        except BorgError as e:
            if e.kind == 'repository_missing':
                return False
            raise
        return True

    def init(self, encryption='repokey-blake2', append_only=False, make_parent_dirs=True):
        opts = ['--encryption', encryption]
        if append_only:
            opts.append('--append-only')
        if make_parent_dirs:
            opts.append('--make-parent-dirs')
        return self.run(self.command(['init'], opts, [self.settings.location()]))

    def config_get(self, key):
        argv = self.command(['config'], [], [self.settings.location(), key])
        return self.run(argv).stdout.strip()

    def config_set(self, key, value):
        return self.run(self.command(['config'], [], [self.settings.location(), key, str(value)]))

    # -- archives -----------------------------------------------------------------------------
    def create(self, name, paths, exclude=(), exclude_caches=False, one_file_system=False,
               compression=None, files_cache=None, exclude_if_present=(), timestamp=None, dry_run=False,
               ):
        validate_archive_name(name)
        if not paths:
            raise BorgError('at least one path is needed to create an archive', kind='invalid_input')
        opts = [] if dry_run else ['--json']
        if dry_run:
            opts.append('--dry-run')
        for pattern in exclude:
            opts += ['--exclude', pattern]
        for marker in exclude_if_present:
            opts += ['--exclude-if-present', marker]
        if exclude_caches:
            opts.append('--exclude-caches')
        if one_file_system:
            opts.append('--one-file-system')
        if compression:
            opts += ['--compression', compression]
        if files_cache:
            opts += ['--files-cache', files_cache]
        if timestamp:
            opts += ['--timestamp', timestamp]
        argv = self.command(['create'], opts, [self.settings.location(name)] + list(paths))
        result = self._writing(argv)
        if dry_run:
            return {'archive': {'name': name, 'dry_run': True}, 'warnings': result.warnings}
        parsed = result.json(argv)
        parsed['warnings'] = result.warnings
        return parsed

    def create_from_command(self, name, command, stdin_name, compression=None, stdin_mode=None):
        """Archive the stdout of ``command`` (an argv list) as one file named ``stdin_name``.

        borg runs the command itself (``--content-from-command``) and fails the archive when it
        exits non-zero, so a broken dump never becomes a "successful" backup. No temporary file."""
        validate_archive_name(name)
        if not command:
            raise BorgError('a command is needed to archive its output', kind='invalid_input')
        opts = ['--json', '--content-from-command', '--stdin-name', stdin_name]
        if stdin_mode:
            opts += ['--stdin-mode', stdin_mode]
        if compression:
            opts += ['--compression', compression]
        argv = self.command(['create'], opts, [self.settings.location(name)] + list(command))
        result = self._writing(argv)
        parsed = result.json(argv)
        parsed['warnings'] = result.warnings
        return parsed

    def _writing(self, argv):
        """Run a command that adds to the repository; when its storage pool fills up, leave the pool as it was.

        borg keeps the segments of the aborted transaction on the full pool until the next write, so the pool
        stays full and even `borg check` fails (it rewrites the repository config). `borg compact` drops
        them first thing (borg's own cleanup of uncommitted data, not a repair), then compacts as usual."""
        try:
            return self.run(argv)
        except BorgError as e:
            if e.kind != 'no_space':
                raise
            try:
                self.compact()
                after = 'the partial data of this run was removed from the pool'
            except BorgError as c:
                after = 'removing the partial data of this run failed too (%s)' % c.msg
            raise BorgError('%s - %s; free space on that pool (or move the backup to another pool), then run the '
                            'backup again' % (e.msg, after), kind=e.kind, cmd=e.cmd, rc=e.rc, stderr=e.stderr)

    def export_tar(self, name, tarfile, paths=(), strip_components=0):
        """Write an archive (or some paths of it) as a tar file; ``-`` streams it to stdout."""
        opts = []
        if strip_components:
            opts += ['--strip-components', str(int(strip_components))]
        argv = self.command(['export-tar'], opts,
                            [self.settings.location(name), tarfile] + [p.lstrip('/') for p in paths])
        return self.run(argv)

    def mount(self, mountpoint, name=None, options=('allow_other',), match_archives=None):
        """FUSE-mount one archive, or the whole repository when ``name`` is None (read-only, lazy).

        ``allow_other`` by default: without it no other user - root included - sees the files."""
        opts = []
        if options:
            opts += ['-o', ','.join(options)]
        if match_archives and name is None:
            opts += ['--glob-archives', match_archives]
        location = self.settings.location(name) if name is not None else self.settings.location()
        # borg mount leaves its FUSE daemon running, and with it the ssh to a remote repository.
        return self.run(self.command(['mount'], opts, [location, mountpoint]), daemon=True)

    def with_lock(self, command):
        """Run ``command`` (an argv list, on this host) while holding the repository's exclusive lock.

        borg exits with the command's own exit code, which must be 0 (rc 1 is no borg warning here)."""
        argv = self.command(['with-lock'], [], [self.settings.location()] + list(command))
        result = self.run(argv)
        if result.rc != 0:
            raise BorgError('%s under the lock of %s failed (rc %s): %s' % (
                command[0], self.settings.repository, result.rc, (result.stderr.strip().splitlines() or [''])[-1]),
                kind='command_failed', cmd=argv, rc=result.rc, stderr=result.stderr[-4000:])
        return result

    def umount(self, mountpoint):
        return self.run([self.settings.borg_binary, 'umount', '--', mountpoint])

    def delete_archive(self, name):
        return self.run(self.command(['delete'], [], [self.settings.location(name)]))

    def list_archives(self, match_archives=None, last=None):
        opts = ['--json']
        if match_archives:
            opts += ['--glob-archives', match_archives]
        if last:
            opts += ['--last', str(last)]
        argv = self.command(['list'], opts, [self.settings.location()])
        return self.run(argv).json(argv).get('archives', [])

    def archive_info(self, name=None, match_archives=None, last=None):
        """borg info --json for one archive, or for the archives matching a glob."""
        opts = ['--json']
        if name is None:
            if match_archives:
                opts += ['--glob-archives', match_archives]
            if last:
                opts += ['--last', str(last)]
            location = self.settings.location()
        else:
            location = self.settings.location(name)
        argv = self.command(['info'], opts, [location])
        return self.run(argv).json(argv)

    def list_contents(self, name, paths=(), limit=None, exclude=()):
        """Items of one archive (json-lines), at most ``limit``; returns (items, truncated)."""
        opts = ['--json-lines']
        for pattern in exclude:
            opts += ['--exclude', pattern]
        argv = self.command(['list'], opts, [self.settings.location(name)] + list(paths))
        result = self.run(argv)
        items, truncated = [], False
        for line in result.stdout.splitlines():
            if not line.strip():
                continue
            if limit is not None and len(items) >= limit:
                truncated = True
                break
            try:
                items.append(json.loads(line))
            except ValueError:
                raise BorgError('could not parse borg list output line %r' % line[:200], kind='bad_output',
                                cmd=argv)
        return items, truncated

    def list_children(self, name, path=''):
        """Items (``--json-lines``) of the direct children of directory ``path`` ('' = the top) of one archive.

        borg reads every item of the archive either way; the pattern makes it drop all but the children
        before it formats them (the top of a 300,000-file archive: 15-22 s -> 4-5 s, measured)."""
        items, _ = self.list_contents(name, exclude=[children_pattern(path)])
        return items

    def write_items(self, name, dest):
        """Every item of one archive (``borg list --json-lines``, borg's default keys) into the file ``dest``,
        gzip-compressed as it streams: a 300,000-item archive is ~100 MB of JSON, never held in memory.
        ``dest`` is created (mode 0600) and must not exist. Returns the number of items."""
        sink = _GzipLines(dest)
        try:
            argv = self.command(['list'], ['--json-lines'], [self.settings.location(name)])
            self.run(argv, stdout_sink=sink)
            return sink.close()
        except BaseException:
            sink.discard()
            raise

    def prune(self, match_archives, keep, dry_run=False):
        """keep: dict with any of within/secondly/minutely/hourly/daily/weekly/monthly/yearly."""
        opts = ['--list']
        if dry_run:
            opts.append('--dry-run')
        if match_archives:
            opts += ['--glob-archives', match_archives]
        if not any(v for v in keep.values()):
            raise BorgError('prune needs at least one keep rule: refusing to prune everything',
                            kind='invalid_input')
        for rule in ('within', 'secondly', 'minutely', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'):
            value = keep.get(rule)
            if value:
                opts += ['--keep-%s' % rule, str(value)]
        argv = self.command(['prune'], opts, [self.settings.location()])
        result = self.run(argv)
        return parse_prune_list(result.stderr)

    def compact(self):
        return self.run(self.command(['compact'], [], [self.settings.location()]))

    def check(self, repository_only=False, archives_only=False, verify_data=False, match_archives=None,
              last=None):
        opts = []
        if repository_only:
            opts.append('--repository-only')
        if archives_only:
            opts.append('--archives-only')
        if verify_data:
            opts.append('--verify-data')
        if match_archives:
            opts += ['--glob-archives', match_archives]
        if last:
            opts += ['--last', str(last)]
        argv = self.command(['check'], opts, [self.settings.location()])
        result = self.run(argv)
        # borg 1.2 reports "errors found" with exit code 1, which elsewhere means a mere warning.
        records, plain = parse_log_lines(result.stderr)
        errors = [r.get('message', '') for r in records if r.get('levelname') in ('ERROR', 'CRITICAL')]
        if result.rc != 0 and errors:
            raise BorgError('borg check found problems in %s: %s' % (self.settings.repository,
                                                                     '; '.join(errors[:5])),
                            kind='check_failed', cmd=argv, rc=result.rc, stderr=result.stderr[-4000:])
        return result

    def extract(self, name, target, paths=(), strip_components=0, exclude=(), skip_paths=(), dry_run=False):
        """Extract into ``target`` (borg extracts into its working directory).

        ``skip_paths``: archive paths of items to leave out, matched literally and whole (``pf:``), in any
        number: they go to a private ``--exclude-from`` file, never one argv word each (a large tree
        overflowed the kernel's argument limit)."""
        opts = ['--list']
        if dry_run:
            opts.append('--dry-run')
        if strip_components:
            opts += ['--strip-components', str(int(strip_components))]
        for pattern in exclude:
            opts += ['--exclude', pattern]
        with skip_file(skip_paths) as skip_opts:
            argv = self.command(['extract'], opts + skip_opts,
                                [self.settings.location(name)] + [p.lstrip('/') for p in paths])
            result = self.run(argv, cwd=target)
        records, plain = parse_log_lines(result.stderr)
        files = [r.get('message') for r in records if r.get('type') == 'log_message'
                 and r.get('name') == 'borg.output.list']
        return files, result


# At most this many bytes of skipped names that cannot go in a file stay in argv (the kernel allows
# 2 MiB for argv and environment together; such names - newlines, trailing blanks - are rare).
MAX_ARGV_SKIP_BYTES = 256 * 1024


def _fits_exclude_file(path):
    """Whether ``pf:<path>`` survives borg's reading of an --exclude-from file unchanged.

    borg splits it on newlines (\\n, \\r: universal newlines), strips blanks at both ends of each line
    (the ``pf:`` prefix protects the start) and decodes it as UTF-8 (undecodable names are surrogates here)."""
    if '\n' in path or '\r' in path or path != path.rstrip():
        return False
    try:
        path.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def skip_file(paths):
    """Yield borg options excluding exactly ``paths``: one ``--exclude-from`` file in a private temporary
    directory (0700, file 0600, removed afterwards), plus ``--exclude`` words for the few names a
    line-based file cannot carry. ``pf:`` is a literal full-path match (glob and regex characters are
    plain) that borg looks up in a dict, so 50,000 of them cost no more than one."""
    in_file, in_argv = [], []
    for path in paths:
        (in_file if _fits_exclude_file(path) else in_argv).append('pf:' + path)
    if sum(len(p.encode('utf-8', 'surrogateescape')) + 11 for p in in_argv) > MAX_ARGV_SKIP_BYTES:
        raise BorgError('%d names to leave alone hold newlines or trailing blanks, too many to pass to borg '
                        'one by one; restore into another directory instead' % len(in_argv), kind='invalid_input')
    opts = []
    for pattern in in_argv:
        opts += ['--exclude', pattern]
    if not in_file:
        yield opts
        return
    tmpdir = tempfile.mkdtemp(prefix='borgfleet-skip-')  # 0700, owned by whoever runs borg
    try:
        list_path = os.path.join(tmpdir, 'exclude')
        fd = os.open(list_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with io.open(fd, 'w', encoding='utf-8', newline='\n') as f:
            for pattern in in_file:
                f.write(pattern + '\n')
        yield opts + ['--exclude-from', list_path]
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


class _GzipLines:
    """A stdout sink (Borg.run) writing a command's output gzip-compressed to a new private file, counting lines."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._open()

    def _open(self):
        # Level 1: borg produces the lines faster than the higher levels compress them; JSON shrinks ~10x anyway.
        self.file = gzip.GzipFile(fileobj=io.open(self.fd, 'wb', buffering=0, closefd=False), mode='wb', compresslevel=1)
        self.lines = 0

    def __call__(self, data):
        self.file.write(data)
        self.lines += data.count(b'\n')

    def restart(self):
        self.file.close()
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.ftruncate(self.fd, 0)
        self._open()

    def close(self):
        self.file.close()
        os.close(self.fd)
        return self.lines

    def discard(self):
        try:
            self.file.close()
            os.close(self.fd)
        except (OSError, ValueError):
            pass
        try:
            os.unlink(self.path)
        except OSError:
            pass


def children_pattern(path):
    """A borg ``--exclude`` pattern leaving only the direct children of directory ``path`` ('' = the top).

    A regular expression (re:, matched by borg against each item's path), ``path`` escaped literally:
    shell and regex metacharacters, spaces and newlines in names are plain characters."""
    path = path.strip('/')
    if not path:
        return 're:/'  # the top level: every path without a slash
    return 're:^(?!%s/[^/]+\\Z)' % re.escape(path)


_PRUNE_KEEP_RE = re.compile(r'^Keeping archive \(rule: (?P<rule>[^)]*)\):\s+(?P<name>\S+)')
_PRUNE_GONE_RE = re.compile(r'^(?:Would prune|Pruning archive(?: \(\d+/\d+\))?):\s+(?P<name>\S+)')


def parse_prune_list(stderr):
    """Parse `borg prune --list` (log-json) output into kept / pruned lists with reasons."""
    kept, pruned = [], []
    records, plain = parse_log_lines(stderr)
    for message in _messages(records, plain):
        for line in message.splitlines():
            m = _PRUNE_KEEP_RE.match(line.strip())
            if m:
                kept.append({'name': m.group('name'), 'rule': m.group('rule')})
                continue
            m = _PRUNE_GONE_RE.match(line.strip())
            if m:
                pruned.append({'name': m.group('name')})
    return {'kept': kept, 'pruned': pruned}
