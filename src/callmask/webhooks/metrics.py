"""Prometheus metrics of webhook delivery.

They live in prometheus-client's default registry, like the call path's
(``calls/metrics.py``), so ``/metrics`` serves one registry with everything. They are
defined once, at import, so building several apps in one process (tests do) never
registers a name twice. The two gauges are set from the store on each scrape
(``api/metrics.py``), so every node reports the shared outbox rather than only what
its own worker saw; the counter counts this process's attempts.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from callmask.webhooks.retry import AttemptOutcome

ATTEMPTS = Counter(
    "callmask_webhook_attempts",
    "Webhook HTTP attempts made by this process, by outcome.",
    ["outcome"],
)
PENDING = Gauge(
    "callmask_webhook_pending",
    "Webhook events not yet delivered and not dead.",
)
OLDEST_PENDING_AGE = Gauge(
    "callmask_webhook_oldest_pending_age_seconds",
    "Age of the oldest pending webhook event (0 when none is pending).",
)

# Every outcome is exported from the start, so a rate() over it has a zero to begin with.
for _outcome in AttemptOutcome:
    ATTEMPTS.labels(outcome=_outcome.value)
