"""Failures an operator will meet: the media relay dies under live calls."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from callmask.store.repositories import Actions, Numbers
from tests.calls.conftest import B_NUMBER, CALLER, CALLER_ID, DID, Node
from tests.support.receiver import Reply
from tests.support.sipp import SippUas, run_uac

pytestmark = pytest.mark.interop

DIAL = {"command": "dial", "phoneNumber": B_NUMBER.removeprefix("+"), "callerId": CALLER_ID}


async def test_when_rtpengine_dies_mid_call_the_call_ends_cleanly_and_new_calls_work(
    node: Node,
) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    rtpengine = node.engine.rtpengine_process
    assert rtpengine is not None and rtpengine.pid is not None
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=2) as far_end:
        caller_task = asyncio.create_task(
            run_uac(
                "uac_call_remote_bye.xml",
                target=("127.0.0.1", node.sip_port),
                service=DID.removeprefix("+"),
                variables={"caller": CALLER},
            )
        )
        await node.receiver.wait_for("/callback")
        await asyncio.sleep(1.0)  # answered and talking
        os.kill(rtpengine.pid, signal.SIGKILL)
        caller = await caller_task
        assert caller.received("BYE"), caller.describe()
        (report,) = await node.status_reports()
        assert report["status"] == "answered"
        (record,) = await node.records()
        assert "rtpengine" in record.hangup_cause and record.hangup_by == "system"

        for _ in range(150):  # the supervisor restarts it within a few seconds
            if rtpengine.healthy and rtpengine.restarts >= 1:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("rtpengine was not restarted within 15 s")
        second = await run_uac(
            "uac_call.xml",
            target=("127.0.0.1", node.sip_port),
            service=DID.removeprefix("+"),
            variables={"caller": CALLER, "hold_ms": "500"},
        )
        far = await far_end.wait(20)
    assert second.returncode == 0, second.describe()
    assert len(far.received("BYE")) == 2, far.describe()
    reports = await node.status_reports(2)
    assert [r["status"] for r in reports] == ["answered", "answered"]


async def test_a_slow_customer_callback_does_not_hold_up_other_customers_calls(
    node: Node,
) -> None:
    """One DID's callback takes 1.5 s while calls to another DID keep coming: those
    calls are routed at once; nothing waits behind the slow exchanges."""
    fast_did = "+41793026732"
    async with node.database.session() as session:
        number = await Numbers(session).add_to_inventory(fast_did, "CH", node.tenant.account_id)
        await Actions(session).create(
            node.tenant.account_id,
            number.number_key,
            type_="VOICE_NUMBER_MASKING",
            callback_url=node.receiver.url("/fast"),
            status_url=node.receiver.url("/status"),
        )
    node.receiver.always("/callback", Reply(body=DIAL, delay_s=1.5))
    node.receiver.always("/fast", Reply(body=DIAL))
    async with SippUas("uas_answer.xml", port=node.trunk_port):
        slow, fast = await asyncio.gather(
            run_uac(
                "uac_call.xml",
                target=("127.0.0.1", node.sip_port),
                service=DID.removeprefix("+"),
                calls=20,
                rate=10,
                variables={"caller": CALLER, "hold_ms": "300"},
                timeout_s=60,
            ),
            run_uac(
                "uac_call.xml",
                target=("127.0.0.1", node.sip_port),
                service=fast_did.removeprefix("+"),
                calls=40,
                rate=20,
                variables={"caller": CALLER, "hold_ms": "300"},
                timeout_s=60,
            ),
        )
    assert slow.successful == 20, slow.describe()
    assert fast.successful == 40, fast.describe()
    records = [r for r in await node.records() if r.did == fast_did]
    assert len(records) == 40
    details = [json.loads(r.details or "{}") for r in records]
    callback_ms = sorted(d["callback_ms"] for d in details)
    delay_ms = sorted(d["post_dial_delay_ms"] for d in details)
    # Far below the slow callback's 1,500 ms: nothing queued behind it.
    assert callback_ms[-1] < 300, callback_ms
    assert delay_ms[-1] < 100, delay_ms
