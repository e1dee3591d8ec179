"""inventory/example must stay valid: the vault decrypts with its documented demo password and every
client's backups resolve with the same filter the roles use (a broken example is a broken README)."""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_example_inventory_resolves_for_every_client():
    expr = ("{{ borgfleet_backups | borgfleet.backup.backups_problem(inventory_hostname, hostvars, "
            "groups['backup_servers'], None, '/var/lib/borgfleet/repos', borgfleet_backup_server | default(None)) "
            "| default('ok', true) }} {{ borgfleet_backups | map(attribute='name') | join(',') }}")
    proc = subprocess.run(
        [os.path.join(ROOT, '.venv', 'bin', 'ansible'), '-i', 'inventory/example', 'clients',
         '--vault-password-file', 'inventory/example/.vault-pass.example', '-c', 'local',
         '-e', 'ansible_python_interpreter=/usr/bin/python3', '-m', 'ansible.builtin.debug', '-a', json.dumps({'msg': expr})],
        cwd=ROOT, env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg')),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert 'web1.example.org | SUCCESS' in proc.stdout and 'db1.example.org | SUCCESS' in proc.stdout
    assert proc.stdout.count('msg: ok ') == 2, proc.stdout
    assert 'mariadb-dumps,mariadb,pgdata' in proc.stdout
    assert 'change-me' not in proc.stdout  # decrypted passphrases are not what the check prints
