# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolve this host's backups once for the play (documentation: plugins/modules/resolve_backups.py)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.borgfleet.backup.plugins.module_utils import contract


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("backups", "limit", "backup_server", "local_pool_path"))
    # Pure inventory logic on the controller: an unreachable client is still checked.
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        hostvars = task_vars.get("hostvars") or {}
        limit = args.get("limit") or None
        try:
            contract.check_limit(limit, dict(
                (host, (hostvars.get(host) or {}).get("borgfleet_backups"))
                for host in task_vars.get("ansible_play_hosts_all") or []))
            backups = contract.resolve_backups(
                args.get("backups"), task_vars["inventory_hostname"], hostvars,
                (task_vars.get("groups") or {}).get("backup_servers") or [], limit,
                args.get("local_pool_path") or contract.DEFAULT_LOCAL_POOL_PATH,
                args.get("backup_server") or None, limit_missing="skip")
        except contract.ContractError as err:
            # The contract's plain message, shown as it is (it never holds a secret).
            result.update(failed=True, msg=str(err))
            return result
        # The backups carry passphrases: this result is never shown, whatever the task says
        # (Ansible keeps an action's own no_log); a failure above is.
        result.update(changed=False, backups=backups, public_backups=contract.public_backups(backups),
                      _ansible_no_log=True)
        return result
