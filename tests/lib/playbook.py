"""The suite's one way to run Ansible: a playbook of the collection, or one module in an ad-hoc play.

Both run ansible-playbook as an operator would (argv, no shell, the checkout's ansible.cfg), print
what an operator sees, and record every task result and the run's stats as data through a test-only
callback (tests/lib/callback_plugins): tests read results from there, never from the text.

- run_playbook(name, inventory, ...) -> PlaybookResult (rc, output, recap, results(), stats, ...).
- run_module(tmp_path, module, args, ...) -> the module's result dict (with .rc and .output), asserting
  it failed exactly when expect_failure says so and that no secret of the run leaked.
- start_module(...) -> a Popen in its own session, for tests that kill a run.
- four_ways(...) -> the style guide's scenario: check mode, real, again, again in check mode.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"
# Modules run with the managed host's python3 (Debian's, with python3-pyfuse3 and friends).
HOST_PYTHON = "/usr/bin/python3"
# Argument names whose values are secrets: a run must show none of them, in its output or its result.
SECRET_KEYS = re.compile(r"passphrase|password|secret", re.I)
RESULT_VAR = "borgfleet_test_result"

_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


@dataclass(repr=False)
class PlaybookResult:
    argv: list
    rc: int
    output: str  # stdout and stderr interleaved, as an operator sees them
    recap: dict = field(default_factory=dict)  # host -> {ok, changed, unreachable, failed, ...}
    events: list = field(default_factory=list)  # the recorded task results and stats, in order

    def results(self, task):
        """{host: result dict} of the task named `task` (without its role prefix)."""
        return {e["host"]: e["res"] for e in self.events if e.get("task") == task and e["event"] != "skipped"}

    def failed(self):
        """[(host, task)] of every failed task whose failure was not ignored."""
        return [(e["host"], e["task"]) for e in self.events
                if e["event"] in ("failed", "unreachable") and not e["ignore_errors"]]

    @property
    def stats(self):
        """The run's custom stats (set_stats), as {host or '_run': {key: value}}."""
        return next((e["custom"] for e in self.events if e["event"] == "stats"), {})

    def changed_tasks(self):
        """[(task, host)] of every changed result, to say *what* broke idempotence."""
        return [(e["task"], e["host"]) for e in self.events if e["event"] == "ok" and e["res"].get("changed")]

    def failures(self):
        """The text of every failed or unreachable task result ('fatal:'/'failed:' and its body).

        Assertions about error messages look here, never at the whole output, whose recap
        always says 'unreachable=0' and whose task names may say anything.
        """
        blocks, current = [], None
        for line in self.output.splitlines():
            if re.match(r"^(fatal|failed): \[", line):
                current = [line]
                blocks.append(current)
            elif current is not None and line.startswith((" ", "\t")):
                current.append(line)
            else:
                current = None
        return "\n".join("\n".join(b) for b in blocks)

    def tail(self, lines=80):
        return "\n".join(self.output.splitlines()[-lines:])

    def __repr__(self):  # what a failed assertion prints: the end of the run, as an operator saw it
        return f"<playbook rc={self.rc} argv={self.argv}>\n{self.tail()}\n"

    __str__ = __repr__


def parse_recap(output):
    recap, in_recap = {}, False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        m = _RECAP.match(line.strip()) if in_recap else None
        if m:
            recap[m.group("host")] = {k: int(v) for k, v in
                                      (kv.split("=") for kv in m.group("counts").split())}
    return recap


def _argv(playbook, inventory, extra_vars=None, check=False, diff=False, limit=None, verbosity=0):
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook)]
    if extra_vars:
        # JSON keeps every value literal: no key=value splitting, no shell.
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if limit:
        argv += ["--limit", limit]
    if verbosity:
        argv.append("-" + "v" * verbosity)
    return argv


def _env(record, control_dir=None, host_python=False):
    env = dict(os.environ,
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
               # Callbacks the caller enabled too (the bench's junit profile) stay enabled.
               ANSIBLE_CALLBACKS_ENABLED=",".join(
                   ["borgfleet_test_record"] + [c for c in os.environ.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",")
                                                if c.strip() and c.strip() != "borgfleet_test_record"]),
               BORGFLEET_TEST_RECORD=str(record),
               PYTHONUNBUFFERED="1")
    if host_python:
        env["ANSIBLE_PYTHON_INTERPRETER"] = HOST_PYTHON
    if control_dir:
        # SSH control sockets inside the test tree, so teardown leaves nothing behind.
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(control_dir)
    return env


def _read_record(path):
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _run(argv, env, record, timeout):
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
        rc, out = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc, out = -1, out + f"\n[harness] ansible-playbook timed out after {timeout}s"
    return PlaybookResult(argv=argv, rc=rc, output=out, recap=parse_recap(out), events=_read_record(record))


