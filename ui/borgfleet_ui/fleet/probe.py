"""Test connection: can the service reach a server over SSH the way its playbooks will, and if not,
exactly why (port closed, host unreachable, host key changed or unknown, key refused, no sudo);
for a backup server, whether each pool path exists or can be created, and its free space.

This is the service's own check, not a playbook run: the operator waits for it on the add-server
wizard, so it must answer in a second or two, and ansible-playbook alone takes about a second to
start here (docs/service.md, benchmark) before its first connection, then hides ssh's reason behind
"UNREACHABLE". It only reads: a TCP connect, then ssh with BatchMode (never a prompt) and the same
key, known_hosts and options Ansible uses for the server (its extra vars, else the service account's
ssh defaults), running fixed commands whose only variable words are paths the contract accepted.
"""
import os
import re
import shlex
import socket
import subprocess
import time

from flask_babel import gettext as _

from ..contract import contract
from .common import Forbidden, Invalid, by_contract, int_between, matching, said

CONNECT_TIMEOUT = 5          # seconds for the TCP connect and ssh's ConnectTimeout
COMMAND_TIMEOUT = 15         # seconds for a whole ssh call (key exchange, auth and the command)
PROBE_BUDGET = 30            # seconds for the whole probe: a web worker waits on it
# The keys ssh itself tries when none is named (ssh_config(5) IdentityFile), in its order.
DEFAULT_IDENTITIES = ("id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk")

VERDICTS = {
    "ok": "Connection OK",
    "unknown_host": "Host name not found",
    "port_closed": "Port closed",
    "unreachable": "Host unreachable",
    "timeout": "No answer (timeout)",
    "not_ssh": "Not an SSH server",
    "host_key_changed": "Host key changed",
    "host_key_unknown": "Host key not known yet",
    "auth_refused": "Authentication refused",
    "sudo_missing": "Sudo missing",
    "root_needed": "Root needed",
    "ssh_failed": "SSH failed",
}


def home_ssh(name):
    return os.path.join(os.path.expanduser("~"), ".ssh", name)


class Target:
    """Where and how to connect: the server's fields and the ssh options its extra vars give Ansible."""

    def __init__(self, address, port, user, host_vars):
        self.address, self.port, self.user = address, port, user
        self.deadline = time.monotonic() + PROBE_BUDGET
        self.key = host_vars.get("ansible_ssh_private_key_file")
        # Validated by the contract: '-o Name=value' pairs of known options with safe values.
        self.options = (host_vars.get("ansible_ssh_common_args") or "").split()
        known = [o.split("=", 1)[1] for o in self.options if o.lower().startswith("userknownhostsfile=")]
        self.known_hosts = known[0] if known else home_ssh("known_hosts")

    def ssh_argv(self, *remote):
        """ssh's argv for one remote command. ssh joins the words after the destination with spaces
        and the remote user's shell splits them again, so each word is quoted for that shell (the
        paths among them are plain already: the contract accepts only letters, digits, '/._-')."""
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
                # Never learn or replace a host key here: a key is pinned by a person, not by a probe.
                "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR"]
        for opt in self.options:      # the server's own known_hosts, IdentitiesOnly ... as Ansible passes them
            if not opt.lower().startswith(("connecttimeout=", "stricthostkeychecking=")) and opt != "-o":
                argv += ["-o", opt]
        if self.key:
            argv += ["-o", f"IdentityFile={self.key}"]
        host = self.address[1:-1] if self.address.startswith("[") else self.address
        argv += ["-p", str(self.port), "-l", self.user, "--", host]
        return argv + [shlex.quote(w) for w in remote]

    def run(self, *remote):
        timeout = max(1.0, min(COMMAND_TIMEOUT, self.deadline - time.monotonic()))
        try:
            p = subprocess.run(self.ssh_argv(*remote), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout, env=dict(os.environ, LC_ALL="C"))
        except subprocess.TimeoutExpired:
            return 255, "", f"ssh did not finish within {timeout:.0f} s (timed out)"
        return p.returncode, p.stdout, p.stderr

    def public_key(self):
        """(path, text) of the public key this connection offers, or (None, None) when it has none."""
        if self.key:
            candidates = [self.key]
        else:
            candidates = [home_ssh(n) for n in DEFAULT_IDENTITIES]
        for private in candidates:
            pub = private + ".pub"
            try:
                with open(pub) as f:
                    return pub, f.read().strip()
            except OSError:
                pass
            if self.key and os.path.exists(private):
                p = subprocess.run(["ssh-keygen", "-y", "-f", private], stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=10)
                if p.returncode == 0:
                    return None, p.stdout.strip()
        return (candidates[0] + ".pub" if self.key else None), None


