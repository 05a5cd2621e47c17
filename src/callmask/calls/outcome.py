"""How a call ended, in the words status reports use, and the CDR row plus status
report written for it in one transaction.

Status mapping (DESIGN.md "Call flow"): answered when the called party answered;
486/600/603 busy; 408/480/487 and the ring timeout no answer; 5xx, or a trunk that
never answered at all, congestion; routing failures (callback unreachable, slow, bad
answer) and everything else failed.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from callmask.config import NODE_SLOTS
from callmask.store.models import CallRecord


class CallStatus(enum.StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no answer"
    FAILED = "failed"
    CONGESTION = "congestion"


def status_for_code(code: int | None) -> CallStatus:
    """The status of an unanswered outbound leg from its final SIP code; ``None`` means
    the trunk never answered at all (Timer B with no provisional)."""
    if code is None:
        return CallStatus.CONGESTION
    if code in (486, 600, 603):
        return CallStatus.BUSY
    if code in (408, 480, 487):
        return CallStatus.NO_ANSWER
    if 500 <= code < 600:
        return CallStatus.CONGESTION
    return CallStatus.FAILED


def new_public_call_id(node_index: int = 0) -> str:
    """A customer-facing call id in the Tata shape (``1627373566.350603``), unique across
    nodes: each node mints only microseconds that are ``node_index`` modulo
    ``NODE_SLOTS`` (so at most 62,500 ids a second, far above a node's call rate), and
    never repeats the previous value within the process."""
    global _last_slot
    slot = max(time.time_ns() // 1000 // NODE_SLOTS, _last_slot + 1)
    _last_slot = slot
    now_us = slot * NODE_SLOTS + node_index
    return f"{now_us // 1_000_000}.{now_us % 1_000_000:06d}"


_last_slot = 0


def utc_from_monotonic(
    monotonic_s: float, anchor_monotonic_s: float, anchor_utc: dt.datetime
) -> dt.datetime:
    """Turn a loop timestamp into UTC against one anchor, so intervals in the CDR are
    exact even if the wall clock steps during the call."""
    return anchor_utc + dt.timedelta(seconds=monotonic_s - anchor_monotonic_s)


@dataclass(slots=True)
class CallTimes:
    """Monotonic (event loop) timestamps of a call's milestones."""

    invited: float
    ringing: float | None = None
    answered: float | None = None
    ended: float | None = None

    def talk_seconds(self) -> int:
        if self.answered is None or self.ended is None:
            return 0
        return max(0, round(self.ended - self.answered))


@dataclass(slots=True)
class CallSummary:
    """Everything the CDR and the status report need, filled in as the call goes."""

    record_id: str
    public_call_id: str
    direction: str
    service: str
    caller: str
    a_sip_call_id: str
    times: CallTimes
    invited_utc: dt.datetime
    account_id: str | None = None
    did: str | None = None
    callee: str | None = None
    caller_id_shown: str | None = None
    action_key: str | None = None
    command: str | None = None
    file_id: str | None = None
    b_sip_call_id: str | None = None
    status: CallStatus = CallStatus.FAILED
    sip_code: int | None = None
    hangup_cause: str = ""
    hangup_by: str | None = None
    custom_identifier: str | None = None
    broadcast_id: str | None = None
    agent_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def utc(self, monotonic_s: float | None) -> dt.datetime | None:
        if monotonic_s is None:
            return None
        return utc_from_monotonic(monotonic_s, self.times.invited, self.invited_utc)

    def record(self) -> dict[str, Any]:
        """The CDR as ``call_records`` column values."""
        ended = self.utc(self.times.ended) or self.invited_utc
        return dict(
            id=self.record_id,
            call_id=self.public_call_id,
            account_id=self.account_id,
            direction=self.direction,
            service=self.service,
            did=self.did,
            caller=self.caller[:64],
            callee=self.callee,
            caller_id_shown=self.caller_id_shown,
            action_key=self.action_key,
            command=self.command,
            file_id=self.file_id,
            a_sip_call_id=self.a_sip_call_id[:255],
            b_sip_call_id=self.b_sip_call_id,
            invited_at=self.invited_utc,
            ringing_at=self.utc(self.times.ringing),
            answered_at=self.utc(self.times.answered),
            ended_at=ended,
            duration_s=self.times.talk_seconds(),
            status=self.status.value,
            sip_code=self.sip_code,
            hangup_cause=self.hangup_cause[:200],
            hangup_by=self.hangup_by,
            details=json.dumps(self.details, separators=(",", ":"), default=str),
            custom_identifier=self.custom_identifier,
            broadcast_id=self.broadcast_id,
            agent_id=self.agent_id,
        )


async def store_record(session: AsyncSession, summary: CallSummary) -> CallRecord:
    record = CallRecord(**summary.record())
    session.add(record)
    await session.flush()
    return record
