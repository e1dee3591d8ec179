# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: what server_facts and pool_info report.

System figures from /proc, the storage under each engine's data directory (what each engine
module's detect() finds, described with storage.py), Redis and Docker, and storage pools. Every
tool runs through probes.Probe (a PATH of its own, the C locale, a timeout): a missing tool or a
probe that times out is an answer ("absent", "timed out"), never a hang or a traceback. No probe
returns a secret: MySQL credentials reach the client only as a file (--defaults-file).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import socket
import time

from ansible_collections.borgfleet.backup.plugins.module_utils import engines, frozen, mounts, storage
from ansible_collections.borgfleet.backup.plugins.module_utils.probes import (
    call_with_timeout, read_text, search, to_int)

MIB = 1024 * 1024
LVM_DEFAULT_EXTENT = 4 * MIB

# Filesystems that hold no data of their own, even when the kernel gives them a device.
PSEUDO_FSTYPES = frozenset((
    'proc', 'sysfs', 'tmpfs', 'devtmpfs', 'devpts', 'overlay', 'cgroup', 'cgroup2', 'mqueue',
    'securityfs', 'debugfs', 'tracefs', 'pstore', 'bpf', 'autofs', 'configfs', 'fusectl',
    'hugetlbfs', 'binfmt_misc', 'rpc_pipefs', 'nsfs', 'ramfs', 'squashfs', 'efivarfs', 'selinuxfs',
))
# "nodev" in /proc/filesystems, yet real data: network and shared filesystems.
NETWORK_FSTYPES = frozenset(('nfs', 'nfs4', 'cifs', 'smb3', 'ceph', 'glusterfs', '9p', 'virtiofs',
                             'fuse.sshfs', 'fuse.glusterfs', 'fuse.cephfs'))


# System -----------------------------------------------------------------------------------------

def parse_os_release(text):
    out = {}
    for line in (text or '').splitlines():
        match = re.match(r'^([A-Z_]+)=(.*)$', line.strip())
        if match:
            value = match.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
                value = value[1:-1]
            out[match.group(1)] = value
    return out


def parse_meminfo(text):
    """/proc/meminfo as bytes per key."""
    out = {}
    for line in (text or '').splitlines():
        match = re.match(r'^(\w+(?:\(\w+\))?):\s+(\d+)(?:\s+kB)?$', line.strip())
        if match:
            out[match.group(1)] = int(match.group(2)) * 1024
    return out


def memory_facts(meminfo):
    total = meminfo.get('MemTotal', 0)
    free = meminfo.get('MemFree', 0)
    buff_cache = meminfo.get('Buffers', 0) + meminfo.get('Cached', 0) + meminfo.get('SReclaimable', 0)
    available = meminfo.get('MemAvailable', free + buff_cache)
    # As free(1) computes it: what is neither free nor reclaimable cache.
    used = max(total - free - buff_cache, 0)
    swap_total = meminfo.get('SwapTotal', 0)
    swap_free = meminfo.get('SwapFree', 0)
    return {
        'total_bytes': total, 'used_bytes': used, 'available_bytes': available, 'free_bytes': free,
        'buff_cache_bytes': buff_cache,
        'used_percent': round(100.0 * (total - available) / total, 1) if total else None,
        'swap': {'total_bytes': swap_total, 'used_bytes': swap_total - swap_free, 'free_bytes': swap_free},
    }


def cpu_times(stat_text):
    """(idle, total) jiffies of the aggregate cpu line of /proc/stat."""
    for line in (stat_text or '').splitlines():
        if line.startswith('cpu '):
            values = [int(v) for v in line.split()[1:]]
            # idle + iowait count as idle; guest times are already inside user/nice.
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return idle, sum(values[:8])
    return None


def cpu_usage_percent(before, after):
    if not before or not after or after[1] <= before[1]:
        return None
    return round(100.0 * (1 - float(after[0] - before[0]) / (after[1] - before[1])), 1)