def run_playbook(name, inventory, extra_vars=None, check=False, diff=False, limit=None, verbosity=0,
                 timeout=600, control_dir=None):
    """Run playbooks/<name> (or a playbook path) against `inventory`; a PlaybookResult, never raises on rc."""
    playbook = PLAYBOOKS / name if "/" not in str(name) else Path(name)
    with tempfile.TemporaryDirectory(prefix="borgfleet-run-") as d:
        record = Path(d) / "record.jsonl"
        return _run(_argv(playbook, inventory, extra_vars, check, diff, limit, verbosity),
                    _env(record, control_dir), record, timeout)


class ModuleResult(dict):
    """A module's result as the play registered it (the variable `register` sets), plus the run's rc
    and output."""
    rc = None
    output = ""


def _secrets_in(value):
    """Values of secret-named arguments, nested ones included (e.g. databases[].login_password)."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if SECRET_KEYS.search(str(k)) and isinstance(v, str) and v:
                found.append(v)
            else:
                found += _secrets_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            found += _secrets_in(v)
    return found


def _module_play(tmp_path, module, args, check, diff, inventory, host):
    """The ad-hoc play and its argv: on `host` of `inventory`, or on this machine (local connection)."""
    stamp = time.monotonic_ns()
    # The registered variable, shown by a second task: callbacks get results with `failed` and
    # `skipped` taken out, and a module may return those keys itself (borg_restore counts `skipped`).
    play = {"hosts": host, "gather_facts": False,
            "tasks": [{"name": "under test", f"borgfleet.backup.{module}": args or {}, "register": RESULT_VAR,
                       "ignore_errors": True},
                      {"name": "the result", "ansible.builtin.debug": {"var": RESULT_VAR}}]}
    if inventory is None:
        play["connection"] = "local"
    path = Path(tmp_path) / f"play-{module}-{stamp}.yml"
    path.write_text(yaml.safe_dump([play]))
    argv = _argv(path, inventory or "localhost,", check=check, diff=diff)
    return argv, Path(tmp_path) / f"record-{module}-{stamp}.jsonl"


def run_module(tmp_path, module, args=None, check=False, diff=False, expect_failure=False, secrets=(),
               timeout=600, inventory=None, host="localhost"):
    """Run borgfleet.backup.<module> with `args` on this machine (or on `host` of `inventory`); its result.

    Asserts the module failed if and only if `expect_failure`, and that no secret — the values of
    secret-named arguments and `secrets` — appears in the output or the result."""
    argv, record = _module_play(tmp_path, module, args, check, diff, inventory, host)
    run = _run(argv, _env(record, host_python=inventory is None), record, timeout)
    record.unlink(missing_ok=True)
    for secret in set(secrets) | set(_secrets_in(args)):
        assert secret not in run.output, f"a secret leaked into the output of {module}"
        assert secret not in json.dumps(run.events), f"a secret leaked into the result of {module}"
    res = run.results("the result").get(host, {}).get(RESULT_VAR)
    assert res is not None, f"{module} gave no result on {host} (rc {run.rc}):\n{run.tail()}"
    result = ModuleResult(res)
    result.rc, result.output = run.rc, run.output
    if expect_failure:
        assert result.get("failed"), result
    else:
        assert not result.get("failed"), (result.get("msg"), str(result.get("stderr", ""))[-1500:])
        assert run.rc == 0, run
    return result


def start_module(tmp_path, module, args=None, check=False):
    """The run of run_module on this machine, started and not waited for: a Popen leading its own
    session (for os.killpg)."""
    argv, record = _module_play(tmp_path, module, args, check, False, None, "localhost")
    return subprocess.Popen(argv, cwd=REPO, env=_env(record, host_python=True), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def four_ways(tmp_path, module, args, state, **kwargs):
    """Check mode, real, again (idempotent), again in check mode, each asserting `changed`.

    `state()` reads back, with the real tool, what the module acts on: check mode must leave it as it
    was, the real run must change it, the two reruns must leave it alone. Returns the four results."""
    before = state()
    in_check = run_module(tmp_path, module, args, check=True, **kwargs)
    assert in_check["changed"], f"check mode of {module} announced no change"
    assert state() == before, f"check mode of {module} changed something"
    real = run_module(tmp_path, module, args, **kwargs)
    assert real["changed"], f"{module} reported no change"
    after = state()
    assert after != before, f"{module} reported a change but nothing changed"
    again = run_module(tmp_path, module, args, **kwargs)
    assert not again["changed"], f"{module} is not idempotent: {again}"
    again_in_check = run_module(tmp_path, module, args, check=True, **kwargs)
    assert not again_in_check["changed"], f"check mode of {module} announces a change already made"
    assert state() == after, f"a rerun of {module} changed something"
    return in_check, real, again, again_in_check
