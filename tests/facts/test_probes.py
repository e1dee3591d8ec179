"""Pure parsing and decision logic of module_utils/facts.py (no tools needed)."""
from ansible_collections.borgfleet.backup.plugins.module_utils import facts, mounts, probes, storage
from ansible_collections.borgfleet.backup.plugins.module_utils.engines import mariadb, postgresql

MIB = 1024 * 1024

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 27 254:16 / /srv/my\\040pool rw,relatime - xfs /dev/mapper/vg0-pool rw
51 27 254:16 /sub /mnt/bind rw,relatime - xfs /dev/mapper/vg0-pool rw
52 27 0:45 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw
53 27 0:46 / /mnt/nfs rw - nfs4 srv:/export rw
54 27 0:47 / /run/borg rw - fuse.borgfs borgfs rw
"""


def test_mountinfo_keeps_real_filesystems_once():
    table = mounts.parse_mountinfo(MOUNTINFO)
    assert table[4]["mountpoint"] == "/srv/my pool"  # \040 unescaped
    real = facts.real_mounts(table, nodev={"proc", "tmpfs", "cgroup2", "overlay", "nfs4", "fuse"})
    assert [m["mountpoint"] for m in real] == ["/", "/srv/my pool", "/mnt/nfs"]


def test_memory_as_free_counts_it():
    info = facts.parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\n"
                               "Buffers: 50 kB\nCached: 300 kB\nSReclaimable: 50 kB\n"
                               "SwapTotal: 200 kB\nSwapFree: 150 kB\n")
    mem = facts.memory_facts(info)
    assert mem["total_bytes"] == 1024000
    assert mem["used_bytes"] == (1000 - 100 - 400) * 1024
    assert mem["used_percent"] == 40.0
    assert mem["swap"] == {"total_bytes": 204800, "used_bytes": 51200, "free_bytes": 153600}


def test_cpu_usage_from_two_samples():
    before = facts.cpu_times("cpu  100 0 100 700 100 0 0 0 0 0\n")
    after = facts.cpu_times("cpu  150 0 150 800 100 0 0 0 0 0\n")
    assert facts.cpu_usage_percent(before, after) == 50.0
    assert facts.cpu_usage_percent(after, after) is None


def test_human_duration():
    assert facts.human_duration(59) == "0m"
    assert facts.human_duration(3 * 86400 + 4 * 3600 + 5 * 60 + 7) == "3d 4h 5m"


def test_snapshot_sizes_are_whole_extents_with_floors():
    small = facts.recommended_snapshot_sizes(10 * MIB)
    assert small == {"datadir_bytes": 10 * MIB, "conservative_bytes": 256 * MIB, "aggressive_bytes": 64 * MIB}
    big = facts.recommended_snapshot_sizes(10 * 1024 * MIB + 1, extent=32 * MIB)
    assert big["conservative_bytes"] % (32 * MIB) == 0 and big["conservative_bytes"] >= 5 * 1024 * MIB
    assert big["aggressive_bytes"] >= 2048 * MIB and big["aggressive_bytes"] < big["conservative_bytes"]
    assert facts.recommended_snapshot_sizes(None) is None


def test_logical_volume_matched_by_mapper_or_vg_path():
    volumes = [{"lv": "data", "vg": "vg0", "path": "/dev/vg0/data", "dm_path": "/dev/mapper/vg0-data"},
               {"lv": "pool", "vg": "vg0", "path": "/dev/vg0/pool", "dm_path": "/dev/mapper/vg0-pool"}]
    assert storage.match_logical_volume("/dev/mapper/vg0-pool", volumes)["lv"] == "pool"
    assert storage.match_logical_volume("/dev/vg0/data", volumes)["lv"] == "data"
    assert storage.match_logical_volume("/dev/vda", volumes) is None
    assert storage.match_logical_volume("tmpfs", volumes) is None


def test_my_print_defaults_and_postgresql_conf():
    d = mariadb.parse_my_print_defaults("--socket=/run/mysqld/mysqld.sock\n--datadir=/srv/mysql\n--port=3307\n")
    assert d == {"socket": "/run/mysqld/mysqld.sock", "datadir": "/srv/mysql", "port": "3307"}
    conf = "port = 5433\t\t# (change requires restart)\ndata_directory = '/srv/pg/15/main'\t# use data\n"
    assert postgresql.conf_value(conf, "port") == "5433"
    assert postgresql.conf_value(conf, "data_directory") == "/srv/pg/15/main"


def test_pool_entries_of_this_host_only():
    entries = [{"server": "bk1", "client": "web1", "local": False},
               {"server": "bk2", "client": "web1", "local": False},
               {"server": "local", "client": "bk1", "local": True},
               {"server": "local", "client": "web2", "local": True}]
    assert facts.stats_for_host(entries, "bk1") == [entries[0], entries[2]]
    assert facts.stats_for_host(entries, "") == entries


def test_probe_reports_missing_and_timeout(tmp_path):
    probe = probes.Probe(path=str(tmp_path), timeout=1)
    assert probe.run(["mariadb", "--version"]).status == "missing"
    real = probes.Probe(timeout=1)
    result = real.run(["sleep", "30"])
    assert result.status == "timeout" and not result.ok
    assert real.run(["true"]).ok
