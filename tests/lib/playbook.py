"""Run the collection's playbooks with ansible-playbook, as an operator would (argv, no shell)."""
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"

_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


@dataclass(repr=False)
class PlaybookResult:
    argv: list
    rc: int
    output: str  # stdout and stderr interleaved, as an operator sees them
    recap: dict = field(default_factory=dict)  # host -> {ok, changed, unreachable, failed, ...}

    def changed_tasks(self):
        """[(task, host)] for every `changed:` line, to say *what* broke idempotence."""
        task, found = None, []
        for line in self.output.splitlines():
            m = re.match(r"^TASK \[(.*)\]", line)
            if m:
                task = m.group(1)
            m = re.match(r"^changed: \[([^\]]+)\]", line)
            if m:
                found.append((task, m.group(1)))
        return found

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


def run_playbook(name, inventory, extra_vars=None, check=False, limit=None, verbosity=0,
                 timeout=600, control_dir=None):
    """Run playbooks/<name> against `inventory`; returns a PlaybookResult (never raises on rc)."""
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(PLAYBOOKS / name)]
    if extra_vars:
        # JSON keeps every value literal: no key=value splitting, no shell.
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if limit:
        argv += ["--limit", limit]
    if verbosity:
        argv.append("-" + "v" * verbosity)
    env = dict(os.environ,
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0",
               PYTHONUNBUFFERED="1")
    if control_dir:
        # SSH control sockets inside the test tree, so teardown leaves nothing behind.
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(control_dir)
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
        rc, out = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc, out = -1, out + f"\n[harness] ansible-playbook timed out after {timeout}s"
    return PlaybookResult(argv=argv, rc=rc, output=out, recap=parse_recap(out))
