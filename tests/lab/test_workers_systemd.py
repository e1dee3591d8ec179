"""The workers page where systemd runs (tests/ui covers the path without it): in the lab VM, the
service installed by ui/systemd/install.sh (worker units, sudoers), two borgfleet-worker@N units
started by systemd, and the page's own code - run as the service account, through the sudo rules
install.sh wrote - listing, stopping, starting and restarting them and reading their journal.
What it reports is compared with what systemd itself says (MainPID, is-active, the journal)."""
import base64
import importlib.metadata
import io
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
ROOT = "/opt/borgfleet"  # the checkout install.sh runs from, in the VM
SITE = ROOT + "/.venv/lib/python3.11/site-packages"
USER = "borgfleet"
SCRIPT = ROOT + "/vm_service.py"
# The modules the service's web app and worker import; their packages are copied into the VM's venv.
IMPORTS = ["borgfleet_ui", "borgfleet_ui.cli", "borgfleet_ui.jobs", "borgfleet_ui.workers", "borgfleet_ui.api",
           "borgfleet_ui.views", "rq.worker", "rq.scheduler", "rq.command"]


def service_packages():
    """Top-level packages (and their dist-info) of this venv that the service imports."""
    site = Path(sysconfig.get_paths()["purelib"])
    code = ("import json, sys\nfor m in %r: __import__(m)\n"
            "print(json.dumps(sorted({getattr(m, '__file__', None) or '' for m in list(sys.modules.values())})))"
            % IMPORTS)
    files = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO / "ui", env=dict(
        os.environ, PYTHONPATH=str(REPO / "ui")), capture_output=True, text=True, check=True).stdout)
    tops = {Path(f).relative_to(site).parts[0] for f in files if f.startswith(str(site) + os.sep)}
    dists = {d.lower().replace("-", "_") for top in tops
             for d in importlib.metadata.packages_distributions().get(top.split(".")[0], [])}
    infos = {p.name for p in site.glob("*.dist-info") if p.name.split("-")[0].lower() in dists}
    assert {"flask", "rq", "redis", "pymysql"} <= tops, tops
    return site, sorted(tops | infos)


def tarball():
    """The service's part of this checkout (ui/, and plugins/ whose contract module it loads), the pages'
    toolkit `make setup` installed (ui/node_modules), and the service's packages under site-packages/."""
    site, entries = service_packages()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tracked = subprocess.run(["git", "ls-files", "-z", "ui", "plugins"], cwd=REPO, capture_output=True,
                                 check=True).stdout
        for rel in filter(None, tracked.decode().split("\0")):
            tar.add(REPO / rel, arcname=rel)
        tar.add(REPO / "ui" / "node_modules", arcname="ui/node_modules")
        for entry in entries:
            tar.add(site / entry, arcname="site-packages/" + entry,
                    filter=lambda t: None if "__pycache__" in t.name else t)
    return buf.getvalue()


class Service:
    def __init__(self, vm, token):
        self.vm, self.token = vm, token
        self.host = vm.run(["hostname"]).stdout.strip()

    def name(self, instance):
        return "borgfleet-%s-%d" % (self.host, instance)

    def request(self, method, path):
        """One request to the service's app in the VM, as the service account (token on stdin)."""
        out = self.vm.run(["runuser", "-u", USER, "--", ROOT + "/.venv/bin/python", SCRIPT, method, path],
                          input=self.token, timeout=300).stdout
        return json.loads(out.strip().splitlines()[-1])

    def unit(self, instance):
        return "borgfleet-worker@%d.service" % instance

    def main_pid(self, instance):
        return int(self.vm.run(["systemctl", "show", "-p", "MainPID", "--value", self.unit(instance)]).stdout)

    def active(self, instance):
        return self.vm.run(["systemctl", "is-active", self.unit(instance)], check=False).stdout.strip()

    def listed(self):
        reply = self.request("GET", "/api/workers")
        assert reply["status"] == 200, reply
        return reply["json"]["systemd"], {w["name"]: w for w in reply["json"]["items"]}

    def journal(self, instance):
        return self.vm.run(["journalctl", "-u", self.unit(instance), "-n", "30", "--no-pager"], check=False).stdout

    def wait(self, check, what, timeout=240):
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            assert time.monotonic() < deadline, "%s: not within %d s\n%s\n%s" % (
                what, timeout, self.journal(1)[-3000:], self.journal(2)[-3000:])
            time.sleep(2)