def classify_ssh_error(stderr):
    """ssh's stderr (C locale) -> (verdict, details). A pure function, tested on ssh's own words."""
    text = stderr or ""
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or re.search(r"Host key for \S+ has changed", text):
        fp = re.search(r"key sent by the remote host is\s+(\S+?)\.?\s*$", text, re.M)
        offending = re.search(r"Offending \S+ key in (\S+?):(\d+)", text)
        return "host_key_changed", {"fingerprint": fp.group(1) if fp else None,
                                    "offending": f"{offending.group(1)}:{offending.group(2)}" if offending else None}
    if re.search(r"No \S+ host key is known for", text) or "Host key verification failed" in text:
        return "host_key_unknown", {}
    if "Permission denied (" in text or "Too many authentication failures" in text:
        methods = re.search(r"Permission denied \(([^)]*)\)", text)
        return "auth_refused", {"methods": methods.group(1) if methods else None}
    if "Connection refused" in text:
        return "port_closed", {}
    if "Could not resolve hostname" in text:
        return "unknown_host", {}
    if "No route to host" in text or "Network is unreachable" in text:
        return "unreachable", {}
    if "timed out" in text:
        return "timeout", {}
    return "ssh_failed", {}


def check_tcp(address, port):
    """(verdict, detail) of a plain TCP connect and the first bytes: ('ok', banner) when an SSH
    server answers. Cheaper and clearer than ssh's own message for the network-level failures."""
    host = address[1:-1] if address.startswith("[") else address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return "unknown_host", str(e.strerror or e)
    last = ("unreachable", "")
    for family, type_, proto, _canon, sockaddr in infos:
        s = socket.socket(family, type_, proto)
        s.settimeout(CONNECT_TIMEOUT)
        try:
            s.connect(sockaddr)
            banner = s.recv(256).split(b"\n", 1)[0].strip().decode("ascii", "replace")
        except ConnectionRefusedError:
            last = ("port_closed", "connection refused")
            continue
        except socket.timeout:
            last = ("timeout", f"no answer within {CONNECT_TIMEOUT} s")
            continue
        except OSError as e:
            last = ("unreachable", e.strerror or str(e))
            continue
        finally:
            s.close()
        return ("ok", banner) if banner.startswith("SSH-") else ("not_ssh", banner[:80])
    return last


