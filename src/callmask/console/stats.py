"""Numbers for the console's dashboard.

Two sources, labelled apart on the page because they measure different things:
- the CDRs of the last hour, per minute (calls, answered, mean post-dial delay as the
  caller perceived it: INVITE to first ringing, routing callback included), for the
  account or, for the operator, every account; one GROUP BY over the
  ``(account_id, invited_at)`` index;
- this node's own Prometheus objects (``callmask.calls.metrics``), read through the
  registry's public ``get_sample_value``: calls up now, calls started and ended by
  status since the process started, and the post-dial delay callmask itself adds
  (callback excluded) as a histogram. They cover every account, so only the operator
  sees them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy import Integer, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from callmask.calls import metrics as call_metrics
from callmask.store.models import CallRecord

WINDOW_MINUTES = 60
END_STATUSES = ("answered", "busy", "no answer", "failed", "congestion")
PDD_METRIC = "callmask_post_dial_delay_seconds"


@dataclass(frozen=True, slots=True)
class MinuteSeries:
    """Per minute of the window, oldest first; ``minutes`` are Unix seconds."""

    minutes: list[int]
    calls: list[int]
    answered: list[int]
    pdd_ms: list[float | None]

    @property
    def total_calls(self) -> int:
        return sum(self.calls)

    @property
    def answer_ratio(self) -> float | None:
        return sum(self.answered) / self.total_calls if self.total_calls else None

    @property
    def mean_pdd_ms(self) -> float | None:
        weighted = [(p, c) for p, c in zip(self.pdd_ms, self.calls, strict=True) if p is not None]
        count = sum(c for _, c in weighted)
        return sum(p * c for p, c in weighted) / count if count else None


def _expressions(dialect: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """(minute bucket as Unix seconds / 60, ringing - invited in seconds) per dialect:
    SQLite keeps times as text, PostgreSQL as timestamps."""
    invited, ringing = CallRecord.invited_at, CallRecord.ringing_at
    if dialect == "sqlite":
        # ``//``: SQLAlchemy renders ``/`` as true division, and calls in one minute
        # but different seconds would each get a bucket of their own.
        bucket = cast(func.strftime("%s", invited), Integer) // 60
        pdd = (func.julianday(ringing) - func.julianday(invited)) * 86400.0
    else:
        bucket = cast(func.floor(func.extract("epoch", invited) / 60), Integer)
        pdd = func.extract("epoch", ringing - invited)
    return bucket, pdd


async def minute_series(
    session: AsyncSession, account_id: str | None, *, now: dt.datetime | None = None
) -> MinuteSeries:
    end = now or dt.datetime.now(dt.UTC)
    last_minute = int(end.timestamp()) // 60
    first_minute = last_minute - WINDOW_MINUTES + 1
    since = dt.datetime.fromtimestamp(first_minute * 60, dt.UTC)
    bucket, pdd = _expressions(session.get_bind().dialect.name)
    query = (
        select(
            bucket.label("minute"),
            func.count(),
            func.sum(case((CallRecord.answered_at.is_not(None), 1), else_=0)),
            func.avg(pdd),
        )
        .where(CallRecord.invited_at >= since)
        .group_by(bucket)
    )
    if account_id is not None:
        query = query.where(CallRecord.account_id == account_id)
    rows = {int(m): (int(c), int(a or 0), p) for m, c, a, p in await session.execute(query)}
    minutes = list(range(first_minute, last_minute + 1))
    calls, answered, pdd_ms = [], [], []
    for minute in minutes:
        count, answered_count, mean_pdd_s = rows.get(minute, (0, 0, None))
        calls.append(count)
        answered.append(answered_count)
        pdd_ms.append(None if mean_pdd_s is None else round(float(mean_pdd_s) * 1000, 1))
    return MinuteSeries([m * 60 for m in minutes], calls, answered, pdd_ms)


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    active_calls: int
    calls_started: int
    ended_by_status: dict[str, int]
    pdd_count: int
    pdd_mean_ms: float | None
    # (upper bound in ms, calls at or under it), cumulative as Prometheus keeps them.
    pdd_buckets: list[tuple[str, int]] = field(default_factory=list)

    @property
    def answer_ratio(self) -> float | None:
        ended = sum(self.ended_by_status.values())
        return self.ended_by_status.get("answered", 0) / ended if ended else None


def _samples(metric: MetricWrapperBase) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for m in metric.collect() for s in m.samples]


def _value(metric: MetricWrapperBase, name: str, **labels: str) -> float:
    for sample_name, sample_labels, value in _samples(metric):
        if sample_name == name and sample_labels == labels:
            return value
    return 0.0


def node_metrics() -> NodeMetrics:
    pdd = call_metrics.POST_DIAL_DELAY_SECONDS
    count = int(_value(pdd, f"{PDD_METRIC}_count"))
    total_s = _value(pdd, f"{PDD_METRIC}_sum")
    buckets: list[tuple[str, int]] = []
    for name, labels, value in _samples(pdd):
        if name == f"{PDD_METRIC}_bucket":
            bound = labels["le"]
            shown = "+Inf" if bound == "+Inf" else f"{float(bound) * 1000:g}"
            buckets.append((shown, int(value)))
    ended = call_metrics.CALLS_ENDED
    return NodeMetrics(
        active_calls=int(_value(call_metrics.ACTIVE_CALLS, "callmask_active_calls")),
        calls_started=int(_value(call_metrics.CALLS_STARTED, "callmask_calls_started_total")),
        ended_by_status={
            s: int(_value(ended, "callmask_calls_total", status=s)) for s in END_STATUSES
        },
        pdd_count=count,
        pdd_mean_ms=round(total_s / count * 1000, 2) if count else None,
        pdd_buckets=buckets,
    )
