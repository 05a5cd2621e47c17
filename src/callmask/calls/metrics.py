"""Prometheus metrics of the call path (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_CALLS = Gauge("callmask_active_calls", "Calls in progress")
CALLS_STARTED = Counter(
    "callmask_calls_started_total", "Calls started (inbound and placed); its rate is the CPS"
)
CALLS_ENDED = Counter("callmask_calls_total", "Calls ended, by status", ["status"])
# Every status exists from the start, so rate() has a zero to start from.
for _status in ("answered", "busy", "no answer", "failed", "congestion"):
    CALLS_ENDED.labels(status=_status)
CALLS_REFUSED = Counter(
    "callmask_calls_refused_total", "INVITEs refused before routing, by reason", ["reason"]
)
CALLBACK_SECONDS = Histogram(
    "callmask_routing_callback_seconds",
    "Time the customer's routing endpoint took to answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
CALLBACK_FAILURES = Counter(
    "callmask_routing_callback_failures_total", "Routing exchanges without a usable answer"
)
POST_DIAL_DELAY_SECONDS = Histogram(
    "callmask_post_dial_delay_seconds",
    "Delay callmask adds between the caller's INVITE and the outbound INVITE, callback excluded",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
SIP_STRAY_RESPONSES = Counter(
    "callmask_sip_stray_responses_total", "SIP responses that matched no transaction"
)
RTPENGINE_UP = Gauge(
    "callmask_rtpengine_up", "1 when the media relay answered its last health check, else 0"
)