def _message(verdict, t, detail):
    where = f"{t.address} port {t.port}"
    return {
        "unknown_host": f"{t.address} is not a known host name ({detail}): check the address",
        "port_closed": f"port {t.port} on {t.address} is closed (connection refused): no SSH server listens"
                       " there; check the port, or that sshd runs",
        "unreachable": f"{t.address} cannot be reached ({detail}): check the address, the network and firewalls",
        "timeout": f"{where} does not answer ({detail}): a firewall drops the connection, or the host is down",
        "not_ssh": f"{where} answers, but not as an SSH server ({detail!r}): check the port",
        "host_key_changed": f"the host key of {where} changed: it is not the key pinned in {t.known_hosts}."
                            " Either the host was reinstalled (remove the old line and pin the new key) or"
                            " someone is in between: compare the fingerprint with the host's own"
                            " (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the host) before trusting it",
        "host_key_unknown": f"the host key of {where} is not pinned in {t.known_hosts}: the service never"
                            " connects to an unknown key. Compare the fingerprint below with the host's own, then"
                            " trust it (or add its line to that file)",
        "auth_refused": f"{where} refused the service's key for user {t.user}: add the public key below to"
                        f" ~{t.user}/.ssh/authorized_keys on {t.address}",
        "sudo_missing": f"user {t.user} has no passwordless sudo on {t.address} ({detail}), and the setup"
                        " needs root: connect as root",
        "root_needed": f"user {t.user} has passwordless sudo on {t.address}, but the service's playbooks run as"
                      " the SSH user without become, and the setup needs root: connect as root",
        "ssh_failed": f"ssh to {t.user}@{t.address}:{t.port} failed: {detail}",
    }[verdict]


def _host_keys(t):
    """Fingerprints and known_hosts lines of the keys the host offers (ssh-keyscan), for a person to
    compare with the host's own before pinning; [] when the scan fails."""
    host = t.address[1:-1] if t.address.startswith("[") else t.address
    try:
        scan = subprocess.run(["ssh-keyscan", "-T", str(CONNECT_TIMEOUT), "-p", str(t.port), "--", host],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if not scan.stdout.strip():
            return []
        fps = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=scan.stdout, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = [line for line in scan.stdout.splitlines() if line and not line.startswith("#")]
    out = []
    for line, fp in zip(lines, fps.stdout.splitlines()):
        parts = fp.split()
        out.append({"type": parts[-1].strip("()") if parts else "", "fingerprint": parts[1] if len(parts) > 1 else "",
                    "known_hosts_line": line})
    return out


def check_target(data, admin=False, saved_vars=None):
    """The connection fields of a server to add (address, port, ssh_user, vars) -> Target.
    Extra vars name key files and known_hosts on the service host: admins only, as when saving.
    saved_vars: an existing server's own vars (set by an admin), used instead of typed ones."""
    address = data.get("address") or ""
    problem = contract.host_problem(address)
    if problem:
        raise Invalid(_("address %(address)r %(problem)s", address=address, problem=said(problem)))
    port = int_between(data.get("port", 22), "port", 1, 65535)
    user = matching(contract.SERVER_USER_RE, data.get("ssh_user") or "root", "ssh_user")
    role = data.get("role") or "client"
    if role not in ("client", "backup_server"):
        raise Invalid(_("role must be client or backup_server"))
    host_vars = data.get("vars") or {}
    if saved_vars is not None:
        host_vars = saved_vars
    elif host_vars and not admin:
        raise Forbidden(_("only an admin can set a server's extra vars"))
    host_vars = by_contract(contract.check_host_vars, host_vars, role, "ssh")
    return Target(address, port, user, host_vars), role, host_vars


def test_connection(data, admin=False, saved_vars=None):
    """Run the probe for one server to add (or as edited: saved_vars, see check_target); returns a
    JSON-able verdict: {ok, verdict, title, message, seconds, public_key..., host_keys, uid, sudo, pools}."""
    started = time.monotonic()
    t, role, host_vars = check_target(data, admin, saved_vars)
    pools = None
    if role == "backup_server" and data.get("pools"):
        # The contract's pool rules first (names, plain absolute paths, no nesting): only accepted
        # paths reach the host, as separate words.
        hv = dict(host_vars, ansible_host=t.address, ansible_port=t.port, borgfleet_storage_pools=data["pools"])
        pools = by_contract(contract.server_settings, data.get("name") or "new-server", hv)["pools"]
    out = {"ok": False, "address": t.address, "port": t.port, "user": t.user, "known_hosts": t.known_hosts,
           "key_file": t.key, "uid": None, "sudo": None, "pools": []}
    verdict, detail = check_tcp(t.address, t.port)
    extra = {}
    if verdict == "ok":
        out["banner"] = detail
        rc, stdout, stderr = t.run("id", "-u")
        if rc == 0 and stdout.strip().isdigit():
            out["uid"] = int(stdout.strip())
        elif rc == 255 or rc is None:
            verdict, extra = classify_ssh_error(stderr)
            detail = _last_line(stderr)
        else:
            verdict, detail = "ssh_failed", f"'id -u' answered rc {rc}: {_last_line(stderr)}"
    if verdict == "ok" and out["uid"] != 0:
        rc, _out, stderr = t.run("sudo", "-n", "true")
        out["sudo"] = rc == 0
        # The playbooks run as the SSH user (the service sets no become, and the contract refuses
        # ansible_become in a server's vars): with or without sudo, setup needs root.
        verdict, detail = ("root_needed", "") if rc == 0 else \
            ("sudo_missing", _last_line(stderr) or f"sudo -n true: rc {rc}")
    out.update(extra)
    if verdict == "auth_refused":
        out["public_key_file"], out["public_key"] = t.public_key()
        out["authorized_keys"] = f"~{t.user}/.ssh/authorized_keys"
        # For a person to paste on the host: the key line quoted for the shell (its comment is free text).
        out["install_command"] = (f"mkdir -p -m 700 ~/.ssh && echo {shlex.quote(out['public_key'])}"
                                  " >> ~/.ssh/authorized_keys") if out["public_key"] else None
        out["copy_id"] = " ".join(shlex.quote(w) for w in
                                  ["ssh-copy-id", "-i", out["public_key_file"] or home_ssh("id_ed25519.pub"),
                                   "-p", str(t.port), f"{t.user}@{t.address}"])
    if verdict in ("host_key_unknown", "host_key_changed"):
        out["host_keys"] = _host_keys(t)
    if verdict == "ok":
        out["ok"] = True
        out["message"] = f"connected to {t.address} port {t.port} as root"
        if pools:
            out["pools"] = check_pools(t, pools)
            bad = [p for p in out["pools"] if not p["usable"]]
            if bad:
                out["ok"] = False
                out["message"] += "; " + "; ".join(f"pool {p['name']}: {p['message']}" for p in bad)
    else:
        out["message"] = _message(verdict, t, detail)
    out["verdict"], out["title"] = verdict, VERDICTS[verdict]
    out["seconds"] = round(time.monotonic() - started, 3)
    return out


def _last_line(text):
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1] if lines else ""


