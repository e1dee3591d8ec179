#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: borg_server_keys
short_description: A backup server's authorized_keys - client lines and temporary grants
description:
  - Writes the borg user's authorized_keys on a backup server, one forced-command line per client
    (C(command="borg serve --restrict-to-path <pool>/<client> ...",restrict <key>)), and temporary grants
    that let a client's key read one more repository (another client's, to restore onto this client).
  - A grant is a line above the client's own line, with the client's own directories, the granted
    repository and C(expiry-time). sshd uses the first matching line that has not expired, so the grant
    ends at the latest when it expires, even if nothing revokes it. Each grant is recorded in the file.
  - Every change happens under an exclusive lock (C(<path>.lock)), so that setup and grants or
    revocations running at the same time never lose each other's lines. Expired grants are dropped at
    each change. The file is checked with C(ssh-keygen -l) before it replaces the old one.
version_added: 0.2.0
author:
  - BorgFleet developers (@borgfleet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  path:
    description:
      - The authorized_keys file of the borg user.
    type: path
    required: true
  owner:
    description:
      - The borg user, who owns the file (with its primary group, mode C(0600)). Default the current owner.
    type: str
  clients:
    description:
      - The clients' lines (setup), replacing all client lines of the file; live grants are kept.
      - Each entry has C(client), C(public_key) (validated; an entry without a key gets no line) and
        C(client_dirs); other keys are ignored.
    type: list
    elements: dict
  grant:
    description:
      - Add a grant. Its id is returned in RV(grant_id).
    type: dict
    suboptions:
      client:
        description: Inventory name of the client that is granted access.
        type: str
        required: true
      public_key:
        description: The key that client presents (one line, no options).
        type: str
        required: true
      paths:
        description: Repository paths it may read besides its own directories.
        type: list
        elements: str
        required: true
      hours:
        description: Hours until the grant expires (at most 168).
        type: float
        default: 6
  revoke:
    description:
      - Remove the grant with this id (already gone or expired is fine).
    type: str
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reports what would change without writing.
  diff_mode:
    support: full
  idempotent:
    description: The same O(clients) again changes nothing; each O(grant) adds a new grant.
    support: partial
'''

EXAMPLES = r'''
- name: Let web2 read web1's etc repository for this restore
  borgfleet.backup.borg_server_keys:
    path: /var/lib/borg/.ssh/authorized_keys
    owner: borg
    grant:
      client: web2
      public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJvcmdmbGVldC1leGFtcGxlLWtleS0wMDAwMDAwMA borgfleet@web2
      paths: [/srv/borg/web1/etc]
      hours: 6
  register: grant

- name: Revoke it
  borgfleet.backup.borg_server_keys:
    path: /var/lib/borg/.ssh/authorized_keys
    revoke: "{{ grant.grant_id }}"
'''

RETURN = r'''
grant_id:
  description: Id of the grant added (null without O(grant)).
  returned: always
  type: str
expires:
  description: When that grant expires, UTC, as sshd's C(expiry-time) (C(YYYYMMDDHHMMSSZ)).
  returned: always
  type: str
grants:
  description: The live grants after the change.
  returned: always
  type: list
  elements: dict
  contains:
    client: {description: "Client granted access.", type: str}
    id: {description: "Grant id.", type: str}
    expires: {description: "UTC expiry (YYYYMMDDHHMMSSZ).", type: str}
    path: {description: "Repository path granted.", type: str}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgfleet.backup.plugins.module_utils import authorized_keys
from ansible_collections.borgfleet.backup.plugins.module_utils.contract import ContractError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            owner=dict(type='str'),
            clients=dict(type='list', elements='dict'),
            grant=dict(type='dict', options=dict(
                client=dict(type='str', required=True),
                public_key=dict(type='str', required=True),
                paths=dict(type='list', elements='str', required=True),
                hours=dict(type='float', default=6),
            )),
            revoke=dict(type='str'),
        ),
        mutually_exclusive=[('clients', 'grant', 'revoke')],
        supports_check_mode=True,
    )
    p = module.params

    def sshd_reads(tmp):
        with open(tmp) as f:
            if not any(line.strip() and not line.startswith('#') for line in f):
                return  # ssh-keygen refuses a file without keys; an empty one is fine for sshd
        rc, out, err = module.run_command(['ssh-keygen', '-l', '-f', tmp])
        if rc != 0:
            raise ContractError('ssh-keygen -l refuses the new authorized_keys: %s' % (err or out).strip())

    try:
        clients = None
        if p['clients'] is not None:
            clients = [{'client': str(c.get('client')), 'public_key': c.get('public_key'),
                        'client_dirs': list(c.get('client_dirs') or [])} for c in p['clients']]
            for c in clients:
                if c['public_key']:
                    c['public_key'] = authorized_keys.validate_public_key(c['public_key'], 'client %r' % c['client'])
        result = authorized_keys.edit(p['path'], owner=p['owner'], clients=clients, grant=p['grant'],
                                      revoke=p['revoke'], check_mode=module.check_mode, validate=sshd_reads)
    except (ContractError, KeyError) as e:
        module.fail_json(msg=str(e))
    out = dict(changed=result['changed'], grant_id=result['grant_id'], expires=result['expires'],
               grants=result['grants'])
    if module._diff:
        out['diff'] = dict(before=result['before'], after=result['after'],
                           before_header=p['path'], after_header=p['path'])
    module.exit_json(**out)


if __name__ == '__main__':
    main()
