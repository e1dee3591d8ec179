# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: read-only probes of a host (server_facts, pool_info, each engine's
detect()): tools on a given PATH with a timeout, config files under a root, sockets.

A missing tool or a probe that times out is an answer ("absent", "timed out"), never a hang or a
traceback. Managed hosts have no psutil, so nothing outside the standard library is used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import socket
import threading

from ansible_collections.borgfleet.backup.plugins.module_utils import _process

DEFAULT_PATH = _process.SYSTEM_PATH


class Probe(_process.Tools):
    """Runs tools found on ``path`` (through the collection's runner) and reads config files under
    ``root``, each with a timeout."""

    def __init__(self, path=DEFAULT_PATH, root='/', timeout=5):
        super(Probe, self).__init__(path, timeout)
        self.root = root or '/'

    def file(self, path):
        """A config file's path as seen under ``root``."""
        return os.path.join(self.root, path.lstrip('/'))

    def read(self, path):
        try:
            with open(self.file(path)) as f:
                return f.read()
        except (IOError, OSError, UnicodeDecodeError):
            return None


def call_with_timeout(func, timeout, *args):
    """func(*args) in a daemon thread: a hung NFS statvfs/stat must not hang the module.

    Returns (value, None) or (None, reason)."""
    box = {}

    def target():
        try:
            box['value'] = func(*args)
        except Exception as e:  # reported, not raised: one bad mount must not fail the module
            box['error'] = str(e)

    thread = threading.Thread(target=target)
    thread.daemon = True
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return None, 'timed out'
    return box.get('value'), box.get('error')


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return None


def to_int(value):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def unix_socket_answers(path, timeout=2):
    if not path or not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return True
    except (OSError, socket.error):
        return False
    finally:
        s.close()


def tcp_answers(host, port, timeout=2):
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except (OSError, socket.error, ValueError):
        return False


def search(text, pattern):
    """First group of pattern in text, or None."""
    match = re.search(pattern, text or '')
    return match.group(1) if match else None
