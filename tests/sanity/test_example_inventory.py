"""inventory/example must stay valid: the vault decrypts with its documented demo password and every
client's backups pass the role borg_common (its typed argument spec, then the resolution the roles use)
(a broken example is a broken README)."""
import json
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_example_inventory_resolves_for_every_client():
    play = [{"hosts": "clients", "connection": "local", "gather_facts": False,
             "roles": ["borgfleet.backup.borg_common"],
             "tasks": [{"name": "show", "ansible.builtin.debug": {
                 "msg": "resolved {{ _borgfleet_public_backups | map(attribute='name') | join(',') }}"}}]}]
    with tempfile.TemporaryDirectory() as tmp:
        playbook = os.path.join(tmp, "play.yml")
        with open(playbook, "w") as f:
            json.dump(play, f)
        proc = subprocess.run(
            [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', 'inventory/example',
             '--vault-password-file', 'inventory/example/.vault-pass.example',
             '-e', 'ansible_python_interpreter=/usr/bin/python3', playbook],
            cwd=ROOT, env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1'),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert 'web1.example.org' in proc.stdout and 'db1.example.org' in proc.stdout
    assert proc.stdout.count('msg: resolved ') == 2, proc.stdout
    assert 'msg: resolved etc,www\n' in proc.stdout and 'msg: resolved etc,mariadb-dumps,mariadb,pgdata\n' in proc.stdout
    assert 'change-me' not in proc.stdout  # decrypted passphrases are not what the run prints
