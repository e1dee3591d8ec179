"""An AWX execution environment for this collection: ansible-builder (no container engine needed for
`create`) turns a definition that installs the built collection tarball into a build context, and the
context's own introspection step, run on the collection installed from that context, finds what
meta/execution-environment.yml declares (the inventory plugin's Python packages, ssh and borg)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def run(argv, env_extra=None, **kw):
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1", **(env_extra or {}))
    proc = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=600, env=env, **kw)
    assert proc.returncode == 0, f"{argv} rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_ansible_builder_context_installs_the_tarball_and_finds_its_requirements(tmp_path):
    dist, ee, ctx = tmp_path / "dist", tmp_path / "ee", tmp_path / "context"
    dist.mkdir()
    ee.mkdir()
    run([VENV_BIN / "ansible-galaxy", "collection", "build", "--output-path", dist, REPO])
    (tarball,) = dist.glob("borgfleet-backup-*.tar.gz")
    # What an AWX admin writes: a base image, the collection from its tarball (copied into the context,
    # installed in the galaxy stage whose working directory is /build).
    (ee / "requirements.yml").write_text(yaml.safe_dump(
        {"collections": [{"name": f"collections/{tarball.name}", "type": "file"}]}))
    (ee / "execution-environment.yml").write_text(yaml.safe_dump({
        "version": 3,
        "images": {"base_image": {"name": "quay.io/fedora/fedora:41"}},
        "dependencies": {
            "ansible_core": {"package_pip": "ansible-core==2.18.12"},
            "ansible_runner": {"package_pip": "ansible-runner==2.4.1"},
            "galaxy": "requirements.yml",
        },
        "additional_build_files": [{"src": str(tarball), "dest": "collections"}],
        "additional_build_steps": {"prepend_galaxy": ["COPY _build/collections/ /build/collections/"]},
    }))
    run([VENV_BIN / "ansible-builder", "create", "-f", ee / "execution-environment.yml", "-c", ctx,
         "--output-filename", "Containerfile"])

    containerfile = (ctx / "Containerfile").read_text()
    assert "COPY _build/collections/ /build/collections/" in containerfile
    assert "ansible-galaxy collection install" in containerfile and "-r requirements.yml" in containerfile
    assert "introspect.py introspect" in containerfile
    assert (ctx / "_build/collections" / tarball.name).read_bytes() == tarball.read_bytes()

    # The galaxy stage, then the builder stage's introspection, as the build would run them.
    build = ctx / "_build"
    installed = tmp_path / "usr_share_ansible_collections"
    # No ansible.cfg of the checkout: its collections path already holds borgfleet.backup (the checkout).
    (tmp_path / "none.cfg").write_text("")
    run([VENV_BIN / "ansible-galaxy", "collection", "install", "-r", "requirements.yml", "--collections-path", installed],
        cwd=build, env_extra={"ANSIBLE_CONFIG": str(tmp_path / "none.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(installed)})
    assert (installed / "ansible_collections/borgfleet/backup/MANIFEST.json").is_file()
    out = run([sys.executable, ctx / "_build/scripts/introspect.py", "introspect", installed,
               "--write-pip", tmp_path / "pip.txt", "--write-bindep", tmp_path / "bindep.txt"])
    found = yaml.safe_load(out)
    python = " ".join(found["python"]).lower()
    system = " ".join(found["system"])
    assert "pymysql" in python and "cryptography" in python, found
    # The checkout's requirements.txt (ansible-core, pytest: the test suite's pins) is not what an EE gets.
    assert "pytest" not in python and "ansible-runner" not in python, found
    for package in ("borgbackup", "openssh-client [platform:dpkg]", "openssh-clients [platform:rpm]", "fuse3"):
        assert package in system, (package, found)
    assert all("# from collection borgfleet.backup" in line for line in found["python"] + found["system"])

    # bindep picks the Debian names on this Debian host.
    listed = run([VENV_BIN / "bindep", "-l", "newline", "-f", tmp_path / "bindep.txt"]).split()
    assert {"openssh-client", "borgbackup", "fuse3"} <= set(listed) and "openssh-clients" not in listed


def test_meta_execution_environment_points_at_shipped_files():
    meta = yaml.safe_load((REPO / "meta/execution-environment.yml").read_text())
    assert meta["version"] == 1
    for key in ("python", "system"):
        assert (REPO / meta["dependencies"][key]).is_file()
    # galaxy.yml's build_ignore must not drop them from the tarball.
    ignored = yaml.safe_load((REPO / "galaxy.yml").read_text())["build_ignore"]
    assert not [p for p in ignored if p.strip("/") in ("meta", "meta/ee-requirements.txt", "meta/ee-bindep.txt")]
    assert shutil.which("ansible-builder", path=str(VENV_BIN))
