"""What a routing exchange can decide for an inbound call, independent of the dialect
that asked. The call engine acts on these; ``routing/infobip.py`` and ``routing/tata.py``
turn their dialect's answers into them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DialNumbers:
    """Bridge the caller to the first of ``numbers`` (E.164) that answers, in order,
    showing ``caller_id`` (E.164) as the only identity the called party sees."""

    numbers: tuple[str, ...]
    caller_id: str


@dataclass(frozen=True, slots=True)
class PlayAudio:
    """Answer, play the customer's uploaded file, hang up when it ends."""

    file_id: str


Decision = DialNumbers | PlayAudio


class RoutingFailed(Exception):
    """The customer's routing endpoint did not give a usable answer (unreachable, slow,
    non-2xx, bad JSON, unknown command, invalid number). The reason is for CDRs and logs."""


class UnknownNumber(Exception):
    """The called DID is not in the inventory, not owned, or has no action: the
    carrier gets 404 and nobody is asked."""
