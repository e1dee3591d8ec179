"""server_facts against this machine: its /proc, its real MariaDB, PostgreSQL and Redis, and a
host where none of them exists or one of them hangs."""
import contextlib
import json
import os
import re
import secrets
import signal
import shutil
import socket
import subprocess
import time

import pytest

from tests.lib.playbook import run_module
from tests.lib.sshd import free_port


def sh(*argv, input=None):
    return subprocess.run(argv, input=input, capture_output=True, text=True, check=True, timeout=30).stdout


def meminfo_bytes(key):
    for line in open("/proc/meminfo"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024


def test_system_stats_are_this_machines(tmp_path):
    result = run_module(tmp_path, "server_facts", {"gather": ["system"], "cpu_sample": 0.3})
    s = result["system"]
    assert result["changed"] is False and "capabilities" not in result
    assert result["ansible_facts"]["borgfleet_system"]["kernel"] == s["kernel"]
    assert s["memory"]["total_bytes"] == meminfo_bytes("MemTotal")
    assert s["memory"]["swap"]["total_bytes"] == meminfo_bytes("SwapTotal")
    # Available memory moves while other engineers' tests run: within a tenth of the total of now's.
    assert abs(s["memory"]["available_bytes"] - meminfo_bytes("MemAvailable")) < meminfo_bytes("MemTotal") // 10
    assert s["kernel"] == os.uname().release and s["architecture"] == os.uname().machine
    assert s["hostname"] == socket.gethostname()
    release = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', open("/etc/os-release").read(), re.M))
    assert s["os"]["id"] == release["ID"] and s["os"]["version"] == release["VERSION_ID"]
    # Counted by other tools than the module's os.cpu_count(): nproc and the kernel's cpuinfo.
    processors = sum(1 for line in open("/proc/cpuinfo") if line.split(":")[0].strip() == "processor")
    assert s["cpu"]["cores"] == int(sh("nproc", "--all")) == processors
    lscpu_model = re.search(r"^Model name:\s*(.+)$", sh("lscpu"), re.M)
    if lscpu_model:
        assert s["cpu"]["model"] == lscpu_model.group(1).strip()
    assert s["cpu"]["model"] and 0.0 <= s["cpu"]["usage_percent"] <= 100.0
    loadavg = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    assert len(s["cpu"]["load"]) == 3 and all(abs(a - b) < 2.0 for a, b in zip(s["cpu"]["load"], loadavg))
    # The root filesystem with the figures df reports; no pseudo filesystem listed.
    root = next(f for f in s["filesystems"] if f["mountpoint"] == "/")
    df = sh("df", "-B1", "--output=size,avail", "/").split("\n")[1].split()
    assert root["total_bytes"] == int(df[0])
    assert abs(root["free_bytes"] - int(df[1])) < 512 * 1024 * 1024  # other engineers write meanwhile
    assert not {f["fstype"] for f in s["filesystems"]} & {"proc", "sysfs", "tmpfs", "devtmpfs", "overlay", "cgroup"}
    route = sh("ip", "-4", "route", "get", "8.8.8.8")
    assert s["primary_ip"] == re.search(r"\bsrc (\S+)", route).group(1)
    uptime = float(open("/proc/uptime").read().split()[0])
    assert abs(s["uptime"]["seconds"] - uptime) < 30
    assert s["uptime"]["human"].endswith("m") and s["uptime"]["boot_time"].endswith("Z")


def test_check_mode_reads_the_same(tmp_path):
    result = run_module(tmp_path, "server_facts", {"gather": ["system"], "cpu_sample": 0}, check=True)
    assert result["changed"] is False
    assert result["system"]["memory"]["total_bytes"] == meminfo_bytes("MemTotal")


def test_capabilities_of_the_real_engines(tmp_path):
    result = run_module(tmp_path, "server_facts", {"gather": ["capabilities"]})
    caps = result["capabilities"]
    assert "system" not in result

    my = caps["mysql"]
    client_version = re.search(r"Distrib (\d+\.\d+\.\d+)", sh("mariadb", "--version")).group(1)
    assert my["installed"] and my["flavor"] == "mariadb" and my["version"] == client_version
    server_version, datadir = sh("mariadb", "-NBe", "SELECT VERSION(), @@datadir").strip().split("\t")
    assert my["server_version"] == server_version
    assert my["datadir"] == datadir.rstrip("/")
    assert my["running"] and my["auth"]["socket"] is True and my["auth"]["method"] == "socket"
    if os.path.exists("/etc/mysql/debian.cnf"):
        assert isinstance(my["auth"]["debian_cnf"], bool)
    else:
        assert my["auth"]["debian_cnf"] is None
    fstype, source = sh("findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", my["datadir"]).split()[:2]
    st = my["storage"]
    assert st["fstype"] == fstype and st["path"] == os.path.realpath(my["datadir"])
    du = int(sh("du", "-s", "-x", "-B1", my["datadir"]).split()[0])
    assert abs(st["snapshot_size"]["datadir_bytes"] - du) <= max(du // 10, 8 * 1024 * 1024)
    # The kind of storage, from util-linux rather than the module's own reading of lvs/mountinfo.
    lsblk = subprocess.run(["lsblk", "-no", "TYPE", source], capture_output=True, text=True).stdout.split()
    expected = "btrfs" if fstype == "btrfs" else "lvm" if lsblk[:1] == ["lvm"] else "plain"
    assert st["type"] == expected, (st, fstype, source, lsblk)
    if expected == "plain":
        assert st["snapshot_capable"] is False and st["reason"] == "neither LVM nor btrfs under %s" % st["path"]

    pg = caps["postgresql"]
    listed = json.loads(sh("pg_lsclusters", "--json"))
    # The machine's PostgreSQL service has a cluster (make setup): the loop below checks something.
    assert listed and any(row["running"] for row in listed), listed
    assert pg["installed"] and len(pg["clusters"]) == len(listed)
    for cluster, row in zip(pg["clusters"], listed):
        assert cluster["version"] == str(row["version"]) and cluster["name"] == row["cluster"]
        assert cluster["port"] == int(row["port"]) and cluster["data_directory"] == row["pgdata"]
        assert cluster["status"] == ("online" if row["running"] else "down")
        if cluster["status"] == "online":
            assert cluster["peer_auth"] is True
        assert cluster["owner"] == "postgres"
        assert cluster["wal_directory"] == os.path.realpath(os.path.join(row["pgdata"], "pg_wal"))
        assert cluster["storage"]["path"] == row["pgdata"]

    rd = caps["redis"]
    assert rd["installed"] and rd["running"] and rd["auth_required"] is False
    assert rd["version"] == re.search(r"v=(\S+)", sh("redis-server", "--version")).group(1)
    assert rd["datadir"] == sh("redis-cli", "CONFIG", "GET", "dir").split("\n")[1]

    assert caps["mongodb"]["installed"] is bool(shutil.which("mongod") or os.path.exists("/etc/mongod.conf"))
    docker = caps["docker"]
    assert docker["installed"] is bool(shutil.which("docker"))
    if docker["installed"]:
        daemon_up = subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
        assert docker["running"] is daemon_up
    # make setup installs lvm2: the package manager says so, independently of the module's PATH probe.
    lvm2 = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "lvm2"], capture_output=True, text=True).stdout
    assert caps["lvm"]["installed"] is (lvm2 == "install ok installed") is True
    assert "password" not in json.dumps(result).lower()


