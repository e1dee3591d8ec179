"""Read results back with borg itself, independently of the collection's code.

Runs borg directly (argv, passphrase only in the environment) over the same SSH path a client
uses, with the client's key but the harness's own pinned known_hosts.
"""
import json
import os
import subprocess
from pathlib import Path


class BorgFailed(AssertionError):
    pass


class BorgRepo:
    def __init__(self, url, passphrase, ssh_key=None, known_hosts=None, base_dir=None):
        self.url = url
        self.passphrase = passphrase
        self.ssh_key = ssh_key
        self.known_hosts = known_hosts
        self.base_dir = base_dir

    def env(self, passphrase=None):
        env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8",
                   BORG_PASSPHRASE=self.passphrase if passphrase is None else passphrase,
                   # Never answer borg's safety prompts with yes.
                   BORG_RELOCATED_REPO_ACCESS_IS_OK="no",
                   BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="no",
                   BORG_CHECK_I_KNOW_WHAT_I_AM_DOING="NO",
                   BORG_DELETE_I_KNOW_WHAT_I_AM_DOING="NO")
        env.pop("BORG_PASSCOMMAND", None)
        if self.base_dir:
            env["BORG_BASE_DIR"] = str(self.base_dir)
        if self.ssh_key:
            # borg splits BORG_RSH itself (shlex); harness paths contain no spaces.
            env["BORG_RSH"] = " ".join([
                "ssh", "-i", str(self.ssh_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"])
        return env

    def run(self, *args, check=True, passphrase=None, cwd=None, timeout=300):
        argv = ["borg", *args]
        proc = subprocess.run(argv, env=self.env(passphrase), cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise BorgFailed(f"{argv} rc={proc.returncode}\n{proc.stderr}")
        return proc

    def archive(self, name):
        return f"{self.url}::{name}"

    # --- reading -------------------------------------------------------------------------
    def archives(self):
        """[{name, id, start, time, ...}] oldest first."""
        return json.loads(self.run("list", "--json", self.url).stdout)["archives"]

    def archive_names(self):
        return [a["name"] for a in self.archives()]

    def info(self):
        return json.loads(self.run("info", "--json", self.url).stdout)

    def paths(self, archive):
        """Every path stored in `archive` (as borg stores them: no leading slash)."""
        out = self.run("list", "--json-lines", self.archive(archive)).stdout
        return {json.loads(line)["path"] for line in out.splitlines() if line.strip()}

    def extract(self, archive, dest, *paths):
        Path(dest).mkdir(parents=True, exist_ok=True)
        self.run("extract", self.archive(archive), *paths, cwd=dest)
        return Path(dest)

    # --- writing (for controlled fixtures such as prune timestamps) -----------------------
    def create(self, archive, *paths, timestamp=None):
        args = ["create"]
        if timestamp:
            args += ["--timestamp", timestamp]
        return self.run(*args, self.archive(archive), *[str(p) for p in paths])

    def delete_matching(self, glob):
        return self.run("delete", "--glob-archives", glob, self.url)