def _ancestors(path):
    out = [path]
    while path != "/":
        path = os.path.dirname(path)
        out.append(path)
    return out


def parse_stat(stdout):
    """`stat -L -c '%F|%m|%n'` lines -> {path: {type, mount}} (paths hold no '|': the contract's rule)."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            out[parts[2]] = {"type": parts[0], "mount": parts[1]}
    return out


def parse_statfs(stdout):
    """`stat -f -c '%S|%b|%a|%n'` lines -> {path: {total_bytes, free_bytes}} (free: what non-root may use)."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 4 and all(p.isdigit() for p in parts[:3]):
            size, blocks, avail = (int(p) for p in parts[:3])
            out[parts[3]] = {"total_bytes": size * blocks, "free_bytes": size * avail}
    return out


def check_pools(t, pools):
    """Each pool path on the host: exists (a directory) or creatable (its nearest existing parent is
    a directory), with the free space of the filesystem it is or will be on. Two ssh calls in all."""
    paths = sorted({a for p in pools for a in _ancestors(p["path"])})
    rc, stdout, stderr = t.run("stat", "-L", "-c", "%F|%m|%n", "--", *paths)
    found = parse_stat(stdout)
    if not found:     # not even "/": stat itself failed (no GNU stat, or ssh broke)
        return [{**p, "usable": False, "state": "unknown", "message": f"cannot be checked: {_last_line(stderr)}"}
                for p in pools]
    nearest = {p["path"]: next(a for a in _ancestors(p["path"]) if a in found) for p in pools}
    _rc, fs_out, _err = t.run("stat", "-f", "-c", "%S|%b|%a|%n", "--", *sorted(set(nearest.values())))
    space = parse_statfs(fs_out)
    out = []
    for p in pools:
        at = nearest[p["path"]]
        kind, fs = found[at], space.get(at, {})
        row = {"name": p["name"], "path": p["path"], "mount": kind["mount"],
               "total_bytes": fs.get("total_bytes"), "free_bytes": fs.get("free_bytes")}
        if at == p["path"] and kind["type"] == "directory":
            row.update(usable=True, state="exists", message="the directory is there")
        elif at == p["path"]:
            row.update(usable=False, state="not_a_directory", message=f"{at} exists but is a {kind['type']}")
        elif kind["type"] == "directory":
            row.update(usable=True, state="creatable", message=f"will be created by setup (under {at})")
        else:
            row.update(usable=False, state="not_creatable",
                       message=f"cannot be created: {at} is a {kind['type']}, not a directory")
        out.append(row)
    return out