def cpu_model(cpuinfo):
    for line in (cpuinfo or '').splitlines():
        key, _, value = line.partition(':')
        if key.strip() in ('model name', 'Hardware', 'cpu model', 'Processor'):
            return value.strip()
    return None


def nodev_fstypes(filesystems_text):
    out = set()
    for line in (filesystems_text or '').splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == 'nodev':
            out.add(parts[1])
    return out


def real_mounts(mounts, nodev=()):
    """Mounts that hold data: no pseudo filesystems, each device once (bind mounts skipped)."""
    seen, out = set(), []
    for m in mounts:
        fstype = m['fstype']
        if fstype not in NETWORK_FSTYPES and (fstype in PSEUDO_FSTYPES or fstype in nodev
                                              or fstype.startswith('fuse.')):
            continue
        if m['device_number'] in seen:
            continue
        seen.add(m['device_number'])
        out.append(m)
    return out


def fs_usage(path):
    """Capacity of the filesystem holding path, as df(1) counts it (free = available to users)."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    base = used + free
    return {'total_bytes': total, 'used_bytes': used, 'free_bytes': free,
            'used_percent': round(100.0 * used / base, 1) if base else 0.0}


def primary_ip():
    """Source address of the default route (a UDP connect sends no packet)."""
    for family, target in ((socket.AF_INET, ('192.0.2.1', 9)), (socket.AF_INET6, ('2001:db8::1', 9))):
        try:
            s = socket.socket(family, socket.SOCK_DGRAM)
            try:
                s.connect(target)
                return s.getsockname()[0]
            finally:
                s.close()
        except (OSError, socket.error):
            continue
    return None


def human_duration(seconds):
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = (['%dd' % days] if days else []) + (['%dh' % hours] if days or hours else []) + ['%dm' % minutes]
    return ' '.join(parts)


def filesystems_facts(timeout):
    out = []
    for m in real_mounts(mounts.read_mounts(), nodev_fstypes(read_text('/proc/filesystems'))):
        usage, error = call_with_timeout(fs_usage, timeout, m['mountpoint'])
        entry = {'mountpoint': m['mountpoint'], 'device': m['source'], 'fstype': m['fstype']}
        if usage is None:
            entry['error'] = error or 'unreadable'
        else:
            entry.update(usage)
        out.append(entry)
    return out


def system_facts(timeout=5, cpu_sample=0.5):
    uname = os.uname()
    release = parse_os_release(read_text('/etc/os-release') or read_text('/usr/lib/os-release'))
    before = cpu_times(read_text('/proc/stat'))
    if cpu_sample > 0:
        time.sleep(cpu_sample)
    after = cpu_times(read_text('/proc/stat'))
    uptime_text = read_text('/proc/uptime')
    uptime = float(uptime_text.split()[0]) if uptime_text else None
    boot = time.time() - uptime if uptime is not None else None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        'hostname': socket.gethostname(),
        'fqdn': socket.getfqdn(),
        'os': {'name': release.get('NAME'), 'id': release.get('ID'), 'version': release.get('VERSION_ID'),
               'pretty_name': release.get('PRETTY_NAME'), 'codename': release.get('VERSION_CODENAME')},
        'kernel': uname.release,
        'architecture': uname.machine,
        'cpu': {'cores': os.cpu_count(), 'model': cpu_model(read_text('/proc/cpuinfo')), 'load': load,
                'usage_percent': cpu_usage_percent(before, after), 'sample_seconds': cpu_sample},
        'memory': memory_facts(parse_meminfo(read_text('/proc/meminfo'))),
        'filesystems': filesystems_facts(timeout),
        'primary_ip': primary_ip(),
        'uptime': {'seconds': int(uptime) if uptime is not None else None,
                   'human': human_duration(uptime) if uptime is not None else None,
                   'boot_time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(boot)) if boot else None},
    }


# Storage under a data directory ----------------------------------------------------------------

def recommended_snapshot_sizes(data_bytes, extent=LVM_DEFAULT_EXTENT):
    """Copy-on-write room for a snapshot kept while borg reads the datadir.

    The room only has to absorb what the engine rewrites during the backup. Conservative: half
    the datadir (survives heavy write load on a slow backup); aggressive: a fifth (a quiet
    engine, short backup). Both at least 256/64 MiB and whole extents."""
    if data_bytes is None:
        return None

    def round_up(n):
        return int(-(-int(n) // extent) * extent)

    return {'datadir_bytes': int(data_bytes),
            'conservative_bytes': round_up(max(data_bytes * 0.5, 256 * MIB)),
            'aggressive_bytes': round_up(max(data_bytes * 0.2, 64 * MIB))}


def du_bytes(probe, path, timeout):
    result = probe.run(['du', '-s', '-x', '-B1', '--', path], timeout=timeout)
    if result.status == 'ok' and result.out.split():
        try:
            # du exits 1 when a file vanished while it walked (a live datadir): the sum still counts.
            return int(result.out.split()[0]), None
        except ValueError:
            pass
    return None, result.first_error_line()


def lvm_volume_groups(probe):
    result = probe.run(['vgs', '--reportformat', 'json', '--units', 'b', '--nosuffix', '-o',
                        'vg_name,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count'])
    if not result.ok:
        return None, result.first_error_line()
    try:
        rows = json.loads(result.out)['report'][0]['vg']
    except (ValueError, KeyError, IndexError):
        return None, 'could not parse vgs output'
    return [{'vg': r.get('vg_name'), 'size_bytes': to_int(r.get('vg_size')), 'free_bytes': to_int(r.get('vg_free')),
             'extent_bytes': to_int(r.get('vg_extent_size')), 'extents': to_int(r.get('vg_extent_count')),
             'free_extents': to_int(r.get('vg_free_count'))} for r in rows], None


class StorageProber:
    """Describes the storage under data directories (storage.Storage decides what it is) with the
    figures an operator sizes a snapshot by: the data's size, free space, room in the volume group."""

    def __init__(self, probe, size_timeout=60):
        self.probe = probe
        self.size_timeout = size_timeout
        self.storage = storage.Storage(probe)

    def describe(self, datadir):
        if not datadir:
            return None
        path = os.path.realpath(datadir)
        if not os.path.isdir(path):
            return {'path': path, 'exists': False, 'type': None, 'snapshot_capable': False,
                    'reason': 'directory does not exist'}
        found = self.storage.of(path)
        mount = found['mount']
        data_bytes, size_error = du_bytes(self.probe, path, self.size_timeout)
        out = {'path': path, 'exists': True, 'mountpoint': mount.get('mountpoint'), 'fstype': mount.get('fstype'),
               'device': mount.get('source'), 'type': found['kind'], 'snapshot_capable': found['snapshot_capable']}
        if found['reason']:
            out['reason'] = found['reason']
        if found.get('lvm_error'):
            out['lvm_error'] = found['lvm_error']
        usage, _ = call_with_timeout(fs_usage, self.probe.timeout, path)
        if usage:
            out['filesystem_free_bytes'] = usage['free_bytes']
        if size_error:
            out['size_error'] = size_error
        lv = found.get('lv')
        if found['kind'] == 'btrfs':
            out['btrfs'] = self._btrfs(found['volume_root'], path)
            sizes = recommended_snapshot_sizes(data_bytes)
        else:
            sizes = recommended_snapshot_sizes(data_bytes, (lv or {}).get('vg_extent_bytes') or LVM_DEFAULT_EXTENT)
        if lv:
            keys = ('vg', 'lv', 'path', 'size_bytes', 'vg_free_bytes', 'vg_extent_bytes', 'vg_free_extents')
            out['lvm'] = dict((k, lv[k]) for k in keys)
            if sizes:
                out['snapshot_fits'] = {
                    'conservative': (lv['vg_free_bytes'] or 0) >= sizes['conservative_bytes'],
                    'aggressive': (lv['vg_free_bytes'] or 0) >= sizes['aggressive_bytes']}
                if not out['snapshot_fits']['aggressive']:
                    out['snapshot_capable'] = False
                    out['reason'] = ('volume group %s has %s bytes free, less than the aggressive snapshot size'
                                     % (lv['vg'], lv['vg_free_bytes']))
        out['snapshot_size'] = sizes
        return out

    def _btrfs(self, subvolume, path):
        out = {'subvolume': subvolume, 'datadir_is_subvolume': subvolume == path}
        show = self.probe.run(['btrfs', 'subvolume', 'show', subvolume or path])
        if show.ok:
            for line in show.out.splitlines()[1:]:
                key, _, value = line.strip().partition(':')
                if key in ('Name', 'UUID', 'Subvolume ID'):
                    out[key.lower().replace(' ', '_')] = value.strip()
        return out


