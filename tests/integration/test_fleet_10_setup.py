"""setup.yml: borg user, pools, restricted keys and initialised repositories; idempotent."""
import re
import subprocess

from tests.lib.borgrepo import BorgFailed

ALL_REPOS = [("client1", "etc"), ("client2", "home"), ("client2", "prunetest")]


def test_setup_succeeds_on_every_host(fleet, setup_run):
    assert setup_run.rc == 0, setup_run
    assert set(setup_run.recap) == {"server1", "client1", "client2"}, setup_run
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in setup_run.recap.values()), setup_run


def test_repositories_initialised_with_repokey_blake2(fleet, setup_run):
    for client, backup in ALL_REPOS:
        repo = fleet.repo(client, backup)
        info = repo.info()  # needs the client's passphrase: proves it was initialised with it
        assert info["encryption"]["mode"] == "repokey-blake2", (client, backup, info["encryption"])
        # The repository sits where the contract says: <pool>/<client>/<backup>.
        assert (fleet.server.dir / "pool" / client / backup / "config").is_file()


def test_second_setup_changes_nothing(fleet, setup_run):
    again = fleet.play("setup.yml")
    assert again.rc == 0, again
    changed = {h: r["changed"] for h, r in again.recap.items()}
    assert changed == {"server1": 0, "client1": 0, "client2": 0}, \
        f"not idempotent, changed tasks: {again.changed_tasks()}\n{again}"


def test_second_setup_in_check_mode_changes_nothing(fleet, setup_run):
    again = fleet.play("setup.yml", check=True)
    assert again.rc == 0, again
    assert all(r["changed"] == 0 for r in again.recap.values()), again.changed_tasks()


def test_authorized_keys_are_forced_borg_serve_per_client(fleet, setup_run):
    keys = (fleet.server.home / ".ssh" / "authorized_keys").read_text().splitlines()
    keys = [k for k in keys if k.strip() and not k.startswith("#")]
    assert len(keys) == 2, keys
    pool = fleet.server.pools[0]["path"]
    for name, client in fleet.clients.items():
        pub = client.ssh_key.with_suffix(".pub").read_text().split()[1]
        line = next(k for k in keys if pub in k)
        m = re.match(r'^command="borg serve (?P<args>[^"]*)",restrict (ssh-ed25519) ', line)
        assert m, line
        assert f"--restrict-to-path {pool}/{name}" in m.group("args"), line


def test_client_key_cannot_reach_another_clients_repository(fleet, setup_run):
    c1 = fleet.clients["client1"]
    # client2's repository, client2's passphrase, but client1's key: the forced command refuses.
    intruder = fleet.repo("client2", "home", ssh_key=c1.ssh_key)
    try:
        intruder.run("list", intruder.url)
    except BorgFailed as e:
        assert re.search(r"not allowed|PathNotAllowed", str(e), re.I), str(e)
    else:
        raise AssertionError("client1's key listed client2's repository")
    # And the legitimate key still works, so the refusal was about the path, not the setup.
    fleet.repo("client2", "home").info()


def test_client_key_runs_nothing_but_borg_serve(fleet, setup_run):
    c1, s = fleet.clients["client1"], fleet.server
    # In a world-writable dir, so the borg user *could* create the marker if the command ran.
    marker = fleet.drop / "forced-command-bypassed"
    argv = ["ssh", "-i", str(c1.ssh_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={fleet.controller.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-p", str(s.sshd.port), f"{s.user}@{s.sshd.address}", "touch", str(marker)]
    log_before = len(s.sshd.log_text())
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert not marker.exists(), proc.stderr
    # The login itself worked (sshd accepted this very key for the borg user) and what ran was
    # borg serve: it parsed the requested command as borg arguments and refused it with its own
    # usage error (rc 2; ssh's own failures are rc 255).
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(c1.ssh_key.with_suffix(".pub"))],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    log = s.sshd.log_text()[log_before:]
    assert re.search(rf"Accepted publickey for {s.user} from .* {re.escape(fingerprint)}", log), log
    assert proc.returncode == 2 and proc.stderr.startswith("usage: borg"), (proc.returncode, proc.stderr)
