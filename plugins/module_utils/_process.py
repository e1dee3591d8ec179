# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: how every command of the collection is started and stopped.

Every tool a module runs goes through this file, always as an argv list (never a shell):
``run()`` for borg (below), ``run_command()`` for every other tool (a timeout kills its whole
process group, secrets are masked in any error text), ``spawn()`` for the few long-lived
processes (an engine, rowfs, a client session held open on a pipe).

How borg is started, watched and stopped:

borg must be stopped the way it expects: SIGINT first (``borg create`` then writes a
checkpoint archive and every borg releases its locks), a bounded wait, then SIGKILL. Three
things can ask for that, and each is handled here:

- a timeout (the modules' ``borg_timeout``);
- the playbook going away over SSH: ansible does not signal a module on the managed host when
  ansible-playbook is killed (no tty), but the reader of the module's stdout goes away, which
  poll() reports as POLLERR/POLLHUP on fd 1;
- the module itself being killed: ansible-runner cancels a playbook with SIGKILL to its whole
  process group, which takes a module on a local connection with it. So the command runs under
  a small guard process in a session of its own, outside that group: when its control pipe
  closes (the module asked it to stop, or died), the guard stops the command.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import select
import signal
import subprocess
import time

from ansible_collections.borgfleet.backup.plugins.module_utils.contract import BORG_STOP_GRACE as STOP_GRACE
from ansible_collections.borgfleet.backup.plugins.module_utils.errors import CommandError

_POLL = 0.5


class Stopped(Exception):
    """The command was stopped before it finished; ``reason`` is 'timeout' or 'orphaned'."""

    def __init__(self, reason, rc, stdout, stderr, seconds):
        super(Stopped, self).__init__(reason)
        self.reason, self.rc, self.stdout, self.stderr, self.seconds = reason, rc, stdout, stderr, seconds


def _guard(argv, env, cwd, grace, daemon, user=None):
    """Body of the guard process (fd 0: control pipe, fds 1 and 2: the module's pipes).

    ``user``: (uid, gid) the command runs as (the guard stays root to stop it)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the control pipe tells the guard to stop
    try:
        # A session of its own: signals meant for the guard's group never reach borg unasked,
        # and the SIGKILL below takes borg's ssh with it.
        as_user = dict(user=user[0], group=user[1], extra_groups=[]) if user else {}
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_default_signals, **as_user)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return 127  # as a shell says "not found"; callers report it as not installed
        os.write(2, ('cannot run %s: %s\n' % (argv[0], e.strerror or e)).encode('utf-8', 'replace'))
        return 126
    exited = _exit_fd(proc.pid)
    try:
        while proc.poll() is None:
            readable = select.select([0] + exited, [], [], _POLL)[0]
            if 0 in readable and not os.read(0, 64):
                _stop(proc, grace)
                break
    finally:
        for fd in exited:
            os.close(fd)
    rc = proc.wait()
    if not (daemon and rc == 0):
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever borg left in its group (its ssh, a hung filter)
        except OSError:
            pass
    return rc if rc >= 0 else 128 - rc


def _exit_fd(pid):
    """[a pidfd that turns readable when ``pid`` exits], or [] where the system has none (then the exit is
    seen at the next _POLL). Without it every command took up to _POLL longer than it ran (measured: a
    0.26 s ``borg with-lock`` returned after 0.5 s)."""
    try:
        return [os.pidfd_open(pid)]
    except (AttributeError, OSError):
        return []


def _default_signals():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _stop(proc, grace):
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass


def _start(argv, env, cwd, grace, daemon, user=None):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            os.setsid()
            os.dup2(ctl_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            # Nothing else of the module's: above all not its stdout, whose reader must see it close.
            os.closerange(3, _max_fd())
            code = _guard(argv, env, cwd, grace, daemon, user)
        except BaseException as e:
            os.write(2, ('borgfleet: cannot start %s: %r\n' % (argv[0], e)).encode('utf-8', 'replace'))
        finally:
            os._exit(code)
    for fd in (out_w, err_w, ctl_r):
        os.close(fd)
    return pid, out_r, err_r, ctl_w


def _max_fd():
    try:
        return os.sysconf('SC_OPEN_MAX')
    except (ValueError, OSError):
        return 1024


def _hung_up(poller):
    if poller is None:
        return False
    return any(ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, ev in poller.poll(0))


def run(argv, env, cwd=None, timeout=None, grace=STOP_GRACE, watch_fd=1, daemon=False, user=None,
        stdout_sink=None):
    """Run argv (no shell) with exactly ``env``; returns (rc, stdout, stderr) as text.

    ``stdout_sink``: a callable given each chunk of stdout (bytes) as it comes, instead of keeping it:
    output too large to hold in memory (every item of an archive); stdout is then returned as ''.

    ``daemon``: the command leaves a daemon behind when it succeeds (``borg mount``): then what
    it left in its process group - the daemon's ssh to the repository - is not killed.

    Raises Stopped when the command was stopped for a timeout or because ``watch_fd`` (the
    module's stdout) lost its reader. On KeyboardInterrupt or SystemExit (Ctrl-C, a SIGTERM
    handler) the command is stopped the same way before the exception goes on."""
    started = time.monotonic()
    pid, out_r, err_r, ctl_w = _start(argv, env, cwd, grace, daemon, user)
    chunks = {out_r: [], err_r: []}
    poller = None
    if watch_fd is not None:
        poller = select.poll()
        poller.register(watch_fd, 0)  # only POLLERR/POLLHUP/POLLNVAL are reported
    reason = None
    try:
        open_fds = [out_r, err_r]
        while open_fds:
            for fd in select.select(open_fds, [], [], _POLL)[0]:
                data = os.read(fd, 65536)
                if data and fd == out_r and stdout_sink is not None:
                    stdout_sink(data)
                elif data:
                    chunks[fd].append(data)
                else:
                    open_fds.remove(fd)
            if reason is None:
                if timeout and time.monotonic() - started > timeout:
                    reason = 'timeout'
                elif _hung_up(poller):
                    reason = 'orphaned'
                if reason:
                    os.close(ctl_w)  # the guard stops the command: SIGINT, grace, SIGKILL
                    ctl_w = None
        status = os.waitpid(pid, 0)[1]
    except BaseException:
        if ctl_w is not None:
            os.close(ctl_w)
            ctl_w = None
        _reap(pid, grace + 5)
        raise
    finally:
        for fd in (out_r, err_r, ctl_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
    rc = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    if rc >= 128:
        rc = 128 - rc  # the command died of a signal: negative, as subprocess reports it
    out, err = (b''.join(chunks[fd]).decode('utf-8', 'replace') for fd in (out_r, err_r))
    if reason:
        raise Stopped(reason, rc, out, err, time.monotonic() - started)
    return rc, out, err


def _reap(pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.1)


# Every other command ----------------------------------------------------------------------------

SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
DEFAULT_TIMEOUT = 120
MASK = '********'
# For callers of spawn(): where its pipes go, and what a wait on it raises.
PIPE, STDOUT, TimeoutExpired = subprocess.PIPE, subprocess.STDOUT, subprocess.TimeoutExpired


def c_locale_env(extra=None, inherit=True):
    """The C locale (tools' messages and numbers as parsed here); ``inherit`` False starts from an
    empty environment with a standard PATH (nothing of ours, above all no borg secret, leaks)."""
    env = dict(os.environ) if inherit else {'PATH': SYSTEM_PATH}
    env.update(LC_ALL='C.UTF-8', LANG='C.UTF-8')
    env.update(extra or {})
    return env


def clean_env(extra=None):
    """For processes we leave running or start for someone else (an engine, rowfs, fusermount):
    nothing of ours inherited, above all no borg secret."""
    return c_locale_env(extra, inherit=False)


def mask(text, secrets):
    for secret in secrets or ():
        if secret and isinstance(text, str):
            text = text.replace(secret, MASK)
    return text


class Completed:
    """How a command ended: status is ok (it ran; see rc), missing (not found), timeout or error."""

    def __init__(self, argv, status, rc=None, out='', err=''):
        self.argv = argv
        self.status = status
        self.rc = rc
        self.out = out
        self.err = err

    @property
    def ok(self):
        return self.status == 'ok' and self.rc == 0

    def first_error_line(self):
        if self.status == 'missing':
            return 'not installed'
        if self.status == 'timeout':
            return 'timed out'
        lines = [line.strip() for line in (self.err or self.out).splitlines() if line.strip()]
        return (lines[0] if lines else 'exit code %s' % self.rc)[:200]


def run_command(argv, env=None, timeout=DEFAULT_TIMEOUT, input_text=None, cwd=None, user=None, group=None,
                secrets=()):
    """Run argv (no shell) in a session of its own; returns a Completed, never raises for the command.

    ``env`` is the whole environment (default: ours in the C locale). On a timeout the command's
    whole process group is killed (runuser -> psql, a tool's helpers). ``user``/``group`` (ids)
    drop privileges for the command alone. Output is masked of ``secrets``."""
    argv = list(argv)
    kwargs = {}
    if user is not None:
        kwargs = dict(user=user, group=group, extra_groups=[])
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=c_locale_env() if env is None else env, cwd=cwd, start_new_session=True,
                                **kwargs)
    except FileNotFoundError:
        return Completed(argv, 'missing', rc=127)
    except OSError as e:
        return Completed(argv, 'error', rc=126, err=mask(str(e), secrets))
    data = input_text.encode('utf-8') if input_text is not None else None
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return Completed(argv, 'timeout')
    except BaseException:
        _kill_group(proc)
        raise
    return Completed(argv, 'ok', proc.returncode, mask(out.decode('utf-8', 'replace'), secrets),
                     mask(err.decode('utf-8', 'replace'), secrets))


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.communicate(timeout=2)
    except subprocess.TimeoutExpired:
        pass  # a grandchild in another session keeps the pipe; we stop waiting anyway


def check_command(argv, error=CommandError, what=None, secrets=(), **kwargs):
    """run_command, raising ``error`` unless the command ran and exited 0; returns its stdout.

    ``what`` names the command in the message (default: the program)."""
    done = run_command(argv, secrets=secrets, **kwargs)
    what = what or argv[0]
    cmd = [mask(a, secrets) for a in argv]
    if done.status == 'missing':
        raise error('%s is not installed' % argv[0], cmd=cmd, rc=127)
    if done.status == 'timeout':
        raise error('%s did not finish within %s s' % (what, kwargs.get('timeout', DEFAULT_TIMEOUT)), cmd=cmd)
    if done.status == 'error':
        raise error('cannot run %s: %s' % (argv[0], done.err), cmd=cmd, rc=done.rc)
    if done.rc != 0:
        raise error('%s failed (rc %s): %s' % (what, done.rc, done.err.strip()[-500:]),
                    cmd=cmd, rc=done.rc, stderr=done.err[-2000:])
    return done.out


class Tools:
    """Runs tools found on ``path`` only (not the caller's PATH), in a minimal C-locale environment."""

    def __init__(self, path=SYSTEM_PATH, timeout=5):
        self.path = path
        self.timeout = timeout

    def which(self, name):
        for directory in self.path.split(':'):
            candidate = os.path.join(directory, name)
            if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        return None

    def run(self, argv, timeout=None, env=None):
        exe = self.which(argv[0])
        if exe is None:
            return Completed(list(argv), 'missing')
        environ = {'PATH': self.path, 'LC_ALL': 'C', 'LANG': 'C', 'HOME': os.environ.get('HOME', '/root'),
                   'LVM_SUPPRESS_FD_WARNINGS': '1'}
        environ.update(env or {})
        return run_command([exe] + list(argv[1:]), env=environ, timeout=timeout or self.timeout)


def spawn(argv, env, stdin=None, stdout=None, stderr=None, cwd=None, user=None, group=None, own_session=True):
    """Start a long-lived process (an engine, rowfs, a client session on a pipe) and return its Popen.

    The caller owns it: it stops it, and waits for it. ``own_session`` puts it in a session of its
    own, so a signal to it (or a kill of its group) never reaches the module and back."""
    kwargs = {}
    if user is not None:
        kwargs = dict(user=user, group=group, extra_groups=[])
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL if stdin is None else stdin,
                            stdout=stdout, stderr=stderr, env=env, cwd=cwd, start_new_session=own_session,
                            close_fds=True, **kwargs)


# Processes we started and left running (pid + start time identify one for good) ----------------

def _start_time(pid):
    """Start time of a live (not zombie) process, or None; pid + start time identify it for good."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None
    if fields[0] in ('Z', 'X'):
        return None
    return int(fields[19])


def proc_id(pid):
    """What a state file stores for a process we started."""
    return {'pid': pid, 'start': _start_time(pid)}


def alive(p):
    return bool(p) and p.get('pid') and _start_time(p['pid']) is not None and _start_time(p['pid']) == p.get('start')


def wait_gone(p, timeout):
    deadline = time.time() + timeout
    while alive(p):
        if time.time() >= deadline:
            return False
        time.sleep(0.1)
    return True


def stop_process(p, first=signal.SIGTERM, timeout=60, group=False):
    """Signal, wait, then SIGKILL (the whole process group when ``group``). True if it was running."""
    if not alive(p):
        return False
    try:
        os.kill(p['pid'], first)
    except ProcessLookupError:
        return False
    if not wait_gone(p, timeout):
        try:
            if group:
                os.killpg(p['pid'], signal.SIGKILL)
            else:
                os.kill(p['pid'], signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone(p, 10)
    if group:  # children of a killed postmaster would keep files on the layer open
        try:
            os.killpg(p['pid'], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return True


def tail(path, lines=25):
    """The last lines of a started process's log file (for an error message)."""
    try:
        with open(path, errors='replace') as f:
            return '\n'.join(f.read().splitlines()[-lines:])
    except OSError:
        return ''
