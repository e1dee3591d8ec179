"""GET /metrics: the Prometheus text format (docs/service.md, Monitoring). What it reports is
fleet/metrics.py's; this module only answers the scrape."""
from flask import Blueprint, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .auth import allow_networks, role
from .db import get_db, get_redis
from .fleet.metrics import FleetCollector

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@role("viewer")
@allow_networks("METRICS_ALLOW")
def scrape():
    # A registry per scrape: the values are read now, none is kept in the process.
    registry = CollectorRegistry(auto_describe=False)
    collector = FleetCollector(get_db(), get_redis())
    registry.register(collector)
    return Response(collector.backups_text().encode() + generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
