"""Call ids that several nodes mint at once, in Tata's ``seconds.microseconds`` shape,
never collide: each node mints only its own slot of every 16 microseconds."""

from __future__ import annotations

import re

from callmask.calls.outcome import new_public_call_id
from callmask.config import NODE_SLOTS


def test_nodes_with_distinct_indexes_never_mint_the_same_call_id() -> None:
    minted = {index: [new_public_call_id(index) for _ in range(5000)] for index in (0, 1, 15)}
    everything = [call_id for ids in minted.values() for call_id in ids]
    assert len(set(everything)) == len(everything)
    for index, ids in minted.items():
        assert ids == sorted(ids, key=float), "a node's ids grow"
        for call_id in ids:
            assert re.fullmatch(r"\d{10}\.\d{6}", call_id)
            assert int(call_id.split(".")[1]) % NODE_SLOTS == index
