"""The retry policy as data: which answers are retried, for how long, and how a
receiver's Retry-After is honoured without letting it shorten or stretch too far."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime

import pytest

from callmask.webhooks.retry import (
    MAX_RETRY_AFTER_S,
    RETRY_SCHEDULE_S,
    AttemptOutcome,
    outcome_of_status,
    parse_retry_after,
    retry_delay_s,
)

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("status_code", "outcome"),
    [
        (200, AttemptOutcome.DELIVERED),
        (204, AttemptOutcome.DELIVERED),
        (299, AttemptOutcome.DELIVERED),
        (408, AttemptOutcome.RETRY),
        (429, AttemptOutcome.RETRY),
        (500, AttemptOutcome.RETRY),
        (503, AttemptOutcome.RETRY),
        (599, AttemptOutcome.RETRY),
        (301, AttemptOutcome.DEAD),
        (302, AttemptOutcome.DEAD),
        (400, AttemptOutcome.DEAD),
        (401, AttemptOutcome.DEAD),
        (404, AttemptOutcome.DEAD),
        (410, AttemptOutcome.DEAD),
        (422, AttemptOutcome.DEAD),
    ],
)
def test_a_receiver_answer_is_delivered_retried_or_final(
    status_code: int, outcome: AttemptOutcome
) -> None:
    assert outcome_of_status(status_code) is outcome


def test_the_default_schedule_rides_out_an_hour_long_outage_then_gives_up() -> None:
    delays = [retry_delay_s(n, RETRY_SCHEDULE_S) for n in range(1, len(RETRY_SCHEDULE_S) + 2)]
    assert delays == [5, 30, 120, 600, 1800, 3600, 7200, None]
    assert sum(d for d in delays if d is not None) > 3600


def test_retry_after_in_seconds_lengthens_the_wait() -> None:
    assert retry_delay_s(1, RETRY_SCHEDULE_S, parse_retry_after("120", NOW)) == 120


def test_retry_after_never_shortens_the_schedule() -> None:
    assert retry_delay_s(3, RETRY_SCHEDULE_S, parse_retry_after("1", NOW)) == 120


def test_retry_after_is_capped_at_an_hour() -> None:
    assert retry_delay_s(1, RETRY_SCHEDULE_S, parse_retry_after("86400", NOW)) == MAX_RETRY_AFTER_S
    # ...unless the schedule itself already waits longer.
    assert retry_delay_s(7, RETRY_SCHEDULE_S, parse_retry_after("86400", NOW)) == 7200


def test_retry_after_as_an_http_date() -> None:
    later = NOW + dt.timedelta(seconds=300)
    header = format_datetime(later, usegmt=True)
    assert header.endswith("GMT")
    assert parse_retry_after(header, NOW) == 300
    assert retry_delay_s(1, RETRY_SCHEDULE_S, parse_retry_after(header, NOW)) == 300


def test_retry_after_in_the_past_or_unreadable_leaves_the_schedule() -> None:
    past = format_datetime(NOW - dt.timedelta(seconds=60), usegmt=True)
    assert parse_retry_after(past, NOW) == 0
    for junk in ("soon", "-5", "1.5", "", None):
        assert parse_retry_after(junk, NOW) is None, junk
    assert retry_delay_s(2, RETRY_SCHEDULE_S, None) == 30


def test_a_custom_schedule_is_used_as_given() -> None:
    schedule = (0.05, 0.1)
    assert [retry_delay_s(n, schedule) for n in (1, 2, 3)] == [0.05, 0.1, None]
    assert retry_delay_s(0, schedule) is None
