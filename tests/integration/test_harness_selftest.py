"""The harness itself: a loopback sshd host answers the controller, and only the controller."""
import socket
import subprocess

import pytest

from tests.lib.argwatch import ArgvWatcher
from tests.lib.sshd import keygen


@pytest.fixture(scope="module")
def host(sshd_factory):
    return sshd_factory("selftest")


def test_controller_key_reaches_root_and_runs_hostname(host, controller):
    proc = subprocess.run(controller.ssh_argv(host, "hostname"), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == socket.gethostname()
    assert host.address != "127.0.0.1" and host.address.startswith("127.0.0.")


def test_unknown_key_is_refused(host, controller, tmp_path):
    stranger = tmp_path / "stranger"
    keygen(stranger)
    argv = controller.ssh_argv(host, "true")
    argv[argv.index(str(controller.key))] = str(stranger)
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 255
    assert "Permission denied" in proc.stderr


def test_host_key_is_pinned_not_ignored(host, controller, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.touch()
    argv = controller.ssh_argv(host, "true")
    argv[argv.index(f"UserKnownHostsFile={controller.known_hosts}")] = f"UserKnownHostsFile={empty}"
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr


def test_stop_and_restart_on_same_port(sshd_factory, controller):
    host = sshd_factory("selftest-restart")
    port = host.port
    host.stop()
    assert not host.running
    with pytest.raises(OSError):
        socket.create_connection((host.address, port), timeout=2).close()
    host.start()
    assert host.port == port
    proc = subprocess.run(controller.ssh_argv(host, "true"), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_argv_watcher_sees_a_secret_on_a_command_line():
    watcher = ArgvWatcher(["needle-4f1c"])
    watcher.start()
    try:
        subprocess.run(["python3", "-c", "import time; time.sleep(0.5)", "needle-4f1c"], check=True)
    finally:
        watcher.stop.set()
        watcher.join()
    assert watcher.seen and b"needle-4f1c" in watcher.seen[0]
