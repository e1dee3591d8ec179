"""The hardening tier (issue 10): attacks and faults, each asserting the clear error and that
nothing was lost. It reuses the service's fixtures (throwaway MariaDB database, private Redis db,
real RQ workers) and the integration fleet (a backup server and two clients on loopback sshd)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))   # uilib, as tests/ui does

from tests.ui.conftest import api, app, client, db, redis, start_worker, ui_env, users  # noqa: E402,F401
from tests.integration.conftest import backup_run, fleet, setup_run  # noqa: E402,F401
