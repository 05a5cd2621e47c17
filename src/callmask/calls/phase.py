"""The phases of a call and the moves between them, as data (DESIGN.md "Call flow").

Read it against the call-flow contract: an inbound call is admitted (its INVITE came
from the trunk and passed admission), asks its routing, then either dials the numbers
it was given (ringing each, bridging the first that answers) or plays audio to the
caller; whatever happens, it ends by tearing down both legs and the media, and is
ended once its CDR is queued. A call callmask places (click-to-call, OTP) skips
routing: it dials from the start. A transfer leaves a bridged call and comes back to
it, with the new party or, if it does not answer, the old one::

    ADMITTED -> ROUTING -> DIALLING <-> RINGING -> BRIDGED <-> TRANSFERRING
        |          |           ^          |           |
        |          +-> PLAYING-+          +-----------+--> ENDING -> ENDED
        +----------------------+  (every phase but ENDED may move to ENDING)

(PLAYING -> DIALLING: after a PIN prompt, once the caller entered the right PIN.)

``CallBase.enter`` refuses any other move, so a flow that skips a step fails loudly
(the call ends as an internal error) rather than going on in a state nobody wrote down.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    ADMITTED = "admitted"
    ROUTING = "routing"  # asking the customer's callback / the session store
    DIALLING = "dialling"  # an outbound leg's INVITE is out, nothing heard yet
    RINGING = "ringing"  # the called party sent a provisional answer
    BRIDGED = "bridged"  # both parties talk through the media anchor
    TRANSFERRING = "transferring"  # bridged, and a new party is being rung
    PLAYING = "playing"  # the caller hears an announcement or a prompt
    ENDING = "ending"  # tearing down legs and media
    ENDED = "ended"  # the CDR and report are queued


_TO_ENDING = frozenset({Phase.ENDING})

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.ADMITTED: frozenset({Phase.ROUTING, Phase.DIALLING}) | _TO_ENDING,
    Phase.ROUTING: frozenset({Phase.DIALLING, Phase.PLAYING}) | _TO_ENDING,
    # DIALLING -> DIALLING: the next number of a list, after the first failed fast.
    Phase.DIALLING: frozenset({Phase.RINGING, Phase.DIALLING, Phase.BRIDGED}) | _TO_ENDING,
    # RINGING -> DIALLING: the next number of a list, or a placed call's second party.
    Phase.RINGING: frozenset({Phase.BRIDGED, Phase.DIALLING}) | _TO_ENDING,
    # BRIDGED -> PLAYING: an announcement call plays once the customer answered.
    Phase.BRIDGED: frozenset({Phase.TRANSFERRING, Phase.PLAYING}) | _TO_ENDING,
    Phase.TRANSFERRING: frozenset({Phase.BRIDGED}) | _TO_ENDING,
    # PLAYING -> DIALLING: a caller who entered the right PIN is put through.
    Phase.PLAYING: frozenset({Phase.DIALLING}) | _TO_ENDING,
    Phase.ENDING: frozenset({Phase.ENDED}),
    Phase.ENDED: frozenset(),
}


class PhaseError(RuntimeError):
    """A flow tried a move the table does not allow: a bug, not a caller's doing."""


def next_phase(current: Phase, wanted: Phase) -> Phase:
    if wanted is current and current in (Phase.RINGING, Phase.BRIDGED, Phase.ENDING):
        return current  # a second provisional, a re-confirmed bridge: nothing moves
    if wanted not in TRANSITIONS[current]:
        raise PhaseError(f"a call cannot move from {current.value} to {wanted.value}")
    return wanted
