"""Call flows on an in-memory SIP network with a fake media relay and looptime's fake
clock: the node's real SIP core and call engine between a carrier delivering a call
and the trunk taking the outbound leg, no SIPp, no rtpengine, no sockets.

Each test is what a carrier or a customer does (the called party is busy, nobody
answers for a minute, the caller gives up while the callback still decides...) and
checks what the caller hears and what the CDR says. The SIPp interop tests stay the
end-to-end proof; these pin the flow and run in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from callmask.media.tts import TextToSpeech
from callmask.routing.decisions import DialNumbers, PinGate, RoutingFailed
from callmask.store.database import Database
from callmask.store.models import CallRecord
from tests.conftest import create_tenant, make_settings
from tests.support.memory_sip import (
    Caller,
    FarEnd,
    FarEndScript,
    MemoryNetwork,
    ScriptedRouting,
    ScriptedTable,
    running_engine,
)

pytestmark = pytest.mark.looptime

DID = "+41793026731"
CALLER = "+41793026727"
B_NUMBER = "+41793026785"
CALLER_ID = "+41793026700"
DIAL = DialNumbers(numbers=(B_NUMBER,), caller_id=CALLER_ID)


class Rig:
    def __init__(self, tmp_path: Path, sqlite_url: str) -> None:
        self.settings = make_settings(
            tmp_path,
            sqlite_url,
            sip_host="127.0.0.1",
            sip_port=5060,
            trunk_uri="sip:127.0.0.1:5080",
            ring_timeout=60.0,
        )
        self.database = Database(sqlite_url)
        self.network = MemoryNetwork()
        self.routing = ScriptedRouting(lambda: DIAL)
        self.far_end = FarEnd(self.network)
        self.caller = Caller(self.network)
        self.plays: list[str] = []

    async def records(self) -> list[CallRecord]:
        async with self.database.session() as session:
            return list((await session.scalars(select(CallRecord))).all())


@pytest.fixture
async def rig(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Rig]:
    rig = Rig(tmp_path, sqlite_url)
    rig.routing.account_id = (await create_tenant(rig.database)).account_id
    await rig.far_end.endpoint.start()
    await rig.caller.endpoint.start()
    yield rig
    await rig.far_end.close()
    await rig.caller.endpoint.close()
    await rig.database.close()


async def one_call(rig: Rig, *, hang_up_after_s: float | None = None) -> CallRecord:
    """The carrier delivers one call; the caller hangs up ``hang_up_after_s`` after the
    answer (if answered); returns the CDR once the engine has written it."""
    async with running_engine(
        rig.settings, rig.database, rig.network, ScriptedTable(rig.routing)
    ) as (engine, _media):
        rig.caller.call(DID, CALLER)
        final = await rig.caller.final()
        if 200 <= final < 300 and hang_up_after_s is not None:
            await asyncio.sleep(hang_up_after_s)
            rig.caller.hang_up()
        await engine.calls_done()
    (record,) = await rig.records()
    return record


async def test_the_called_party_answers_and_the_caller_hangs_up(rig: Rig) -> None:
    record = await one_call(rig, hang_up_after_s=30)
    assert rig.caller.responses[-1] == 200
    assert record.status == "answered" and record.hangup_by == "caller"
    assert 29 <= (record.ended_at - record.answered_at).total_seconds() <= 31
    (invite,) = rig.far_end.invites
    assert f"sip:{CALLER_ID}@" in (invite.headers.get("From") or "")
    assert CALLER not in invite.serialize().decode()
    assert rig.far_end.byes, "the caller's BYE reached the called party"


async def test_the_calls_sip_identities_come_from_the_engines_random_source(rig: Rig) -> None:
    await one_call(rig, hang_up_after_s=1)
    (invite,) = rig.far_end.invites
    identities = random.Random(3261)  # running_engine's default seed
    draws = [identities.randbytes(n).hex() for n in (8, 16, 8, 8)]
    # The caller's leg takes a To-tag first; the outbound leg a Call-ID, a From-tag and
    # the branch of its INVITE's Via.
    assert invite.headers.get("Call-ID") == draws[1]
    assert f"tag={draws[2]}" in (invite.headers.get("From") or "")
    assert f"branch=z9hG4bK{draws[3]}" in (invite.headers.get("Via") or "")


@pytest.mark.parametrize(
    ("far_end_code", "status", "caller_hears"),
    [
        (486, "busy", 486),
        (600, "busy", 600),
        (480, "no answer", 480),
        (503, "congestion", 502),
    ],
)
async def test_the_called_partys_refusal_is_reported_and_passed_on(
    rig: Rig, far_end_code: int, status: str, caller_hears: int
) -> None:
    rig.far_end.script = FarEndScript(final=far_end_code)
    record = await one_call(rig)
    assert record.status == status
    assert rig.caller.responses[-1] == caller_hears
    assert record.answered_at is None


async def test_nobody_answers_for_a_minute_so_the_call_is_no_answer(rig: Rig) -> None:
    rig.far_end.script = FarEndScript(final=None)  # rings for ever
    record = await one_call(rig)
    assert record.status == "no answer"
    assert rig.caller.responses[-1] == 480
    assert rig.far_end.cancels, "the ring timeout CANCELs the called party"
    ringing_s = (record.ended_at - record.invited_at).total_seconds()
    assert 60 <= ringing_s <= 63  # CALLMASK_RING_TIMEOUT, on the fake clock


async def test_a_trunk_that_never_answers_is_congestion_after_timer_b(rig: Rig) -> None:
    await rig.far_end.close()  # nothing at the trunk's address: INVITEs go nowhere
    record = await one_call(rig)
    assert record.status == "congestion"
    assert rig.caller.responses[-1] == 502
    assert 32 <= (record.ended_at - record.invited_at).total_seconds() <= 34  # 64*T1


@pytest.mark.parametrize(
    "failure",
    ["callback answered HTTP 500", "callback timed out after 5 s", "callback answer is not JSON"],
)
async def test_a_callback_that_fails_gives_the_caller_a_defined_refusal(
    rig: Rig, failure: str
) -> None:
    def fail() -> DialNumbers:
        raise RoutingFailed(failure)

    rig.routing.answer = fail
    record = await one_call(rig)
    assert record.status == "failed"
    assert record.hangup_cause == failure
    assert rig.caller.responses[-1] == 480
    assert not rig.far_end.invites, "nobody is dialled when the callback fails"


async def test_a_caller_who_gives_up_while_the_callback_decides_is_never_dialled(
    rig: Rig,
) -> None:
    rig.routing.delay_s = 4.0  # the callback takes its time
    async with running_engine(
        rig.settings, rig.database, rig.network, ScriptedTable(rig.routing)
    ) as (engine, _media):
        rig.caller.call(DID, CALLER)
        await asyncio.sleep(1.0)
        rig.caller.cancel()
        assert await rig.caller.final() == 487
        await engine.calls_done()
        await asyncio.sleep(5.0)  # past the callback's answer: still nobody dialled
    (record,) = await rig.records()
    assert record.status == "no answer" and record.hangup_cause == "caller cancelled"
    assert not rig.far_end.invites


async def test_the_called_party_hanging_up_ends_the_callers_leg(rig: Rig) -> None:
    rig.far_end.script = FarEndScript(hang_up_after_s=12)
    record = await one_call(rig)
    assert record.status == "answered" and record.hangup_by == "callee"
    assert rig.network.requests("BYE", ("127.0.0.3", 5060)), "the caller got BYE"


async def test_an_api_hangup_ends_both_legs(rig: Rig) -> None:
    async with running_engine(
        rig.settings, rig.database, rig.network, ScriptedTable(rig.routing)
    ) as (engine, _media):
        rig.caller.call(DID, CALLER)
        assert await rig.caller.final() == 200
        (live,) = engine.live_calls(rig.routing.account_id)
        assert live.state == "answered"
        assert not engine.hangup("another-account", live.call_id)
        assert engine.hangup(rig.routing.account_id, live.call_id)
        await engine.calls_done()
    (record,) = await rig.records()
    assert record.hangup_by == "system" and record.hangup_cause == "hung up through the API"
    assert rig.far_end.byes and rig.network.requests("BYE", ("127.0.0.3", 5060))


async def test_a_call_with_a_time_limit_gets_bye_on_both_legs_at_the_limit(rig: Rig) -> None:
    rig.routing.answer = lambda: DialNumbers(
        numbers=(B_NUMBER,), caller_id=CALLER_ID, time_limit_s=90
    )
    record = await one_call(rig)  # nobody hangs up
    assert record.status == "answered" and record.hangup_by == "system"
    assert record.hangup_cause == "call time limit reached"
    assert 89 <= (record.ended_at - record.answered_at).total_seconds() <= 91
    assert rig.far_end.byes and rig.network.requests("BYE", ("127.0.0.3", 5060))
    details = json.loads(record.details or "{}")
    assert details["time_limit_s"] == 90 and details["time_limit_reached"] is True


async def test_a_caller_who_hangs_up_before_the_time_limit_ends_the_call_as_usual(
    rig: Rig,
) -> None:
    rig.routing.answer = lambda: DialNumbers(
        numbers=(B_NUMBER,), caller_id=CALLER_ID, time_limit_s=90
    )
    record = await one_call(rig, hang_up_after_s=30)
    assert record.hangup_by == "caller"
    assert "time_limit_reached" not in json.loads(record.details or "{}")


async def test_a_transfer_moves_the_caller_to_the_new_number(rig: Rig) -> None:
    new_number = "+41793026799"
    async with running_engine(
        rig.settings, rig.database, rig.network, ScriptedTable(rig.routing)
    ) as (engine, _media):
        rig.caller.call(DID, CALLER)
        assert await rig.caller.final() == 200
        (live,) = engine.live_calls(rig.routing.account_id)
        assert await engine.transfer(rig.routing.account_id, live.call_id, new_number)
        assert len(rig.far_end.invites) == 2
        assert new_number in rig.far_end.invites[1].uri
        assert len(rig.far_end.byes) == 1, "the first called party got BYE"
        rig.caller.hang_up()
        await engine.calls_done()
    (record,) = await rig.records()
    assert record.status == "answered" and record.callee == new_number
    assert record.command == "transfer"


PIN_GATE = PinGate(pin="4321", then=DIAL, attempts=2, wait_s=5.0)


async def pin_call(rig: Rig, entries: list[str], *, talk_s: float = 10) -> CallRecord:
    """The caller is answered by the PIN prompt (2 s long in the rig) and types
    ``entries`` one prompt after the other; a caller put through talks ``talk_s``."""
    rig.routing.answer = lambda: PIN_GATE
    # Rendered ahead: under the fake clock, espeak-ng's real seconds would time out.
    # The fake media relay never reads them.
    speech = TextToSpeech(rig.settings.data_dir / "tts")
    for text in (PIN_GATE.prompt, PIN_GATE.incorrect):
        speech.path_for(text).parent.mkdir(parents=True, exist_ok=True)
        speech.path_for(text).write_bytes(b"RIFF")
    async with running_engine(
        rig.settings, rig.database, rig.network, ScriptedTable(rig.routing)
    ) as (engine, media):
        rig.caller.call(DID, CALLER)
        assert await rig.caller.final() == 200
        for entry in entries:
            await asyncio.sleep(1)  # during the prompt: barge-in is allowed
            rig.caller.press(entry)
            await asyncio.sleep(6)  # the rest of the wait, and the "incorrect" prompt
        if rig.far_end.invites:
            await asyncio.sleep(talk_s)
            rig.caller.hang_up()
        await engine.calls_done()
        rig.plays = [file for command, file in media.commands if command == "play media"]
    (record,) = await rig.records()
    return record


async def test_a_caller_with_the_right_pin_is_put_through_masked(rig: Rig) -> None:
    record = await pin_call(rig, ["4321#"])
    assert record.status == "answered" and record.hangup_by == "caller"
    (invite,) = rig.far_end.invites
    assert f"sip:{CALLER_ID}@" in (invite.headers.get("From") or "")
    details = json.loads(record.details or "{}")
    assert details["pin"]["attempts"] == 1 and details["pin"]["result"] == "correct"
    assert details["dtmf"] == {"caller_info": 5}
    # The far end is dialled only once the PIN is in (1 s into the prompt) and answers
    # at once; the call's answer time is the far end's, not the PIN prompt's.
    assert 0.9 <= (record.answered_at - record.invited_at).total_seconds() <= 2


async def test_a_wrong_pin_then_the_right_one_is_put_through_on_the_second_attempt(
    rig: Rig,
) -> None:
    record = await pin_call(rig, ["1111", "4321"])
    assert record.status == "answered"
    assert json.loads(record.details or "{}")["pin"]["attempts"] == 2
    assert len(rig.plays) == 3  # prompt, incorrect, prompt


async def test_wrong_pins_on_every_attempt_end_the_call_as_failed_and_nobody_is_dialled(
    rig: Rig,
) -> None:
    record = await pin_call(rig, ["1111#", "2222#"])
    assert record.status == "failed" and record.hangup_by == "system"
    assert record.hangup_cause == "incorrect PIN after 2 attempts"
    assert not rig.far_end.invites
    assert rig.network.requests("BYE", ("127.0.0.3", 5060)), "the caller got BYE"
    assert json.loads(record.details or "{}")["pin"]["result"] == "incorrect"


async def test_a_caller_who_enters_nothing_hears_the_prompt_again_then_is_hung_up(
    rig: Rig,
) -> None:
    record = await pin_call(rig, [])
    assert record.status == "failed" and not rig.far_end.invites
    assert len(rig.plays) == 4  # prompt, incorrect, prompt, incorrect
