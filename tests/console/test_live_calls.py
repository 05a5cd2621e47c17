"""A real call (SIPp on both carrier sides, rtpengine, a loopback callback server)
shows up on the console's live page through server-sent events, is hung up with the
page's button, disappears, and its record's detail page shows the timeline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.calls.conftest import B_NUMBER, CALLER, CALLER_ID, DID, Node
from tests.console.conftest import Console, serving
from tests.support.receiver import Reply
from tests.support.sipp import SippUas, run_uac

pytestmark = pytest.mark.interop

DIAL = {"command": "dial", "phoneNumber": B_NUMBER.removeprefix("+"), "callerId": CALLER_ID}


async def test_a_live_call_appears_is_hung_up_and_disappears(
    node: Node, browser: Browser, tmp_path: Path
) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with serving(node.app) as url:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        console = Console(await context.new_page(), url, shots)
        await console.login(node.tenant.api_key)
        await console.page.wait_for_selector("#who")
        await console.goto("/console/live")
        await console.page.wait_for_selector("#no-calls")
        async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
            # The caller talks until callmask sends it a BYE (the console's hang up).
            caller = asyncio.create_task(
                run_uac(
                    "uac_call_remote_bye.xml",
                    target=("127.0.0.1", node.sip_port),
                    service=DID.removeprefix("+"),
                    variables={"caller": CALLER},
                    timeout_s=20,
                )
            )
            row = console.page.locator("tr.live-call td.state-answered")
            await row.wait_for(timeout=10_000)  # pushed by the SSE stream, no reload
            await console.shot("live-call")
            await console.page.click("button.hangup")
            await console.page.wait_for_selector("#hung")
            await console.page.wait_for_selector("#no-calls", timeout=10_000)
            result = await caller
            far = await far_end.wait(15)
        assert result.returncode == 0, result.describe()
        assert far.returncode == 0, far.describe()
        (record,) = await node.records()
        assert record.status == "answered"
        await console.goto(f"/console/calls/{record.call_id}")
        assert await console.page.text_content("#call-status") == "answered"
        assert await console.page.locator("#timeline tbody tr").count() == 4
        await console.shot("call-detail")
        assert console.errors == [], console.errors
        await context.close()
