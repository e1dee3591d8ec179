"""The hardening tier (issue 10): attacks and faults, each asserting the clear error and that
nothing was lost. The service's fixtures (throwaway MariaDB database, private Redis db, real RQ
workers) come from the root conftest, shared with tests/ui; the integration fleet (a backup server
and two clients on loopback sshd) is a second instance of tests/integration's, in its own directory."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))   # uilib, as tests/ui does

from tests.integration.conftest import backup_run, fleet, setup_run  # noqa: E402,F401
