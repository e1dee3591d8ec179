"""Run server_facts / pool_info and the stats playbooks for real, and read their results.

Modules run through ansible (a one-task play on localhost, result saved with copy); playbooks run
through ansible_runner exactly as the service does, picking the "borgfleet ... result" tasks
out of the events.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import ansible_runner
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LOCALHOST = {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                              "ansible_python_interpreter": "/usr/bin/python3"}}}}


def ansible_env():
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3")


class ModuleRunner:
    """borgfleet.backup.<module> in a one-task play on localhost; returns (result, output)."""

    def __init__(self, tmp_path):
        self.dir = tmp_path

    def __call__(self, module, args=None, check=False, timeout=120):
        out = self.dir / "result.json"
        play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
                 "tasks": [{"name": "under test", f"borgfleet.backup.{module}": args or {}, "register": "r"},
                           {"name": "save result", "check_mode": False,
                            "ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(out)}}]}]
        path = self.dir / "play.yml"
        path.write_text(yaml.safe_dump(play))
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(path)]
        if check:
            argv.append("--check")
        proc = subprocess.run(argv, cwd=REPO, env=ansible_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0 and out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
        result = json.loads(out.read_text())
        out.unlink()
        return result, proc.stdout + proc.stderr


@pytest.fixture
def run_module(tmp_path):
    return ModuleRunner(tmp_path)


class PlaybookRun:
    def __init__(self, runner):
        self.runner = runner
        self.events = list(runner.events)
        self.stdout = runner.stdout.read()

    def results(self, task):
        """host -> msg of the result task, as the service records it."""
        return {e["event_data"]["host"]: e["event_data"]["res"]["msg"] for e in self.events
                if e["event"] == "runner_on_ok" and e["event_data"].get("task") == task}

    def failed(self):
        return [(e["event_data"]["host"], e["event_data"].get("task")) for e in self.events
                if e["event"] == "runner_on_failed" and not e["event_data"].get("ignore_errors")]


def run_playbook_events(tmp_path, playbook, inventory=None, extravars=None, check=False, timeout=300):
    pdd = tmp_path / f"runner-{playbook}"
    pdd.mkdir(exist_ok=True)
    options = {"cmdline": "--check"} if check else {}
    runner = ansible_runner.run(
        private_data_dir=str(pdd), project_dir=str(REPO), playbook=str(REPO / "playbooks" / playbook),
        inventory=inventory if inventory is not None else LOCALHOST, extravars=extravars or {},
        # ansible-playbook of this venv, as the service's jobs run it.
        envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                 "PATH": str(VENV_BIN) + os.pathsep + os.environ.get("PATH", "")},
        quiet=True, suppress_env_files=True, timeout=timeout,
        **options)
    return PlaybookRun(runner)


@pytest.fixture
def run_playbook(tmp_path):
    def run(playbook, **kwargs):
        return run_playbook_events(tmp_path, playbook, **kwargs)
    return run
