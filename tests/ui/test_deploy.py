"""Production pieces: the systemd units parse cleanly with systemd's own verifier, and the
sudoers snippet parses with visudo and allows exactly the commands the workers page runs."""
import shutil
import subprocess
import sys

import pytest

from borgfleet_ui import workers
from uilib import REPO, UI


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_units_verify(tmp_path):
    names = ["borgfleet-web.service", "borgfleet-scheduler.service", "borgfleet-workers.target"]
    for name in names + ["borgfleet-worker@.service"]:
        text = (UI / "systemd" / name).read_text().replace("@ROOT@", str(REPO)).replace("@USER@", "root")
        assert "@ROOT@" not in text and "@USER@" not in text
        (tmp_path / name.replace("@.", "@1.")).write_text(text)
    files = [str(tmp_path / n) for n in names + ["borgfleet-worker@1.service"]]
    p = subprocess.run(["systemd-analyze", "verify", *files], capture_output=True, text=True,
                       env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"})
    problems = [line for line in (p.stdout + p.stderr).splitlines() if str(tmp_path) in line]
    assert p.returncode == 0 and problems == [], p.stdout + p.stderr


def test_sudoers_snippet_is_exact_and_valid(tmp_path):
    out = subprocess.run([sys.executable, "-m", "borgfleet_ui", "sudoers", "--user", "bfweb", "--workers", "3"],
                         capture_output=True, text=True, env={"PYTHONPATH": str(UI), "PATH": "/usr/bin:/bin"},
                         check=True).stdout
    f = tmp_path / "borgfleet"
    f.write_text(out)
    assert subprocess.run(["visudo", "-cf", str(f)], capture_output=True).returncode == 0
    allowed = {c.strip().rstrip(", \\") for c in out.split("=", 1)[1].split("\n") if c.strip().startswith("/")}
    expected = {" ".join(workers.systemctl_argv(a, i)) for a in ("start", "stop", "restart") for i in (1, 2, 3)}
    expected |= {" ".join(workers.journalctl_argv(i)) for i in (1, 2, 3)}
    assert allowed == expected
    assert "bfweb ALL=(root) NOPASSWD: BORGFLEET_WORKERS" in out
    assert "*" not in out   # no wildcards: nothing beyond these commands
