"""The changelog as Galaxy users expect it: antsibull-changelog fragments and changelog.yaml lint clean,
and CHANGELOG.rst is what antsibull-changelog generates from them for the version galaxy.yml declares."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def run(argv, cwd):
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{argv} rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_antsibull_changelog_lint_passes():
    out = run([VENV_BIN / "antsibull-changelog", "lint"], REPO)
    assert out.strip() == "", out   # lint prints one line per problem


def test_changelog_covers_the_galaxy_version_and_is_generated(tmp_path):
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    changes = yaml.safe_load((REPO / "changelogs/changelog.yaml").read_text())
    assert version in changes["releases"], f"galaxy.yml says {version}: release it (antsibull-changelog release)"
    assert changes["releases"][version]["changes"].get("release_summary")
    # Generating again from changelog.yaml gives the committed CHANGELOG.rst (nobody edited it by hand).
    copy = tmp_path / "c"
    shutil.copytree(REPO / "changelogs", copy / "changelogs")
    shutil.copy(REPO / "galaxy.yml", copy)
    run([VENV_BIN / "antsibull-changelog", "generate"], copy)
    assert (copy / "CHANGELOG.rst").read_text() == (REPO / "CHANGELOG.rst").read_text()
    assert f"v{version}\n" in (REPO / "CHANGELOG.rst").read_text()


def test_changelog_lint_sees_a_bad_fragment(tmp_path):
    """Positive control: the lint above can fail (an unknown section in a fragment)."""
    copy = tmp_path / "c"
    shutil.copytree(REPO / "changelogs", copy / "changelogs")
    shutil.copy(REPO / "galaxy.yml", copy)
    (copy / "changelogs/fragments/bad.yml").write_text("new_stuff:\n  - not a section\n")
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    proc = subprocess.run([str(VENV_BIN / "antsibull-changelog"), "lint"], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "bad.yml" in proc.stdout + proc.stderr and "new_stuff" in proc.stdout + proc.stderr
