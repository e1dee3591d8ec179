"""The storage pools page (fleet/pools.py): every analysed pool with its capacity, usage, warning,
growth and "full in N days", its repositories with borg's figures, and Analyse now."""
from flask import g, render_template

from . import fleet
from .auth import role
from .db import get_db, get_redis
from .views import bp, to_job

SPARK_W, SPARK_H = 240, 48


def sparkline(samples):
    """The SVG points of used bytes over time, scaled to SPARK_W x SPARK_H (y from 0 to the capacity,
    so the line's height is how full the pool is); '' with fewer than two samples."""
    pts = [(s["sampled_at"].timestamp(), s["used_bytes"], s["total_bytes"]) for s in samples
           if s["used_bytes"] is not None and s["total_bytes"]]
    if len(pts) < 2:
        return ""
    t0, t1 = pts[0][0], pts[-1][0]
    top = max(total for _, _, total in pts)
    span = (t1 - t0) or 1
    return " ".join(f"{(t - t0) / span * SPARK_W:.1f},{SPARK_H - used / top * SPARK_H:.1f}" for t, used, _ in pts)


@bp.get("/pools")
@role("viewer")
def pools_page():
    db = get_db()
    pools = fleet.pools.usage(db)
    for p in pools:
        p["spark"] = sparkline(fleet.pools.history(db, p["server_id"], p["name"]))
    return render_template("pools.html", pools=pools, defined=fleet.pools.list_pools(db),
                           warn_percent=fleet.pools.warn_percent(db), spark=(SPARK_W, SPARK_H))


@bp.post("/pools/analyze")
@role("operator")
def pools_analyze():
    return to_job(fleet.pools.analyze(get_db(), get_redis(), g.user["username"]))
