"""One backup server and one client on loopback sshd (tests/lib), set up by playbooks/setup.yml,
and the three contenders that back the same tree up to it over the same SSH path.

The client's inventory holds three backups (ours, raw, borgmatic), so setup.yml initialises
three identical repositories under the client's own directory on the server; the client's key,
its pinned known_hosts and its BORG_BASE_DIR then serve all three contenders.
"""
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from bench.backup_overhead import tree
from bench.common import SshFleet, environ
from tests.lib import fleet as fl
from tests.lib.playbook import run_playbook

CONTENDERS = ("raw", "ours", "borgmatic")
TIMEOUT = 3600  # an initial backup of the tree takes well under a minute here


class Bench(SshFleet):
    def __init__(self, log=print):
        super().__init__("run-", log=log)

    # --- fleet ----------------------------------------------------------------------------
    def setup(self, data, exclude):
        """Start both sshds and run setup.yml; `data` is what every contender backs up."""
        self.data, self.exclude = Path(data), list(exclude)
        self.start_controller("borgfleet-bench-controller")
        server_dir = self.root / "server"
        server_dir.mkdir(mode=0o755)
        self.server = fl.Server(name="benchserver", sshd=self.sshd("benchserver", "127.0.0.210"),
                                dir=server_dir, user=f"bfb{secrets.token_hex(3)}",
                                pools=[{"name": "main", "path": str(server_dir / "pool")}])
        self.cpu.join("server", self.server.sshd.proc.pid)  # borg serve is counted as server CPU
        client_dir = self.root / "client"
        client_dir.mkdir(mode=0o700)
        self.client = fl.Client(name="benchclient", sshd=self.sshd("benchclient", "127.0.0.211"),
                                dir=client_dir, server=self.server)
        self.client.backups = [{"name": name, "paths": [str(self.data)], "exclude": list(self.exclude),
                                "compression": "lz4", "passphrase": fl.passphrase()}
                               for name in CONTENDERS]
        setup_inv = fl.write_inventory(self.root / "inventory-setup.yml", self._inventory(CONTENDERS))
        # What `ours` runs against: the same client with its one backup.
        self.inventory = fl.write_inventory(self.root / "inventory.yml", self._inventory(["ours"]))
        result = run_playbook("setup.yml", setup_inv, control_dir=self.control_dir(), timeout=900)
        if result.rc != 0:
            raise RuntimeError(f"setup.yml failed:\n{result}")
        self.repos = {name: self.client.repo(name, self.controller, ssh_key=self.client.ssh_key)
                      for name in CONTENDERS}
        # Raw borg and borgmatic use the client's own pinned known_hosts, as the module does.
        for repo in self.repos.values():
            repo.known_hosts = self.client.known_hosts
        self._write_borgmatic_config()
        self._n = 0

    def _inventory(self, backups):
        client = dataclasses.replace(self.client, backups=[b for b in self.client.backups if b["name"] in backups])
        return fl.inventory(self.controller, [self.server], [client])

    # --- contenders -----------------------------------------------------------------------
    def _write_borgmatic_config(self):
        repo = self.repos["borgmatic"]
        cfg = {
            "location": {
                "source_directories": [str(self.data)],
                "repositories": [repo.url],
                "one_file_system": True,
                "exclude_patterns": list(self.exclude),
                "exclude_caches": True,
            },
            "storage": {
                # The passphrase comes from BORG_PASSPHRASE in the environment, as for raw borg.
                "ssh_command": repo.env()["BORG_RSH"],
                "borg_base_directory": str(self.client.borg_base_dir),
                "compression": "lz4",
                "archive_name_format": "borgmatic-{now:%Y-%m-%dT%H:%M:%S.%f}",
            },
        }
        self.borgmatic_config = self.root / "borgmatic.yaml"
        self.borgmatic_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.borgmatic_config.chmod(0o600)
        proc = subprocess.run(["validate-borgmatic-config", "-c", str(self.borgmatic_config)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"borgmatic config invalid: {proc.stdout}{proc.stderr}")

    def raw_argv(self):
        repo = self.repos["raw"]
        argv = ["borg", "create", "--json", "--compression", "lz4", "--exclude-caches", "--one-file-system"]
        for pattern in self.exclude:
            argv += ["--exclude", pattern]
        return argv + [repo.archive("raw-{now:%Y-%m-%dT%H:%M:%S.%f}"), str(self.data)]

    def borgmatic_argv(self):
        return ["borgmatic", "-c", str(self.borgmatic_config), "--no-color", "create"]

    def _borg_connections(self):
        """SSH logins of the borg user so far: one per borg process that reached the server."""
        text = self.server.sshd.log_text()
        return text.count(f"Accepted publickey for {self.server.user} ")

    def run(self, contender, extra_env=None):
        """Run one contender once; returns {seconds, connections, ...}. Raises on failure."""
        # Dirty pages of the previous run (its repository writes) are flushed first and the tree
        # is read into the page cache, both untimed: every contender starts from the same state
        # and none pays for the one before it.
        os.sync()
        tree.warm(self.data)
        before, cpu_before = self._borg_connections(), self.cpu.sample()
        if contender == "ours":
            with environ(extra_env):
                t0 = time.monotonic()
                result = run_playbook("backup.yml", self.inventory, control_dir=self.control_dir(),
                                      timeout=TIMEOUT)
                seconds = time.monotonic() - t0
            if result.rc != 0:
                raise RuntimeError(f"ours (backup.yml) failed:\n{result}")
            out = {"seconds": seconds}
        else:
            repo = self.repos[contender]
            argv = self.raw_argv() if contender == "raw" else self.borgmatic_argv()
            t0 = time.monotonic()
            proc = subprocess.run(argv, env=repo.env(), stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=TIMEOUT)
            seconds = time.monotonic() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"{contender} failed rc={proc.returncode}: {argv}\n{proc.stderr[-3000:]}")
            out = {"seconds": seconds}
            if contender == "raw":
                out["borg_duration"] = json.loads(proc.stdout)["archive"]["duration"]
        out["cpu"] = self.cpu.delta(cpu_before, self.cpu.sample())
        out["server_logins"] = self._borg_connections() - before
        return out

    # --- reading back ---------------------------------------------------------------------
    def last_archive(self, contender):
        return self.repos[contender].archives()[-1]

    def archive_duration(self, contender, archive):
        info = json.loads(self.repos[contender].run("info", "--json", self.repos[contender].archive(archive)).stdout)
        return info["archives"][0]["duration"]

    def verify(self, contender, expected, changed, scratch):
        """Problems with the contender's last archive ([] = none): paths and sizes against the
        tree, and the files changed in the last round extracted and compared byte for byte."""
        repo = self.repos[contender]
        name = repo.archive_names()[-1]
        prefix = str(self.data).lstrip("/") + "/"
        out = repo.run("list", "--json-lines", repo.archive(name), timeout=TIMEOUT).stdout
        stored = {}
        for line in out.splitlines():
            item = json.loads(line)
            if item["type"] == "-" and item["path"].startswith(prefix):
                stored[item["path"][len(prefix):]] = item["size"]
        problems = [f"missing {p}" for p in sorted(expected.keys() - stored.keys())][:10]
        problems += [f"unexpected {p}" for p in sorted(stored.keys() - expected.keys())][:10]
        problems += [f"size of {p}: {stored[p]} != {expected[p]}"
                     for p in sorted(expected.keys() & stored.keys()) if stored[p] != expected[p]][:10]
        dest = Path(scratch) / contender
        repo.extract(name, dest, *[prefix + rel for rel in changed])
        for rel in changed:
            a, b = self.data / rel, dest / prefix / rel
            if not b.exists() or a.read_bytes() != b.read_bytes():
                problems.append(f"content differs: {rel}")
        shutil.rmtree(dest, ignore_errors=True)
        # The initial archive's sizes: the same compressed size proves the same work (lz4) was done.
        first = json.loads(repo.run("info", "--json", "--first", "1", repo.url).stdout)["archives"][0]
        return {"archive": name, "files": len(stored), "problems": problems,
                "initial_archive_stats": first["stats"]}

    # --- where ours spends its time ---------------------------------------------------------
    def profile_ours(self):
        """One `ours` run with ansible's built-in junit callback: per-task seconds."""
        junit_dir = Path(tempfile.mkdtemp(prefix="junit-", dir=self.root))
        res = self.run("ours", extra_env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.junit",
                                          "JUNIT_OUTPUT_DIR": str(junit_dir),
                                          "JUNIT_HIDE_TASK_ARGUMENTS": "true"})
        tasks = []
        for xml in junit_dir.glob("*.xml"):
            for case in ET.parse(xml).getroot().iter("testcase"):
                tasks.append({"task": case.get("name"), "seconds": float(case.get("time") or 0)})
        shutil.rmtree(junit_dir, ignore_errors=True)
        res["tasks"] = tasks
        res["archive"] = self.last_archive("ours")["name"]
        res["borg_duration"] = self.archive_duration("ours", res["archive"])
        return res

    def _timed(self, fn):
        cpu_before, t0 = self.cpu.sample(), time.monotonic()
        fn()
        return {"seconds": time.monotonic() - t0, "cpu": self.cpu.delta(cpu_before, self.cpu.sample())}

    def ansible_floor(self, tasks="\n    - ansible.builtin.ping:\n"):
        """ansible-playbook running one ping task on the client: what any playbook run costs
        before the backup role does anything. Returns {seconds, cpu}."""
        play = self.root / "floor.yml"
        play.write_text("- hosts: clients\n  gather_facts: false\n  tasks:" + tasks)

        def ping():
            result = run_playbook(str(play), self.inventory, control_dir=self.control_dir(), timeout=300)
            if result.rc != 0:
                raise RuntimeError(f"ping playbook failed:\n{result}")
        return self._timed(ping)

    def ansible_start(self):
        """ansible-playbook running a play without tasks on the same inventory: its own start
        (Python imports, the routing metadata, inventory, play setup), no connection. {seconds, cpu}"""
        return self.ansible_floor(tasks=" []\n")

    def ssh_exec(self):
        """One cold `ssh root@client true`, as the playbook reaches the client: key exchange, login
        and the login shell's start-up (on a host whose root ~/.bashrc does work for
        non-interactive shells, every SSH command pays it). {seconds, cpu}"""
        return self._timed(lambda: subprocess.run(self.controller.ssh_argv(self.client.sshd, "true"), check=True,
                                                  capture_output=True, stdin=subprocess.DEVNULL))

    def borg_version(self):
        """One local `borg --version`: borg's own start, which every borg process pays (raw too). {seconds, cpu}"""
        return self._timed(lambda: subprocess.run(["borg", "--version"], check=True, capture_output=True,
                                                  stdin=subprocess.DEVNULL))
