"""What happens after one webhook attempt: delivered, tried again later, or given up.

The schedule is data (``RETRY_SCHEDULE_S``): the n-th failed attempt waits
``schedule[n - 1]`` seconds; past the end the event is dead. With the default that is
7 retries over about 3.5 hours, enough to ride out the hour-long outage the issue asks
for. A ``Retry-After`` header (RFC 9110 section 10.2.3: delay-seconds or an HTTP-date)
may lengthen a wait up to an hour but never shorten it below the schedule, so a
receiver cannot make callmask hammer it.

Which answers are worth retrying: timeouts and connection errors (no answer), 408
Request Timeout, 429 Too Many Requests and every 5xx are the receiver's passing
trouble. Any other status is final: 2xx is delivered; 3xx is not followed (a redirect
could lead past the SSRF check to an internal address) and, like the other 4xx (410
Gone included), means the receiver will not take the event.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from email.utils import parsedate_to_datetime

RETRY_SCHEDULE_S: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 7200)

# Upper bound for a receiver's Retry-After: an hour keeps one answer from parking an
# event for days.
MAX_RETRY_AFTER_S = 3600.0

RETRYABLE_STATUS_CODES = frozenset({408, 429})


class AttemptOutcome(enum.StrEnum):
    """The result of one attempt, as stored in ``webhook_attempts.outcome``."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


def outcome_of_status(status_code: int) -> AttemptOutcome:
    """Classify an HTTP answer, before the schedule is consulted."""
    if 200 <= status_code < 300:
        return AttemptOutcome.DELIVERED
    if status_code in RETRYABLE_STATUS_CODES or 500 <= status_code < 600:
        return AttemptOutcome.RETRY
    return AttemptOutcome.DEAD


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds to wait according to a Retry-After value; None when absent or unreadable
    (an unreadable header is ignored rather than turning a retry into a failure)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate gives naive for "-0000"
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def retry_delay_s(
    attempt_count: int, schedule: Sequence[float], retry_after_s: float | None = None
) -> float | None:
    """How long to wait after ``attempt_count`` failed attempts; None means give up.

    ``retry_after_s`` is clamped to [schedule value, max(schedule value, 1 h)].
    """
    if attempt_count < 1 or attempt_count > len(schedule):
        return None
    delay_s = float(schedule[attempt_count - 1])
    if retry_after_s is not None:
        delay_s = max(delay_s, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay_s
