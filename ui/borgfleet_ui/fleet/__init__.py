"""Fleet operations shared by the REST API, the pages, the CLI and the scheduler, one module per
area: servers, pools, backup_jobs, archives, archive_index (the archive index), restores (browse,
versions, restore runs), recovery (instant recovery sessions), probe (the add-server wizard's Test
connection), facts (servers' stats and capabilities), runs (the jobs table), settings, users, metrics
(what /metrics reports), wizard (the backup wizard's presets); each list area has a LISTING (how it
sorts and filters: common.Listing); common holds the errors callers turn
into responses (Invalid 400, Forbidden 403, NotFound 404) and field checks.

What a backup, pool, retention, name or host is: the collection's contract (contract.py), never
re-stated here. Only what is the service's own lives in these modules: no stored database
password, one database per job, schedules, time zones, who may change what.
"""
from . import (archive_index, archives, backup_jobs, facts, metrics, pools, probe, recovery, restores,  # noqa: F401
               runs, servers, settings, users)  # (the areas)
from . import wizard  # noqa: F401  (the backup wizard's presets and choices)
from .common import Forbidden, Invalid, NotFound, page_args  # noqa: F401  (what every caller needs)
