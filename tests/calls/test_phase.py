"""The call phase table: every (phase, wanted) pair either moves as the table says or
is refused, every phase can still end, and nothing leaves ENDED."""

from __future__ import annotations

import itertools

import pytest

from callmask.calls.phase import TRANSITIONS, Phase, PhaseError, next_phase

STAYS = {Phase.RINGING, Phase.BRIDGED, Phase.ENDING}


@pytest.mark.parametrize(
    ("current", "wanted"), list(itertools.product(Phase, Phase)), ids=lambda p: p.value
)
def test_every_move_is_either_in_the_table_or_refused(current: Phase, wanted: Phase) -> None:
    if wanted in TRANSITIONS[current] or (wanted is current and current in STAYS):
        assert next_phase(current, wanted) is wanted
    else:
        with pytest.raises(PhaseError, match=f"from {current.value} to {wanted.value}"):
            next_phase(current, wanted)


def test_every_phase_but_the_last_two_can_end_the_call() -> None:
    for phase in Phase:
        if phase not in (Phase.ENDING, Phase.ENDED):
            assert Phase.ENDING in TRANSITIONS[phase], phase
    assert TRANSITIONS[Phase.ENDING] == {Phase.ENDED}
    assert TRANSITIONS[Phase.ENDED] == frozenset()


def test_every_phase_is_reachable_from_admission() -> None:
    seen, frontier = {Phase.ADMITTED}, [Phase.ADMITTED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(Phase)


def test_a_call_cannot_be_bridged_before_anyone_was_dialled() -> None:
    with pytest.raises(PhaseError):
        next_phase(Phase.ROUTING, Phase.BRIDGED)
    with pytest.raises(PhaseError):
        next_phase(Phase.ADMITTED, Phase.PLAYING)
