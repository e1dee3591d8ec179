"""setup.yml when some clients cannot be set up (issue 10), on a fleet of its own.

A backup server and two clients (alpha, bravo) are set up once. Then one setup run of a
variant inventory that adds, in this order:
  clone - a new client whose key file is a copy of alpha's (a VM cloned from alpha's image),
          listed before alpha, so that one line per client would hand alpha's key the
          clone's forced command (sshd applies the first matching line);
  fresh - a new, good client;
  ghost - a new client that is unreachable (nothing listens on its port);
and gives bravo (set up before) an invalid backup. Then backup.yml for alpha and fresh, and
last the operator's fix for the clone: a key of its own and one more setup run.
"""
import re
import secrets
import shutil
import subprocess
import tempfile
import types
from pathlib import Path

import pytest

from tests.lib import fleet as fl
from tests.lib.borgrepo import BorgFailed
from tests.lib.playbook import run_playbook
from tests.lib.sshd import free_port
from tests.lib.trees import make_tree


class KeysFleet:
    def __init__(self, root, controller, server, clients, control_dir):
        self.root, self.controller, self.server = root, controller, server
        self.clients, self.control_dir = clients, control_dir

    def inventory(self, label, clients):
        inv = fl.inventory(self.controller, [self.server], clients)
        return fl.write_inventory(self.root / f"inventory-{label}.yml", inv)

    def play(self, name, inventory, **kwargs):
        return run_playbook(name, inventory, control_dir=self.control_dir, **kwargs)

    def repo(self, client, backup="files", **kwargs):
        return self.clients[client].repo(backup, self.controller, **kwargs)

    def authorized_keys(self):
        """The key lines of the borg user's authorized_keys (comments left out)."""
        text = (self.server.home / ".ssh" / "authorized_keys").read_text()
        return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]

    def line_of(self, client):
        """The authorized_keys lines holding the key a client's key file has now."""
        return [line for line in self.authorized_keys() if _key_id(self.clients[client]) in line]


def _new_client(name, root, server, sshd):
    d = root / name
    d.mkdir(mode=0o700)
    make_tree(d / "data", seed=name)
    c = fl.Client(name=name, sshd=sshd, dir=d, server=server)
    c.backups = [{"name": "files", "paths": [str(d / "data")], "passphrase": fl.passphrase()}]
    return c


def _key_id(client):
    """Type and blob of a client's key: what sshd matches (the comment does not count)."""
    return " ".join(client.ssh_key.with_suffix(".pub").read_text().split()[:2])


def _fingerprint(client):
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(client.ssh_key.with_suffix(".pub"))],
                         capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL).stdout
    return out.split()[1]


def _host_failures(result, host):
    """The failure blocks of one host ('fatal: [host]: ...' and the lines under it), as one
    line: the YAML callback wraps long messages and doubles quotes."""
    blocks = re.split(r"\n(?=(?:fatal|failed): \[)", result.failures())
    text = " ".join(b for b in blocks if re.match(r"(?:fatal|failed): \[%s\]" % re.escape(host), b))
    return re.sub(r"\s+", " ", text).replace("''", "'")


def _restricted_to(line):
    return re.findall(r"--restrict-to-path (\S+?)(?=[ \"])", line)


@pytest.fixture(scope="module")
def kf(test_root, controller, sshd_factory, ansible_control_dir):
    root = Path(tempfile.mkdtemp(prefix="setupkeys-", dir=test_root))
    root.chmod(0o755)
    server_dir = root / "srvk"
    server_dir.mkdir(mode=0o755)
    server = fl.Server(name="srvk", sshd=sshd_factory("srvk"), dir=server_dir,
                       user=f"bfk{secrets.token_hex(3)}",
                       pools=[{"name": "main", "path": str(server_dir / "pool")}])
    clients = {n: _new_client(n, root, server, sshd_factory(n)) for n in ("alpha", "bravo")}
    kf = KeysFleet(root, controller, server, clients, ansible_control_dir)
    try:
        first = kf.play("setup.yml", kf.inventory("first", list(clients.values())))
        assert first.rc == 0, first
        # What the clone will copy, and bravo's line that must survive its broken backup.
        kf.alpha_key_id = _key_id(clients["alpha"])
        kf.bravo_line = kf.line_of("bravo")
        assert len(kf.bravo_line) == 1, kf.authorized_keys()
        # The clone, a new good client, and one that cannot be reached.
        clone = _new_client("clone", root, server, sshd_factory("clone"))
        shutil.copy2(clients["alpha"].ssh_key, clone.ssh_key)  # the cloned image: alpha's key pair
        shutil.copy2(clients["alpha"].ssh_key.with_suffix(".pub"), clone.ssh_key.with_suffix(".pub"))
        fresh = _new_client("fresh", root, server, sshd_factory("fresh"))
        closed = types.SimpleNamespace(address=fresh.sshd.address, port=free_port(fresh.sshd.address))
        ghost = _new_client("ghost", root, server, closed)
        clients.update(clone=clone, fresh=fresh, ghost=ghost)
        yield kf
    finally:
        server.remove_user()


