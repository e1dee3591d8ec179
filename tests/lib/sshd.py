"""Real sshd instances on loopback addresses, one per managed host or backup server.

Every instance has its own throwaway host key, config, log and root authorized keys file
(``<dir>/%u_keys``); other users fall back to their real ``~/.ssh/authorized_keys``, so the
borg user's file written by the borg_server role is what sshd honours. StrictModes stays on,
as on a production host: the instance directory therefore lives under a root-owned 0755 tree
(see conftest), never under /tmp.
"""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port(address):
    """A TCP port that is free on `address` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def keygen(path, comment="borgfleet-test"):
    """A passphrase-less ed25519 key pair at `path` (+ .pub); returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return Path(f"{path}.pub").read_text().strip()


def _children(pid):
    """Direct children of `pid` (per-connection sshd processes), read from /proc."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Field 4 is the ppid; the command name (field 2) may contain spaces, so split after ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry))
    return kids


class Sshd:
    """One sshd listening on address:port, started with `sshd -D -f <cfg>`."""

    def __init__(self, name, address, workdir, controller_pubkey):
        self.name = name
        self.address = address
        self.dir = Path(workdir)
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.port = free_port(address)
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.host_pubkey = keygen(self.host_key, comment=f"host-{name}")
        self.log = self.dir / "sshd.log"
        self.config = self.dir / "sshd_config"
        root_keys = self.dir / "root_keys"
        root_keys.write_text(controller_pubkey + "\n")
        root_keys.chmod(0o600)
        self.config.write_text(f"""\
ListenAddress {address}:{self.port}
HostKey {self.host_key}
PidFile {self.dir}/sshd.pid
AuthorizedKeysFile {self.dir}/%u_keys .ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# As on Debian: PAM account handling, so a system user with a locked password can log in by key.
UsePAM yes
StrictModes yes
UseDNS no
PrintMotd no
MaxStartups 50:30:100
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
        self.proc = None

    @property
    def known_hosts_line(self):
        return f"[{self.address}]:{self.port} {self.host_pubkey.rsplit(' ', 1)[0]}"

    def start(self, timeout=15):
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        subprocess.run([SSHD, "-t", "-f", str(self.config)], check=True, capture_output=True, text=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd {self.name} exited rc={self.proc.returncode}: {self.log_text()}")
            if self._banner():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd {self.name} did not answer on {self.address}:{self.port}: {self.log_text()}")

    def _banner(self):
        try:
            with socket.create_connection((self.address, self.port), timeout=1) as s:
                return s.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    def stop(self):
        """Stop the listener and every connection it serves; the port stays ours to restart on."""
        if self.proc is None:
            return
        kids = _children(self.proc.pid)
        for pid in [self.proc.pid] + kids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 10
        for pid in kids:
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""
