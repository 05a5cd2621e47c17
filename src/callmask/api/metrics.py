"""``GET /metrics``: Prometheus text exposition of prometheus-client's default registry
(call path, webhooks, process), behind the operator key like ``/admin``.

The webhook outbox gauges are read from the store on each scrape, so they describe
the outbox every node shares, not one worker's view.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from callmask.api.deps import AdminDep, ServicesDep
from callmask.store.models import utcnow
from callmask.webhooks import metrics
from callmask.webhooks.repository import Deliveries, as_utc

router = APIRouter(tags=["metrics"], dependencies=[AdminDep])


# Documented as text/plain (the exposition format), not the JSON FastAPI assumes.
@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus_metrics(services: ServicesDep) -> Response:
    async with services.database.session() as session:
        pending, oldest_created_at = await Deliveries(session).pending_stats()
    metrics.PENDING.set(pending)
    age_s = 0.0
    if oldest_created_at is not None:
        age_s = max(0.0, (utcnow() - as_utc(oldest_created_at)).total_seconds())
    metrics.OLDEST_PENDING_AGE.set(age_s)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
