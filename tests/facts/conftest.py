"""server_facts / pool_info and the stats playbooks run for real (tests/lib/playbook.py runs them)."""
import pytest
import yaml


@pytest.fixture
def localhost_inventory(tmp_path):
    """This machine as the one managed host, over the local connection, with Debian's python3."""
    path = tmp_path / "localhost.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}}}}))
    return path
