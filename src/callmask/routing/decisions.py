"""What a routing exchange can decide for an inbound call, independent of the dialect
that asked. The call engine acts on these; ``routing/infobip.py`` and ``routing/tata.py``
turn their dialect's answers into them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

CONSENT_PROMPT = "This call will be recorded."


@dataclass(frozen=True, slots=True)
class RecordCall:
    """Record the call once both parties have answered, after both hear ``consent``
    (spoken); the mixed file is ``file_format`` (``mp3`` or ``wav``) and
    ``callback_url``, when given, is told when it is ready (or why it failed)."""

    file_format: str = "mp3"
    callback_url: str | None = None
    consent: str = CONSENT_PROMPT
    session_sid: str | None = None


@dataclass(frozen=True, slots=True)
class DialNumbers:
    """Bridge the caller to the first of ``numbers`` (E.164) that answers, in order,
    showing ``caller_id`` (E.164) as the only identity the called party sees; with a
    ``time_limit_s``, both legs get BYE that many seconds after the answer; with
    ``record``, the answered call is recorded after a consent announcement."""

    numbers: tuple[str, ...]
    caller_id: str
    time_limit_s: int | None = None
    record: RecordCall | None = None


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
    # A number the caller shares among PIN sessions: the digits are looked up instead
    # of compared with ``pin``, and what the PIN names is dialled instead of ``then``
    # (None: a wrong PIN).
    lookup: Callable[[str], Awaitable[DialNumbers | None]] | None = None
    # The account's audio files to play instead of speaking ``prompt`` / ``incorrect``.
    prompt_file_id: str | None = None
    incorrect_file_id: str | None = None

    async def check(self, entered: str) -> DialNumbers | None:
        """What to dial for the digits ``entered``; None when they are not a right PIN."""
        if self.lookup is not None:
            return await self.lookup(entered) if entered else None
        return self.then if entered == self.pin else None


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