@pytest.fixture(scope="module")
def service(lab_vm):
    """MariaDB and Redis of the VM, the service's settings, then ui/systemd/install.sh with two
    workers and no web unit (the page's code runs through vm_service.py, as the service account)."""
    vm = lab_vm
    vm.run(["systemctl", "start", "mariadb.service", "redis-server.service"], timeout=600)
    db_password = secrets.token_urlsafe(18)
    # The password goes through stdin, never a command line.
    vm.shell("mariadb", input="".join(
        "CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s'; GRANT ALL ON borgfleet.* TO '%s'@'%s';\n"
        % (USER, host, db_password, USER, host) for host in ("localhost", "127.0.0.1")))
    vm.run(["install", "-d", "-m", "0755", ROOT, ROOT + "/.venv"])
    # System site packages: python3-async-timeout of the image (see lab/packages); ours come first.
    vm.run(["python3", "-m", "venv", "--without-pip", "--system-site-packages", ROOT + "/.venv"])
    vm.shell("base64 -d | tar -xz -C %s" % shlex.quote(ROOT), input=base64.b64encode(tarball()).decode(), timeout=600)
    vm.run(["sh", "-c", 'cp -a "$1"/site-packages/. "$2"/ && rm -rf "$1"/site-packages', "-", ROOT, SITE])
    vm.put(SCRIPT, (Path(__file__).parent / "vm_service.py").read_text(), mode="0755")
    vm.run(["install", "-d", "-m", "0750", "/etc/borgfleet"])
    vm.put("/etc/borgfleet/borgfleet.env", "".join("%s=%s\n" % kv for kv in {
        "BORGFLEET_DB_HOST": "127.0.0.1", "BORGFLEET_DB_PORT": "3306", "BORGFLEET_DB_USER": USER,
        "BORGFLEET_DB_PASSWORD": db_password, "BORGFLEET_DB_NAME": "borgfleet",
        "BORGFLEET_REDIS_URL": "redis://127.0.0.1:6379/0", "BORGFLEET_SECRET_KEY": secrets.token_hex(32),
        "BORGFLEET_RUN_DIR": "/var/lib/%s/runs" % USER, "BORGFLEET_BIND": "127.0.0.1:5080"}.items()), mode="0640")
    # As install.sh's own first step on a main host would: the schema and the passphrase key file.
    vm.shell("set -a && . /etc/borgfleet/borgfleet.env && set +a && PYTHONPATH=%s/ui %s/.venv/bin/python -m "
             "borgfleet_ui db upgrade" % (ROOT, ROOT), timeout=600)
    install = vm.run([ROOT + "/ui/systemd/install.sh", "--workers", "2", "--no-web", "--no-scheduler",
                      "--no-redis-acl", "--user", USER], timeout=900, check=False)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    vm.run(["chgrp", USER, "/etc/borgfleet/borgfleet.env"])  # what install.sh does to a file it writes
    token = vm.run(["runuser", "-u", USER, "--", ROOT + "/.venv/bin/python", SCRIPT, "token"],
                   timeout=300).stdout.strip().splitlines()[-1]
    return Service(vm, token)


def test_workers_page_under_systemd(service):
    s = service
    names = {1: s.name(1), 2: s.name(2)}
    assert s.active(1) == s.active(2) == "active"

    # Both units' workers, with the pid systemd gives for each unit.
    def both_idle():
        systemd, listed = s.listed()
        return (systemd, listed) if all(listed.get(n, {}).get("state") == "idle" for n in names.values()) else None
    systemd, listed = s.wait(both_idle, "both workers idle in RQ's registry")
    assert systemd is True
    for i, name in names.items():
        assert listed[name]["pid"] == s.main_pid(i) != 0, (listed[name], s.main_pid(i))
        assert "borgfleet-backup" in listed[name]["queues"], listed[name]

    page = s.request("GET", "/workers")
    assert page["status"] == 200, page
    assert "Controlled through systemd (borgfleet-worker@N.service)." in page["text"]
    for name in names.values():
        assert name in page["text"]
    # Each running worker's row has its stop and restart buttons (systemd's actions; start once stopped).
    buttons = re.findall(r'<button class="[^"]*\bworker-(start|restart|stop)\b', page["text"])
    assert buttons.count("restart") == buttons.count("stop") == 2 and buttons.count("start") == 0, buttons

    # Stop through the API: systemd stops the unit (Restart= does not bring it back), RQ forgets it;
    # the page still lists it, stopped, with its start button.
    reply = s.request("POST", "/api/workers/%s/stop" % names[1])
    assert reply["status"] == 202, reply
    s.wait(lambda: s.active(1) == "inactive", "unit 1 stopped")
    s.wait(lambda: s.listed()[1][names[1]]["state"] == "stopped", "worker 1 listed as stopped")
    time.sleep(10)  # past RestartSec=5: still stopped
    assert s.active(1) == "inactive" and s.listed()[1][names[2]]["state"] == "idle"
    assert s.listed()[1][names[1]]["control"] == "systemd"
    page = s.request("GET", "/workers")
    buttons = re.findall(r'<button class="[^"]*\bworker-(start|restart|stop)\b', page["text"])
    assert buttons.count("start") == 1 and buttons.count("stop") == 1, buttons

    # Start it again through the API, then restart it through the page's own form endpoint.
    reply = s.request("POST", "/api/workers/%s/start" % names[1])
    assert reply["status"] == 202, reply
    s.wait(lambda: s.active(1) == "active", "unit 1 started")
    started = s.wait(lambda: (w := s.listed()[1].get(names[1])) and w["state"] == "idle" and w,
                     "worker 1 back in the registry")
    pid = s.main_pid(1)
    assert started["pid"] == pid
    reply = s.request("POST", "/workers/%s/restart" % names[1])
    assert reply["status"] == 302 and reply["location"].endswith("/workers"), reply
    s.wait(lambda: s.main_pid(1) not in (0, pid), "unit 1 restarted with a new process")
    restarted = s.wait(lambda: (s.listed()[1].get(names[1]) or {}).get("pid") == s.main_pid(1) or None,
                       "worker 1 registered with the new process")
    assert restarted is True and s.main_pid(1) != pid

    # The log is the unit's journal, read through sudo as the service account.
    logs = s.request("GET", "/api/workers/%s/logs" % names[1])
    assert logs["status"] == 200, logs
    assert any("BorgFleet worker 1" in line for line in logs["json"]["lines"]), logs["json"]["lines"][-10:]
    # Filtered by lines and by time (journalctl's own UTC timestamps).
    logs = s.request("GET", "/api/workers/%s/logs?lines=2&since=1h" % names[1])
    assert logs["status"] == 200 and 1 <= len(logs["json"]["lines"]) <= 2, logs

    # Only this host's workers, and only through the allowed commands.
    assert s.request("POST", "/api/workers/borgfleet-otherhost-1/restart")["status"] == 409
    assert s.active(2) == "active"
