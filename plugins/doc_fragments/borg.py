# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by every borg module (see module_utils/borg.py borg_common_argument_spec).
    DOCUMENTATION = r'''
options:
  repository:
    description:
      - The borg repository, a local path or C(ssh://user@host:port/path).
    type: str
    required: true
  passphrase:
    description:
      - Passphrase of the repository key. Passed to borg in C(BORG_PASSPHRASE), never on the command line.
      - Mutually exclusive with O(passcommand).
    type: str
  passcommand:
    description:
      - Command borg runs to obtain the passphrase (C(BORG_PASSCOMMAND)), for example C(cat /root/.borg-pass).
    type: str
  ssh_key:
    description:
      - Private SSH key used to reach a remote repository (C(ssh -i)); only this key is offered.
    type: path
  ssh_known_hosts:
    description:
      - known_hosts file holding the pinned host key of the backup server.
    type: path
  ssh_strict_host_key_checking:
    description:
      - When V(true), an unknown or changed host key is refused. When V(false), a new host key is accepted once
        (trust on first use) but a changed one is still refused.
    type: bool
    default: true
  remote_path:
    description:
      - Path of borg on the backup server (C(--remote-path)).
    type: str
  lock_wait:
    description:
      - Seconds to wait for a repository lock held by another borg run (C(--lock-wait)).
    type: int
    default: 600
  borg_binary:
    description:
      - The borg executable on the managed host.
    type: str
    default: borg
  borg_base_dir:
    description:
      - C(BORG_BASE_DIR) for borg's cache, config and security directories.
    type: path
  borg_timeout:
    description:
      - Seconds each borg command may run. Past that, borg is stopped with SIGINT (C(borg create) then writes
        a checkpoint archive C(<name>.checkpoint) that the next backup reuses, and borg releases its locks),
        and with SIGKILL if it is still running 20 seconds later; the task fails with C(error_kind=timeout).
      - Borg is stopped the same way when the playbook running the module goes away (canceled or killed).
      - Unset or V(0) means no limit.
    type: int
requirements:
  - borg 1.2 or newer (1.x) on the managed host
'''
