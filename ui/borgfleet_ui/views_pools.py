"""The storage pools page (fleet/pools.py): every analysed pool with its capacity, usage, warning,
growth and "full in N days", its repositories with borg's figures, and Analyse now."""
from flask import abort, g, render_template, request

from . import fleet
from .auth import role
from .db import get_db, get_redis
from .views import bp, to_job

SPARK_W, SPARK_H = 240, 48
# A fleet's pools hold thousands of repositories: a card shows its largest, a pool's own page all of
# them, a page at a time.
CARD_REPOSITORIES, REPOSITORIES_PAGE = 5, 100


def sparkline(samples):
    """The SVG points of used bytes over time (points of fleet/pools.py history), scaled to SPARK_W x
    SPARK_H (y from 0 to the capacity, so the line's height is how full the pool is); '' with fewer
    than two samples."""
    pts = [(s["t"], s["used_bytes"], s["total_bytes"]) for s in samples
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
    """Every pool with its CARD_REPOSITORIES largest repositories, or (server_id and pool) one pool
    with all of its repositories, largest first, REPOSITORIES_PAGE a page (`start`)."""
    db = get_db()
    server_id, name = request.args.get("server_id", type=int), request.args.get("pool")
    one = bool(server_id and name)
    pools = fleet.pools.usage(db, server_id if one else None, top=None if one else CARD_REPOSITORIES)
    start, next_start = 0, None
    if one:
        pools = [p for p in pools if p["name"] == name]
        if not pools:
            abort(404)
        start = max(0, request.args.get("start", 0, type=int))
        repos = fleet.pools.largest(pools[0]["repositories"], None)
        pools[0]["repositories"] = repos[start:start + REPOSITORIES_PAGE]
        next_start = start + REPOSITORIES_PAGE if start + REPOSITORIES_PAGE < len(repos) else None
    history = fleet.pools.history(db, server_id if one else None)
    for p in pools:
        p["spark"] = sparkline(history.get((p["server_id"], p["name"]), []))
    return render_template("pools.html", pools=pools, one=one, start=start, next_start=next_start,
                           defined=fleet.pools.list_pools(db), warn_percent=fleet.pools.warn_percent(db),
                           spark=(SPARK_W, SPARK_H))


@bp.post("/pools/analyze")
@role("operator")
def pools_analyze():
    return to_job(fleet.pools.analyze(get_db(), get_redis(), g.user["username"]))
