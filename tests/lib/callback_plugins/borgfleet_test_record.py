"""Test harness only: record every task result and the run's stats as JSON lines.

An extra callback beside the operator's stdout one (tests/lib/playbook.py enables it), so a test
reads results as data while the run prints exactly what an operator sees. Callbacks receive the
results ansible has already censored (no_log) and stripped of internal keys.
"""
import json
import os

from ansible.module_utils.common.json import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: borgfleet_test_record
    type: aggregate
    short_description: JSON lines of task results and stats, for the test suite
    description: Writes to the file named by BORGFLEET_TEST_RECORD.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "borgfleet_test_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._path = os.environ.get("BORGFLEET_TEST_RECORD")
        self._names = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        # ansible templates a task's name ("{{ _borgfleet_result_task }}") for this event only;
        # the results come with the raw name.
        self._names[task._uuid] = task.name

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def _write(self, entry):
        if self._path:
            # One line per event, flushed at once: a killed run keeps what it recorded.
            with open(self._path, "a") as f:
                f.write(json.dumps(entry, cls=AnsibleJSONEncoder) + "\n")

    def _result(self, status, result, ignore_errors=False):
        res = dict(result._result)
        if status in ("failed", "skipped"):
            res[status] = True  # as the registered variable says; ansible strips it from callbacks' copy
        name = self._names.get(result._task._uuid, result._task.name)
        self._write({"event": status, "host": result._host.get_name(), "task": name,
                     "ignore_errors": bool(ignore_errors), "res": res})

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("failed", result, ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_playbook_on_stats(self, stats):
        self._write({"event": "stats", "custom": stats.custom,
                     "hosts": {h: stats.summarize(h) for h in sorted(stats.processed)}})