# Engines ---------------------------------------------------------------------------------------

def redis_facts(probe, storage):
    server = probe.which('redis-server')
    if not server:
        return {'installed': False}
    out = {'installed': True,
           'version': search(probe.run(['redis-server', '--version']).out, r'v=(\d+\.\d+\.\d+)')}
    conf = probe.read('/etc/redis/redis.conf') or ''
    port = to_int(search(conf, r'(?m)^\s*port\s+(\d+)')) or 6379
    host = (search(conf, r'(?m)^\s*bind\s+(\S+)') or '127.0.0.1').lstrip('-')
    out['port'] = port
    cli = ['redis-cli', '-h', host, '-p', str(port)]
    ping = probe.run(cli + ['PING'])
    answer = ping.out.strip()
    out['running'] = ping.ok and (answer == 'PONG' or 'NOAUTH' in answer)
    out['auth_required'] = 'NOAUTH' in answer if out['running'] else None
    datadir = None
    if out['running'] and not out['auth_required']:
        got = probe.run(cli + ['CONFIG', 'GET', 'dir']).out.split('\n')
        datadir = got[1].strip() if len(got) > 1 and got[0].strip() == 'dir' else None
        aof = probe.run(cli + ['CONFIG', 'GET', 'appendonly']).out.split('\n')
        out['appendonly'] = aof[1].strip() == 'yes' if len(aof) > 1 else None
    datadir = datadir or search(conf, r'(?m)^\s*dir\s+(\S+)') or '/var/lib/redis'
    out['datadir'] = datadir
    out['storage'] = storage.describe(datadir)
    return out


