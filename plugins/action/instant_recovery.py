# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of borgfleet.backup.instant_recovery: puts rowfs on the managed host, then runs the module.

rowfs (plugins/module_utils/rowfs.py, its one source) runs as a process of its own that outlives
the module, so it needs a file on the host that stays: before a task that may start a session this
copies it to ROWFS_PATH (``copy``: only when it changed) where the module starts it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.plugins.action import ActionBase

ROWFS_SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'module_utils', 'rowfs.py')
# Keep equal to module_utils/recovery.py ROWFS_PATH: a program of the collection (root's, not writable by others).
ROWFS_DIR = '/usr/local/lib/borgfleet'
ROWFS_PATH = ROWFS_DIR + '/rowfs.py'
# Every other state may start a session (started, and verification), so rowfs is put in place.
STATES_THAT_START_NOTHING = ('stopped', 'absent', 'query', 'cleanup')


class ActionModule(ActionBase):

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        try:
            if self._task.args.get('state', 'started') not in STATES_THAT_START_NOTHING and not self._task.check_mode:
                installed = self._install_rowfs(task_vars)
                if installed.get('failed'):
                    result.update(failed=True, msg='cannot put rowfs on the host at %s: %s'
                                  % (ROWFS_PATH, installed.get('msg')))
                    return result
            result.update(self._execute_module(module_name='borgfleet.backup.instant_recovery',
                                               module_args=self._task.args, task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _install_rowfs(self, task_vars):
        made = self._execute_module(module_name='ansible.legacy.file', task_vars=task_vars,
                                    module_args=dict(path=ROWFS_DIR, state='directory', mode='0755'))
        if made.get('failed'):
            return made
        copy_task = self._task.copy()
        copy_task.args = dict(src=ROWFS_SOURCE, dest=ROWFS_PATH, mode='0644')
        copy = self._shared_loader_obj.action_loader.get('ansible.legacy.copy', task=copy_task,
                                                         connection=self._connection,
                                                         play_context=self._play_context, loader=self._loader,
                                                         templar=self._templar,
                                                         shared_loader_obj=self._shared_loader_obj)
        return copy.run(task_vars=task_vars)
