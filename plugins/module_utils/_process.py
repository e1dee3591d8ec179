# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: how borg is started, watched and stopped.

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

_POLL = 0.5


class Stopped(Exception):
    """The command was stopped before it finished; ``reason`` is 'timeout' or 'orphaned'."""

    def __init__(self, reason, rc, stdout, stderr, seconds):
        super(Stopped, self).__init__(reason)
        self.reason, self.rc, self.stdout, self.stderr, self.seconds = reason, rc, stdout, stderr, seconds


def _guard(argv, env, cwd, grace):
    """Body of the guard process (fd 0: control pipe, fds 1 and 2: the module's pipes)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the control pipe tells the guard to stop
    try:
        # A session of its own: signals meant for the guard's group never reach borg unasked,
        # and the SIGKILL below takes borg's ssh with it.
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_default_signals)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return 127  # as a shell says "not found"; callers report it as not installed
        os.write(2, ('cannot run %s: %s\n' % (argv[0], e.strerror or e)).encode('utf-8', 'replace'))
        return 126
    while proc.poll() is None:
        readable = select.select([0], [], [], _POLL)[0]
        if readable and not os.read(0, 64):
            _stop(proc, grace)
            break
    rc = proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever borg left in its group (its ssh, a hung filter)
    except OSError:
        pass
    return rc if rc >= 0 else 128 - rc


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


def _start(argv, env, cwd, grace):
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
            code = _guard(argv, env, cwd, grace)
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


def run(argv, env, cwd=None, timeout=None, grace=STOP_GRACE, watch_fd=1):
    """Run argv (no shell) with exactly ``env``; returns (rc, stdout, stderr) as text.

    Raises Stopped when the command was stopped for a timeout or because ``watch_fd`` (the
    module's stdout) lost its reader. On KeyboardInterrupt or SystemExit (Ctrl-C, a SIGTERM
    handler) the command is stopped the same way before the exception goes on."""
    started = time.monotonic()
    pid, out_r, err_r, ctl_w = _start(argv, env, cwd, grace)
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
                if data:
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