def _json_lines(text):
    out = []
    for line in (text or '').splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def docker_facts(probe, storage):
    if not probe.which('docker'):
        return {'installed': False}
    out = {'installed': True, 'running': False, 'containers': [], 'volumes': []}
    info = probe.run(['docker', 'info', '--format', '{{json .}}'])
    data = None
    if info.ok:
        try:
            data = json.loads(info.out)
        except ValueError:
            data = None
    # docker info prints the client part and exits 0 even when the daemon is down.
    if not data or not data.get('ServerVersion'):
        out['error'] = ((data or {}).get('ServerErrors') or [info.first_error_line()])[0][:200]
        return out
    # Only chosen fields: the full info can carry proxy URLs with credentials.
    out.update({'running': True, 'server_version': data.get('ServerVersion'),
                'storage_driver': data.get('Driver'), 'root_dir': data.get('DockerRootDir')})
    for c in _json_lines(probe.run(['docker', 'ps', '-a', '--no-trunc', '--format', '{{json .}}']).out):
        out['containers'].append({'id': c.get('ID'), 'name': c.get('Names'), 'image': c.get('Image'),
                                  'state': c.get('State'), 'status': c.get('Status'),
                                  'mounts': [m for m in (c.get('Mounts') or '').split(',') if m]})
    for v in _json_lines(probe.run(['docker', 'volume', 'ls', '--format', '{{json .}}']).out):
        out['volumes'].append({'name': v.get('Name'), 'driver': v.get('Driver'), 'mountpoint': v.get('Mountpoint')})
    out['storage'] = storage.describe(out['root_dir'])
    return out


