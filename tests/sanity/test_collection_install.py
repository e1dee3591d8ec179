"""The collection as Galaxy and AWX users get it: built into a tarball, installed into an empty
directory, and run from there (not from the checkout) — setup, backup, archive read back with borg."""
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def run(argv, **kw):
    proc = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=600, **kw)
    assert proc.returncode == 0, f"{argv} rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_built_collection_installs_and_backs_up(tmp_path):
    dist, installed, work = tmp_path / "dist", tmp_path / "collections", tmp_path / "work"
    for d in (dist, installed, work):
        d.mkdir()
    run([VENV_BIN / "ansible-galaxy", "collection", "build", "--output-path", dist, REPO])
    tarballs = list(dist.glob("borgfleet-backup-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    listing = run(["tar", "tzf", tarballs[0]]).stdout.split()
    # What users get: plugins, roles, playbooks; never the service, the tests or the venv.
    assert "plugins/modules/borg_archive.py" in listing and "playbooks/backup.yml" in listing
    assert not [n for n in listing if n.startswith(("ui/", "tests/", ".venv", "bench/"))]
    # No ansible.cfg of the checkout and only the installed collection on the path (the checkout's
    # collections/ would count as "already installed"): playbooks run by FQCN from the installed copy.
    env = dict(os.environ, ANSIBLE_CONFIG=str(work / "none.cfg"), ANSIBLE_COLLECTIONS_PATH=str(installed),
               ANSIBLE_ROLES_PATH=str(work), ANSIBLE_NOCOLOR="1")
    run([VENV_BIN / "ansible-galaxy", "collection", "install", "-p", installed, tarballs[0]], cwd=work, env=env)
    assert (installed / "ansible_collections/borgfleet/backup/MANIFEST.json").is_file()

    data = work / "data"
    data.mkdir()
    (data / "hello.txt").write_text("from the installed collection\n")
    pool = work / "repos"
    passphrase = "installed collection pw"
    inventory = {"all": {"children": {"backup_servers": {"hosts": {}}, "clients": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "borgfleet_backup_server": "local", "borgfleet_local_pool_path": str(pool),
        "borgfleet_borg_base_dir": str(work / "borg-base"),
        "borgfleet_backups": [{"name": "data", "paths": [str(data)], "passphrase": passphrase}]}}}}}}
    (work / "hosts.yml").write_text(yaml.safe_dump(inventory))
    for playbook in ("borgfleet.backup.setup", "borgfleet.backup.backup"):
        out = run([VENV_BIN / "ansible-playbook", "-i", "hosts.yml", playbook], cwd=work, env=env).stdout
        assert "failed=0" in out
    borg_env = dict(os.environ, BORG_PASSPHRASE=passphrase, BORG_BASE_DIR=str(work / "borg-base"))
    repo = pool / "localhost" / "data"
    archives = run(["borg", "list", "--short", repo], env=borg_env).stdout.split()
    assert len(archives) == 1 and archives[0].startswith("data-")
    restored = work / "restored"
    restored.mkdir()
    run(["borg", "extract", f"{repo}::{archives[0]}"], env=borg_env, cwd=restored)
    assert (restored / str(data).lstrip("/") / "hello.txt").read_text() == "from the installed collection\n"
