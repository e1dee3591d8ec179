#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: server_facts
short_description: System stats and database/storage capabilities of a server
description:
  - Reads system stats (OS, kernel, CPU, memory, filesystems, primary IP, uptime) from C(/proc) and os calls,
    without psutil.
  - Detects MySQL/MariaDB, PostgreSQL clusters, MongoDB, Redis and Docker, which database authentication
    works (MySQL root over the unix socket or C(/etc/mysql/debian.cnf), PostgreSQL peer), and for every data
    directory the storage under it (LVM logical volume, btrfs subvolume or plain) with whether it can be
    snapshotted and recommended snapshot sizes.
  - Each engine is reported with C(installed=false) when absent. Every probe has a timeout, so the module never
    hangs. No password is read into or returned in the result.
  - The result is also set as the facts C(borgfleet_system) and C(borgfleet_capabilities).
version_added: 0.2.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  gather:
    description:
      - What to gather. V(system) is cheap (about O(cpu_sample) seconds); V(capabilities) runs the engine and
        storage probes, including C(du) of every data directory.
    type: list
    elements: str
    choices: [system, capabilities]
    default: [system, capabilities]
  timeout:
    description:
      - Seconds each probe (a tool run, a filesystem query) may take before it is abandoned and reported as timed out.
    type: int
    default: 5
  size_timeout:
    description:
      - Seconds C(du) may take to size one data directory.
    type: int
    default: 60
  cpu_sample:
    description:
      - Seconds between the two C(/proc/stat) readings the CPU usage percentage is computed from.
    type: float
    default: 0.5
  probe_path:
    description:
      - C(PATH) in which the probes look for tools (C(mariadb), C(pg_lsclusters), C(lvs), ...). A tool not found
        there counts as not installed.
    type: str
    default: /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  probe_root:
    description:
      - Directory under which engine config files are read (C(/etc/mysql/debian.cnf), C(/etc/postgresql),
        C(/etc/mongod.conf), C(/etc/redis/redis.conf)). System stats always read the real C(/proc).
    type: path
    default: /
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    description: Read-only, so running it again changes nothing.
    support: full
notes:
  - Run it as root (C(become)) so that socket/peer authentication and C(du) of data directories work.
  - LVM needs device-mapper; where the kernel lacks it C(lvs) lists nothing and every datadir reads as plain.
'''

EXAMPLES = r'''
- name: Stats and capabilities
  borgfleet.backup.server_facts:
  register: facts

- name: Only the cheap system stats
  borgfleet.backup.server_facts:
    gather: [system]

- name: Snapshot the MariaDB datadir when its storage allows it
  ansible.builtin.debug:
    msg: "{{ borgfleet_capabilities.mysql.storage.snapshot_size.conservative_bytes }}"
  when:
    - borgfleet_capabilities.mysql.installed
    - borgfleet_capabilities.mysql.storage.snapshot_capable
'''

RETURN = r'''
system:
  description: System stats (when V(system) is gathered).
  returned: when gathered
  type: dict
  contains:
    hostname: {description: "Short host name.", type: str}
    fqdn: {description: "Fully qualified name as the resolver sees it.", type: str}
    os:
      description: From os-release.
      type: dict
      contains:
        name: {description: "NAME.", type: str}
        id: {description: "ID (debian, ubuntu, ...).", type: str}
        version: {description: "VERSION_ID.", type: str}
        pretty_name: {description: "PRETTY_NAME.", type: str}
        codename: {description: "VERSION_CODENAME.", type: str}
    kernel: {description: "Kernel release (uname -r).", type: str}
    architecture: {description: "Machine (uname -m).", type: str}
    cpu:
      description: CPU.
      type: dict
      contains:
        cores: {description: "Logical CPUs.", type: int}
        model: {description: "Model name from /proc/cpuinfo.", type: str}
        load: {description: "1, 5 and 15 minute load averages.", type: list, elements: float}
        usage_percent: {description: "Busy share of all CPUs over the sample.", type: float}
        sample_seconds: {description: "Length of the sample.", type: float}
    memory:
      description: Memory in bytes, as free(1) counts it.
      type: dict
      contains:
        total_bytes: {description: "MemTotal.", type: int}
        used_bytes: {description: "Total minus free minus buffers/cache.", type: int}
        available_bytes: {description: "MemAvailable.", type: int}
        free_bytes: {description: "MemFree.", type: int}
        buff_cache_bytes: {description: "Buffers + Cached + SReclaimable.", type: int}
        used_percent: {description: "(total - available) / total.", type: float}
        swap: {description: "total_bytes, used_bytes, free_bytes.", type: dict}
    filesystems:
      description: Each real filesystem once (no proc/sys/tmpfs/overlay/cgroup, no bind mount twice).
      type: list
      elements: dict
      contains:
        mountpoint: {description: "Where it is mounted.", type: str}
        device: {description: "Mount source.", type: str}
        fstype: {description: "Filesystem type.", type: str}
        total_bytes: {description: "Size.", type: int}
        used_bytes: {description: "Used.", type: int}
        free_bytes: {description: "Available to unprivileged users (as df).", type: int}
        used_percent: {description: "used / (used + free) as df computes Use%.", type: float}
        error: {description: "Why the figures are missing (for example timed out).", type: str}
    primary_ip: {description: "Source address of the default route.", type: str}
    uptime:
      description: Uptime.
      type: dict
      contains:
        seconds: {description: "Seconds since boot.", type: int}
        human: {description: "For example 3d 4h 5m.", type: str}
        boot_time: {description: "Boot time, UTC ISO 8601.", type: str}
