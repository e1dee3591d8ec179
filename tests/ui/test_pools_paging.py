"""The pools page at fleet scale (views_pools.py): a card lists its pool's largest repositories and
links to the pool's own page, which lists them all, largest first, a page at a time."""
import re

from borgfleet_ui import db as dbm
from borgfleet_ui.fleet import pools
from borgfleet_ui.views_pools import CARD_REPOSITORIES, REPOSITORIES_PAGE


def test_a_card_shows_the_largest_and_the_pool_page_pages_them_all(api, db):
    bs = api("admin").post("/api/servers", json={"name": "pgn-bs", "role": "backup_server", "address": "192.0.2.41",
                                                 "pools": [{"name": "main", "path": "/srv/pgn"}]}).json
    n = REPOSITORIES_PAGE + 7
    # An analysis as analyze_pools.yml reports it, recorded by the service's own recorder; one
    # repository unmeasured (it lists last).
    repos = [{"client": f"pgn-c{i:03d}", "backup": "files", "path": f"/srv/pgn/pgn-c{i:03d}/files", "exists": True,
              "size_on_disk_bytes": None if i == 5 else (i * 7919) % 1000 + 1} for i in range(n)]
    try:
        assert pools.record_analysis(db, {"pgn-bs": {"warn_percent": 80, "pools": [
            {"name": "main", "path": "/srv/pgn", "exists": True, "total_bytes": 10 ** 6, "used_bytes": 10 ** 5,
             "free_bytes": 9 * 10 ** 5, "used_percent": 10.0, "repositories_size_bytes": 10 ** 5,
             "repositories": repos}]}}) == 1
        by_size = [r["client"] for r in sorted(repos, key=lambda r: -(r["size_on_disk_bytes"] or -1))]
        assert by_size[-1] == "pgn-c005"
        viewer = api("viewer")

        def card(html):
            part = html.split('data-server="pgn-bs"', 1)[1].split('class="card mb-4', 1)[0]
            return re.findall(r'<tr data-client="([^"]+)"', part), part
        shown, part = card(viewer.get("/pools").get_data(as_text=True))
        assert shown == by_size[:CARD_REPOSITORIES]
        link = re.search(r'class="pool-all-repositories" href="([^"]+)"', part).group(1).replace("&amp;", "&")
        assert f">All {n} repositories<" in part
        first = viewer.get(link).get_data(as_text=True)
        shown, part = card(first)
        assert shown == by_size[:REPOSITORIES_PAGE] and first.count('class="card mb-4') == 1
        nxt = re.search(r'class="btn btn-sm btn-outline-secondary next-page" href="([^"]+)"', part).group(1)
        shown, part = card(viewer.get(nxt.replace("&amp;", "&")).get_data(as_text=True))
        assert shown == by_size[REPOSITORIES_PAGE:] and "next-page" not in part and "first-page" in part
        assert viewer.get(f"/pools?server_id={bs['id']}&pool=nope").status_code == 404
        # The API still answers every repository.
        (p,) = [p for p in viewer.get("/api/storage-pools/usage").json["items"] if p["server_name"] == "pgn-bs"]
        assert len(p["repositories"]) == p["repository_count"] == n
    finally:
        dbm.execute(db, "DELETE FROM pool_samples WHERE server_id=%s", (bs["id"],))
        api("admin").delete(f"/api/servers/{bs['id']}")