def capabilities_facts(probe, size_timeout=60):
    storage = StorageProber(probe, size_timeout)
    lvm = {'installed': bool(probe.which('lvs'))}
    if lvm['installed']:
        lvm['volume_groups'], error = lvm_volume_groups(probe)
        if error:
            lvm['error'] = error
    out = dict((key, detect(probe, storage)) for key, detect in engines.DETECT)
    out.update({
        'redis': redis_facts(probe, storage),
        'docker': docker_facts(probe, storage),
        'lvm': lvm,
        'btrfs': {'installed': bool(probe.which('btrfs'))},
    })
    return out


# Storage pools -----------------------------------------------------------------------------------

def _is_borg_repository(path):
    try:
        with open(os.path.join(path, 'config')) as f:
            return f.read(64).lstrip().startswith('[repository]')
    except (IOError, OSError, UnicodeDecodeError):
        return False


def find_repositories(pool_path, max_depth=3):
    """Borg repositories under a pool (<pool>/<client>/<backup> and a little deeper), sorted."""
    found = []
    base_depth = pool_path.rstrip('/').count('/')
    for current, dirs, _files in os.walk(pool_path):
        if _is_borg_repository(current):
            found.append(current)
            dirs[:] = []  # a repository's data/ tree holds no repositories
            continue
        if current.rstrip('/').count('/') - base_depth >= max_depth:
            dirs[:] = []
        # An instant-recovery session's frozen copy of a repository (hard links) is no repository of the pool.
        dirs[:] = sorted(d for d in dirs if not frozen.is_frozen_copy_name(d))
    return sorted(found)


def stats_for_host(entries, host):
    """The clients' repository figures whose repositories live on ``host``.

    An entry names its backup server in ``server``; a client's own local pool has
    ``local`` true and lives on the client itself."""
    if not host:
        return list(entries or [])
    return [e for e in entries or [] if e.get('server') == host or (e.get('local') and e.get('client') == host)]


BORG_FIGURES = ('stats', 'archive_count', 'backup_archive_count', 'last_archive')


def analyze_pool(probe, pool, entries, warn_percent, size_timeout):
    """One pool: filesystem capacity, each repository's size on disk merged with the borg figures
    its client read (by repository path), and whether the pool passed warn_percent."""
    path = pool['path'].rstrip('/') or '/'
    out = {'name': pool['name'], 'path': path, 'exists': os.path.isdir(path), 'repositories': []}
    if not out['exists']:
        out['warn'] = False
        return out
    usage, error = call_with_timeout(fs_usage, probe.timeout, path)
    mount = mounts.mount_of(os.path.realpath(path), mounts.read_mounts()) or {}
    out.update({'mountpoint': mount.get('mountpoint'), 'fstype': mount.get('fstype'), 'device': mount.get('source')})
    if usage:
        out.update(usage)
        out['warn'] = usage['used_percent'] >= warn_percent
    else:
        out['error'], out['warn'] = error, False
    by_path = dict((e.get('repository_path'), e) for e in entries
                   if (e.get('repository_path') or '').startswith(path + '/'))
    paths = sorted(set(find_repositories(path)) | set(by_path))
    total = 0
    for repo_path in paths:
        rel = repo_path[len(path) + 1:].split('/')
        entry = by_path.get(repo_path) or {}
        repo = {'path': repo_path, 'client': entry.get('client') or (rel[0] if len(rel) > 1 else None),
                'backup': entry.get('name') or rel[-1], 'exists': os.path.isdir(repo_path)}
        if repo['exists']:
            repo['size_on_disk_bytes'], size_error = du_bytes(probe, repo_path, size_timeout)
            if size_error:
                repo['size_error'] = size_error
            total += repo['size_on_disk_bytes'] or 0
        if not entry:
            repo['borg'] = None  # no client of this run owns it (orphan, or not in the inventory)
        elif entry.get('failed'):
            repo['borg'] = None
            repo['borg_error'] = entry.get('msg') or 'borg failed'
        else:
            repo['borg'] = dict((k, entry.get(k)) for k in BORG_FIGURES)
        out['repositories'].append(repo)
    out['repositories_size_bytes'] = total
    return out
