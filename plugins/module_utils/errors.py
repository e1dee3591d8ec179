# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: the one error shape of every tool a module runs.

Helpers raise it (or a subclass) with a message a human can act on; only a module's main()
turns it into fail_json(**error.to_fail_kwargs())."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class CommandError(Exception):
    """A command failed: message, the argv (secrets masked by the raiser), rc and stderr."""

    def __init__(self, msg, cmd=None, rc=None, stderr=''):
        super(CommandError, self).__init__(msg)
        self.msg = msg
        self.cmd = cmd or []
        self.rc = rc
        self.stderr = stderr

    def to_fail_kwargs(self):
        return dict(msg=self.msg, rc=self.rc, cmd=' '.join(self.cmd), stderr=self.stderr)


class RecoveryError(Exception):
    """Instant recovery could not do what was asked; ``log`` is the tail of the process's log."""
    def __init__(self, msg, log=''):
        super(RecoveryError, self).__init__(msg)
        self.msg = msg
        self.log = log
