"""What the REST API may ask of the running call engine (Tata live calls, hangup,
click-to-call, OTP announcements, transfer), as a small interface so the API layer does
not reach into call internals and can be tested against a node without SIP.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LiveCall:
    call_id: str  # the public (Tata-style) call id
    account_id: str
    direction: str  # inbound | outbound
    service: str
    did: str | None
    caller: str
    callee: str | None
    started_at: dt.datetime
    answered_at: dt.datetime | None
    state: str  # ringing | answered


@dataclass(frozen=True, slots=True)
class ClickToCall:
    account_id: str
    agent_number: str  # E.164
    destination_number: str  # E.164
    caller_id: str  # E.164, what both parties see
    call_timeout_s: int | None
    custom_identifier: str | None
    webhook_url: str | None
    agent_id: int | None = None  # when agent_number named one of the account's agents


@dataclass(frozen=True, slots=True)
class Announcement:
    account_id: str
    customer_number: str  # E.164
    caller_id: str  # E.164
    text: str  # what is spoken (e.g. "Your OTP is 1 2 3 4 5 6. ...")
    webhook_url: str | None
    broadcast_id: str | None = None  # the broadcast key that asked for the call


class CallControl(Protocol):
    def live_calls(self, account_id: str) -> list[LiveCall]: ...

    def hangup(self, account_id: str, call_id: str) -> bool:
        """End a live call of this account (BYE both legs); False if unknown/finished."""
        ...

    async def click_to_call(self, request: ClickToCall, *, wait_for_agent: bool) -> str | None:
        """Place the agent leg, then the customer leg, bridge them. Returns the call id;
        with ``wait_for_agent`` only once the agent answered (None if the agent did not)."""
        ...

    async def announce(self, request: Announcement) -> str:
        """Call the customer and, on answer, speak ``text`` and hang up. Returns the call id."""
        ...

    async def transfer(self, account_id: str, call_id: str, number: str) -> bool:
        """Move the caller of a live answered call to ``number``; the old B leg gets BYE."""
        ...