@pytest.fixture
def mysql_user():
    """A real MariaDB account with a password full of shell syntax; dropped afterwards."""
    user = f"bf_facts_{secrets.token_hex(3)}"
    password = f"pw {secrets.token_hex(6)} $HOME;'|&"
    sql_password = password.replace("\\", "\\\\").replace("'", "\\'")
    # The password goes in on stdin, never in argv.
    sh("mariadb", input=f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{sql_password}';\n")
    yield user, password
    sh("mariadb", input=f"DROP USER IF EXISTS '{user}'@'localhost';\n")


def write_debian_cnf(root, user, password):
    cnf = root / "etc" / "mysql" / "debian.cnf"
    cnf.parent.mkdir(parents=True, exist_ok=True)
    cnf.write_text(f'[client]\nhost = localhost\nuser = {user}\npassword = "{password}"\n'
                   "socket = /run/mysqld/mysqld.sock\n")
    cnf.chmod(0o600)


def mariadb_tools(tmp_path):
    """A probe PATH with only the MariaDB tools (the other engines' probes are not under test here)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("mariadb", "mariadbd", "my_print_defaults", "du"):
        os.symlink(shutil.which(name), tools / name)
    return str(tools)


def test_debian_cnf_validated_and_password_never_returned(tmp_path, mysql_user):
    user, password = mysql_user
    root = tmp_path / "root"
    write_debian_cnf(root, user, password)
    args = {"gather": ["capabilities"], "probe_root": str(root), "probe_path": mariadb_tools(tmp_path)}
    result = run_module(tmp_path, "server_facts", args)
    auth = result["capabilities"]["mysql"]["auth"]
    assert auth["debian_cnf"] is True and auth["socket"] is True
    assert password not in json.dumps(result) and password not in result.output

    write_debian_cnf(root, user, password + "-wrong")
    result = run_module(tmp_path, "server_facts", args)
    auth = result["capabilities"]["mysql"]["auth"]
    assert auth["debian_cnf"] is False and "Access denied" in auth["debian_cnf_error"]
    assert password not in json.dumps(result) and password not in result.output


def test_host_with_none_reports_every_engine_absent(tmp_path):
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    started = time.monotonic()
    result = run_module(tmp_path, "server_facts", {"gather": ["capabilities"], "probe_path": str(nothing),
                                                   "probe_root": str(nothing)})
    elapsed = time.monotonic() - started
    caps = result["capabilities"]
    for engine in ("mysql", "postgresql", "mongodb", "redis", "docker", "lvm", "btrfs"):
        assert caps[engine]["installed"] is False, engine
    assert caps["postgresql"]["clusters"] == []
    assert elapsed < 30


@contextlib.contextmanager
def hung_redis(tmp_path):
    """A real redis-server, stopped with SIGSTOP: it accepts connections (the kernel does) and never
    answers. Yields its port; resumed and shut down after."""
    port = free_port("127.0.0.1")
    workdir = tmp_path / "hung-redis"
    workdir.mkdir()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True, text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the test redis-server did not start")
        proc.send_signal(signal.SIGSTOP)
        yield port
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


def test_a_hung_engine_costs_one_timeout(tmp_path):
    # The real redis tools, pointed by redis.conf at a server that never replies.
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("redis-server", "redis-cli", "du"):
        os.symlink(shutil.which(name), tools / name)
    root = tmp_path / "root"
    (root / "etc" / "redis").mkdir(parents=True)
    datadir = tmp_path / "redis-data"
    datadir.mkdir()
    with hung_redis(tmp_path) as port:
        (root / "etc" / "redis" / "redis.conf").write_text(f"bind 127.0.0.1\nport {port}\ndir {datadir}\n")
        # The server is really there and really hung: a connection is accepted, no reply comes.
        with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            probe.sendall(b"PING\r\n")
            with pytest.raises(socket.timeout):
                probe.recv(16)
        started = time.monotonic()
        result = run_module(tmp_path, "server_facts", {"gather": ["capabilities"], "timeout": 2,
                                                       "probe_path": str(tools), "probe_root": str(root)})
        elapsed = time.monotonic() - started
    rd = result["capabilities"]["redis"]
    assert rd["installed"] is True and rd["running"] is False and rd["auth_required"] is None
    assert rd["datadir"] == str(datadir) and rd["storage"]["exists"] is True
    assert elapsed < 20  # PING abandoned after 2 s, not redis-cli's own minutes
