"""What a routing exchange can decide for an inbound call, independent of the dialect
that asked. The call engine acts on these; ``routing/infobip.py`` and ``routing/tata.py``
turn their dialect's answers into them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DialNumbers:
    """Bridge the caller to the first of ``numbers`` (E.164) that answers, in order,
    showing ``caller_id`` (E.164) as the only identity the called party sees; with a
    ``time_limit_s``, both legs get BYE that many seconds after the answer."""

    numbers: tuple[str, ...]
    caller_id: str
    time_limit_s: int | None = None


@dataclass(frozen=True, slots=True)
class PlayAudio:
    """Answer, play the customer's uploaded file, hang up when it ends."""

    file_id: str


PIN_PROMPT = "Please enter your PIN, followed by the hash key."
INCORRECT_PIN = "That PIN is not correct."


@dataclass(frozen=True, slots=True)
class PinGate:
    """Answer, ask the caller for ``pin`` (spoken ``prompt``), and only on the right
    digits go on as ``then``. ``attempts`` prompts in all, each waiting ``wait_s`` after
    the prompt for the digits (ended by ``#`` or by the PIN's length); after a wrong
    one the caller hears ``incorrect``; after the last, the call ends as failed."""

    pin: str
    then: DialNumbers
    prompt: str = PIN_PROMPT
    incorrect: str = INCORRECT_PIN
    attempts: int = 2
    wait_s: float = 5.0


class RoutingFailed(Exception):
    """The customer's routing endpoint did not give a usable answer (unreachable, slow,
    non-2xx, bad JSON, unknown command, invalid number). The reason is for CDRs and logs."""


class UnknownNumber(Exception):
    """The called DID is not in the inventory, not owned, or has no action: the
    carrier gets 404 and nobody is asked."""


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    """Refuse the call with ``code`` after speaking ``text`` as early media (183), so the
    caller hears why (a number no longer in service) instead of the carrier's tone."""

    text: str
    code: int
    reason: str
    cause: str  # for the CDR


class RoutingRefused(RoutingFailed):
    """The customer's endpoint refused the call on purpose (an intercept callback that
    answered non-2xx): the caller gets ``code``, not the 480 of a routing failure."""

    def __init__(self, message: str, code: int = 403, reason: str = "Forbidden") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


Decision = DialNumbers | PlayAudio | PlayPrompt | PinGate
