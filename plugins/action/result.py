# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The result tail of a role in one task (documentation: plugins/modules/result.py)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.borgfleet.backup.plugins.filter.backups import result_report


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("results", "keys", "stats_key", "stats_keys", "extra"))
    # Controller only: what the loop before it registered, shown and recorded.
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        raw, extra = args.get("results") or {}, list(args.get("extra") or [])
        report = result_report(raw, args.get("keys") or ()) + extra
        # What debug showed: the report as msg, at every verbosity.
        result.update(changed=False, msg=report, _ansible_verbose_always=True,
                      failures=dict((e["backup"], e.get("msg")) for e in report if e.get("failed")))
        if args.get("stats_key"):
            # What set_stats recorded (its defaults: aggregated over hosts, not per host). The
            # strategy reads ansible_stats from any successful result, so the next task may fail
            # the host and the figures are kept all the same.
            stats = result_report(raw, args.get("stats_keys") or ()) + extra
            result["ansible_stats"] = {"data": {args["stats_key"]: stats}, "per_host": False, "aggregate": True}
        return result