capabilities:
  description:
    - Engines and storage (when V(capabilities) is gathered). Every engine has C(installed); the rest only when
      installed.
    - Every data directory has a C(storage) dict - C(path), C(exists), C(mountpoint), C(fstype), C(device),
      C(type) (V(lvm), V(btrfs) or V(plain)), C(snapshot_capable), C(reason) (why not), C(filesystem_free_bytes),
      C(snapshot_size) (C(datadir_bytes), C(conservative_bytes), C(aggressive_bytes)); for LVM C(lvm) (C(vg), C(lv),
      C(path), C(size_bytes), C(vg_free_bytes), C(vg_extent_bytes), C(vg_free_extents)) and C(snapshot_fits)
      (C(conservative), C(aggressive)); for btrfs C(btrfs) (C(subvolume) holding the datadir,
      C(datadir_is_subvolume), C(name), C(uuid), C(subvolume_id)).
  returned: when gathered
  type: dict
  contains:
    mysql:
      description:
        - C(installed), C(server_installed), C(client_installed), C(flavor) (mariadb or mysql), C(version)
          (x.y.z), C(server_version) (SELECT VERSION(), when a login works), C(socket), C(port), C(running),
          C(datadir), C(storage).
        - C(auth) - C(socket) (root over the unix socket works), C(debian_cnf) (the debian.cnf credentials work;
          null when that file is absent), C(method) (V(socket), V(debian_cnf) or null - the one to use),
          C(socket_error)/C(debian_cnf_error) (first error line). Each is checked with a real C(SELECT 1).
      type: dict
    postgresql:
      description:
        - C(installed), C(source) (pg_lsclusters or scan of /etc/postgresql), C(clusters) - each with
          C(version), C(name), C(port), C(status) (online/down), C(owner), C(data_directory),
          C(socket_directory), C(peer_auth) (C(runuser -u owner -- psql) answered C(select 1); null when the
          cluster is down), C(wal_directory), C(tablespaces) (real paths), C(single_filesystem) (WAL and
          tablespaces on the datadir's filesystem), C(storage).
      type: dict
    mongodb:
      description: C(installed), C(server_installed), C(version), C(datadir) (storage.dbPath), C(port),
        C(running), C(storage).
      type: dict
    redis:
      description: C(installed), C(version), C(port), C(running), C(auth_required), C(appendonly), C(datadir),
        C(storage).
      type: dict
    docker:
      description: C(installed), C(running), C(error), C(server_version), C(storage_driver), C(root_dir),
        C(containers) (id, name, image, state, status, mounts), C(volumes) (name, driver, mountpoint), C(storage).
      type: dict
    lvm:
      description: C(installed) (lvs found), C(volume_groups) (vg, size_bytes, free_bytes, extent_bytes,
        extents, free_extents), C(error).
      type: dict
    btrfs:
      description: C(installed) (btrfs-progs found).
      type: dict
ansible_facts:
  description: The same as C(borgfleet_system) and C(borgfleet_capabilities).
  returned: always
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils.facts import capabilities_facts, system_facts
from ansible_collections.borgfleet.backup.plugins.module_utils.probes import DEFAULT_PATH, Probe


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gather=dict(type='list', elements='str', choices=['system', 'capabilities'],
                        default=['system', 'capabilities']),
            timeout=dict(type='int', default=5),
            size_timeout=dict(type='int', default=60),
            cpu_sample=dict(type='float', default=0.5),
            probe_path=dict(type='str', default=DEFAULT_PATH),
            probe_root=dict(type='path', default='/'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p['timeout'] < 1 or p['size_timeout'] < 1 or not 0 <= p['cpu_sample'] <= 10:
        module.fail_json(msg='timeout and size_timeout must be at least 1, cpu_sample between 0 and 10')
    result, facts = {}, {}
    if 'system' in p['gather']:
        result['system'] = facts['borgfleet_system'] = system_facts(p['timeout'], p['cpu_sample'])
    if 'capabilities' in p['gather']:
        probe = Probe(path=p['probe_path'], root=p['probe_root'], timeout=p['timeout'])
        result['capabilities'] = facts['borgfleet_capabilities'] = capabilities_facts(probe, p['size_timeout'])
    module.exit_json(changed=False, ansible_facts=facts, **result)


if __name__ == '__main__':
    main()