@pytest.fixture(scope="module")
def broken_run(kf):
    c = kf.clients
    bravo = fl.Client(name="bravo", sshd=c["bravo"].sshd, dir=c["bravo"].dir, server=kf.server,
                      backups=[dict(c["bravo"].backups[0], exlude=["*.tmp"])])  # a typo: refused
    return kf.play("setup.yml", kf.inventory("broken", [c["clone"], c["alpha"], bravo, c["fresh"], c["ghost"]]))


@pytest.fixture(scope="module")
def backup_after(kf, broken_run):
    c = kf.clients
    return kf.play("backup.yml", kf.inventory("backup", [c["alpha"], c["bravo"], c["fresh"]]), limit="alpha,fresh")


def test_broken_clients_do_not_block_a_new_client(kf, broken_run, backup_after):
    run = broken_run
    assert run.rc != 0, run  # something did fail, and the rc says so
    assert run.recap["fresh"]["failed"] == 0 and run.recap["fresh"]["unreachable"] == 0, run
    assert run.recap["alpha"]["failed"] == 0, run
    # Each broken client's own error, under its own name.
    assert run.recap["ghost"]["unreachable"] == 1, run
    assert "UNREACHABLE" in _host_failures(run, "ghost"), run.failures()
    assert "exlude" in _host_failures(run, "bravo"), run.failures()
    # The server set up everyone it could, then failed naming who it could not authorise.
    server_failure = _host_failures(run, "srvk")
    assert "no public key for client 'ghost'" in server_failure and "'bravo'" in server_failure, run.failures()
    # The new client got its own line, restricted to its own directory.
    (fresh_line,) = kf.line_of("fresh")
    assert _restricted_to(fresh_line) == [f"{kf.server.pools[0]['path']}/fresh"], fresh_line
    # bravo cannot be set up now, yet keeps the line it had: its backups go on.
    assert kf.line_of("bravo") == kf.bravo_line, kf.authorized_keys()
    kf.repo("bravo").info()
    assert not any("ghost" in line for line in kf.authorized_keys()), kf.authorized_keys()
    # fresh's repository was initialised in the same run, and it backs up.
    assert backup_after.rc == 0, backup_after
    for client in ("fresh", "alpha"):
        names = kf.repo(client).archive_names()
        assert len(names) == 1 and names[0].startswith("files-"), (client, names)


def test_cloned_key_is_published_once_and_named(kf, broken_run, backup_after):
    run, clone = broken_run, kf.clients["clone"]
    assert _key_id(clone) == kf.alpha_key_id  # the clone really presents alpha's key
    # The clone fails, by name, saying whose key it holds and how to fix it.
    failure = _host_failures(run, "clone")
    assert run.recap["clone"]["failed"] == 1, run
    assert "client 'clone' presents the same SSH public key" in failure, run.failures()
    assert "as client 'alpha'" in failure and _fingerprint(clone) in failure, failure
    assert "delete borgfleet_ssh_key" in failure, failure
    # The key is on one line only, alpha's, restricted to alpha's directory.
    (line,) = [k for k in kf.authorized_keys() if kf.alpha_key_id in k]
    assert _restricted_to(line) == [f"{kf.server.pools[0]['path']}/alpha"], line
    assert not (Path(kf.server.pools[0]["path"]) / "clone").exists()
    # alpha's backups work (a clone line listed first would have taken alpha's key).
    assert backup_after.rc == 0, backup_after
    assert kf.repo("alpha").archive_names(), "alpha has no archive"


def test_clone_with_a_key_of_its_own_is_kept_out_of_the_original(kf, broken_run, backup_after):
    """The fix the message names: delete the clone's key file and run setup again."""
    c = kf.clients
    for path in (c["clone"].ssh_key, c["clone"].ssh_key.with_suffix(".pub")):
        path.unlink()
    inv = kf.inventory("fixed", [c["clone"], c["alpha"], c["bravo"], c["fresh"]])
    again = kf.play("setup.yml", inv, limit="srvk,clone")
    assert again.rc == 0, again
    assert _key_id(c["clone"]) != kf.alpha_key_id
    assert len(kf.line_of("clone")) == 1 and len(kf.line_of("alpha")) == 1, kf.authorized_keys()
    # The clone, with its own key, cannot open alpha's repository: the forced command refuses.
    intruder = kf.repo("alpha", ssh_key=c["clone"].ssh_key)
    with pytest.raises(BorgFailed, match=r"(?i)not allowed|PathNotAllowed"):
        intruder.run("list", intruder.url)
    kf.repo("clone").info()  # its own repository works
    assert kf.repo("alpha").archive_names()  # and alpha's still lists with alpha's key