def known_hosts_name(address, port):
    """How ssh names an endpoint in known_hosts: the host alone on port 22, else [host]:port."""
    host = address[1:-1] if address.startswith("[") else address
    return host if int(port) == 22 else f"[{host}]:{port}"


def trust_host_key(data, fingerprint, admin=False, saved_vars=None):
    """Pin the host key a person compared (Test connection said "host key not known yet"): scan the
    host again and append the line whose fingerprint is the one shown to the known_hosts file the
    connection uses. Only while no key of that host is pinned: a changed key may be an attack and is
    replaced by hand, never from a page."""
    t = check_target(data, admin, saved_vars)[0]
    if not isinstance(fingerprint, str) or not re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", fingerprint):
        raise Invalid(_("fingerprint must be the SHA256:... shown by Test connection"))
    name = known_hosts_name(t.address, t.port)
    if os.path.exists(t.known_hosts):
        found = subprocess.run(["ssh-keygen", "-F", name, "-f", t.known_hosts], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=10)
        if found.returncode == 0 and found.stdout.strip():
            raise Invalid(_("%(file)s already pins a key for %(name)s: a changed host key is replaced by hand"
                            " (ssh-keygen -R), after checking why it changed", file=t.known_hosts, name=name))
    match = [k for k in _host_keys(t) if k["fingerprint"] == fingerprint]
    if not match:
        raise Invalid(_("%(name)s does not offer a key with fingerprint %(fingerprint)s now: test the connection again",
                        name=name, fingerprint=fingerprint))
    os.makedirs(os.path.dirname(t.known_hosts), mode=0o700, exist_ok=True)
    with open(t.known_hosts, "a") as f:
        f.write(match[0]["known_hosts_line"] + "\n")
    return {"pinned": match[0]["known_hosts_line"], "fingerprint": fingerprint, "type": match[0]["type"],
            "known_hosts": t.known_hosts}


def known_hosts_file(host_vars):
    """The known_hosts file a server's connection uses (its UserKnownHostsFile, else the account's)."""
    return Target("", 22, "root", host_vars).known_hosts


def forget_host_key(address, port, host_vars):
    """Drop the keys pinned for an endpoint a server no longer uses (its address or port changed):
    a stale pin would later read "host key changed" to whoever reuses that endpoint. True when a
    line went. ssh-keygen -R keeps the former file as <file>.old, as ssh's own tools do."""
    path = known_hosts_file(host_vars)
    if not os.path.exists(path):
        return False
    name = known_hosts_name(address, port)
    found = subprocess.run(["ssh-keygen", "-F", name, "-f", path], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
    if found.returncode != 0 or not found.stdout.strip():
        return False
    subprocess.run(["ssh-keygen", "-R", name, "-f", path], stdin=subprocess.DEVNULL, capture_output=True,
                   text=True, timeout=10, check=True)
    return True
