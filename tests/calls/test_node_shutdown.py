"""What happens to live calls when the node goes away: the operator's Ctrl-C ends them
cleanly; a node killed outright closes them when it starts again."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.calls.node_process import DID, NodeProcess, rtpengine_running
from tests.support.receiver import Receiver, Reply
from tests.support.sipp import SippUas, run_uac

pytestmark = pytest.mark.interop

DIAL = {"command": "dial", "phoneNumber": "41793026785", "callerId": "41793026700"}


async def test_ctrl_c_hangs_up_live_calls_and_stops_rtpengine(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.always("/callback", Reply(body=DIAL))
    node = NodeProcess(tmp_path, receiver)
    await node.set_up()
    try:
        assert rtpengine_running(node.ng_port)
        async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
            caller_task = asyncio.create_task(
                run_uac("uac_call_remote_bye.xml", target=("127.0.0.1", node.sip_port), service=DID)
            )
            await receiver.wait_for("/callback")
            await asyncio.sleep(1.5)  # answered and talking
            assert node.process is not None
            node.process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(node.process.wait(), timeout=20) == 0
            caller = await caller_task
            far = await far_end.wait(15)
    finally:
        await node.stop()
    assert caller.received("BYE"), caller.describe()
    assert far.received("BYE"), far.describe()
    assert not rtpengine_running(node.ng_port), "rtpengine outlived callmask"
    ((status, cause),) = node.query("SELECT status, hangup_cause FROM call_records")
    assert status == "answered" and "shutting down" in str(cause)
    assert node.query("SELECT count(*) FROM webhook_events") == [(1,)]
    assert node.query("SELECT count(*) FROM open_calls") == [(0,)]


async def test_a_node_killed_with_a_call_up_closes_it_when_it_starts_again(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.always("/callback", Reply(body=DIAL))
    node = NodeProcess(tmp_path, receiver)
    await node.set_up()
    try:
        async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
            caller_task = asyncio.create_task(
                run_uac(
                    "uac_call.xml",
                    target=("127.0.0.1", node.sip_port),
                    service=DID,
                    variables={"hold_ms": "3000"},
                    timeout_s=20,
                )
            )
            await receiver.wait_for("/callback")
            await asyncio.sleep(1.5)  # answered and talking
            assert node.query("SELECT count(*) FROM open_calls WHERE answered_at IS NOT NULL") == [
                (1,)
            ]
            await node.kill()  # no BYE, no CDR, rtpengine left running
            assert rtpengine_running(node.ng_port)
            await node.start()
            assert node.query("SELECT count(*) FROM open_calls") == [(0,)]
            ((status, cause, duration),) = node.query(
                "SELECT status, hangup_cause, duration_s FROM call_records"
            )
            assert status == "answered" and "stopped while the call was up" in str(cause)
            assert isinstance(duration, int) and duration <= 10
            (report,) = [r.json() for r in await receiver.wait_for("/status", 1, timeout_s=15)]
            assert report["status"] == "answered"
            # The caller's BYE reaches a node that no longer knows the call: 481, not a crash.
            caller = await caller_task
            del far_end, caller
    finally:
        await node.stop()


async def test_reports_still_owed_when_a_node_is_killed_are_delivered_after_it_starts_again(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The customer's status endpoint refuses a report (503), so it waits in the outbox
    for its retry; the node is killed meanwhile, with another call up. Started again, it
    delivers both: the owed report at its retry time, the cut call's as it closes it."""
    receiver.always("/callback", Reply(body=DIAL))
    receiver.answer("/status", Reply(status=503))
    node = NodeProcess(tmp_path, receiver)
    await node.set_up()
    try:
        async with SippUas("uas_answer.xml", port=node.trunk_port, calls=2) as far_end:
            first = await run_uac(
                "uac_call.xml",
                target=("127.0.0.1", node.sip_port),
                service=DID,
                variables={"hold_ms": "200", "linger_ms": "0"},
            )
            assert first.successful == 1, first.describe()
            await receiver.wait_for("/status")  # refused: the report is owed
            second = asyncio.create_task(
                run_uac(
                    "uac_call.xml",
                    target=("127.0.0.1", node.sip_port),
                    service=DID,
                    variables={"hold_ms": "3000"},
                    timeout_s=20,
                )
            )
            await receiver.wait_for("/callback", 2)
            await asyncio.sleep(1.0)  # answered and talking
            owed = node.query("SELECT status, attempt_count FROM webhook_events")
            assert owed == [("pending", 1)], owed
            await node.kill()
            await node.start()
            reports = await receiver.wait_for("/status", 3, timeout_s=20)
            await second
            del far_end
    finally:
        await node.stop()
    delivered = [r.json()["status"] for r in reports[1:]]
    assert sorted(delivered) == ["answered", "answered"]
    assert len(receiver.on("/status")) == 3, "a report was sent more than once"
    assert node.query("SELECT status, count(*) FROM webhook_events GROUP BY status") == [
        ("delivered", 2)
    ]
    assert node.query("SELECT count(*) FROM call_records") == [(2,)]
