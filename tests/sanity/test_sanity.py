"""ansible-test sanity (compile, import, validate-modules, pep8, ansible-doc, runtime-metadata) must pass."""
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def test_ansible_test_sanity_passes():
    proc = subprocess.run([os.path.join(HERE, 'run')], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'Running sanity test "validate-modules"' in proc.stdout
