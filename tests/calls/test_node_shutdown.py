"""The operator's Ctrl-C: ``callmask run`` with a call up ends it cleanly (BYE to both
parties, CDR and status report stored) and stops the rtpengine it started."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.receiver import Receiver, Reply
from tests.support.sipp import SippUas, free_udp_port, run_uac

pytestmark = pytest.mark.interop

DID = "41793026731"
CALLMASK = str(Path(sys.executable).with_name("callmask"))


def callmask(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [CALLMASK, *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def rtpengine_running(ng_port: int) -> bool:
    found = subprocess.run(
        ["pgrep", "-f", f"listen-ng=127.0.0.1:{ng_port}"], capture_output=True, check=False
    )
    return found.returncode == 0


async def test_ctrl_c_hangs_up_live_calls_and_stops_rtpengine(
    tmp_path: Path, receiver: Receiver
) -> None:
    api_port, sip_port, trunk_port, ng_port = (free_udp_port() for _ in range(4))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLMASK_")}
    env |= {
        "CALLMASK_DATA_DIR": str(tmp_path / "var"),
        "CALLMASK_API_PORT": str(api_port),
        "CALLMASK_SIP_PORT": str(sip_port),
        "CALLMASK_TRUNK_URI": f"sip:127.0.0.1:{trunk_port}",
        "CALLMASK_RTPENGINE_NG_PORT": str(ng_port),
        "CALLMASK_RTPENGINE_PORT_MIN": "29100",
        "CALLMASK_RTPENGINE_PORT_MAX": "29199",
        "CALLMASK_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    callmask(env, "db", "upgrade")
    words = callmask(env, "accounts", "create", "demo").split()
    account_id, api_key = words[2], words[5]
    number_key = callmask(env, "numbers", "add", "+" + DID, "--account", account_id).split()[0]
    receiver.always(
        "/callback",
        Reply(body={"command": "dial", "phoneNumber": "41793026785", "callerId": "41793026700"}),
    )
    log = (tmp_path / "run.log").open("wb")
    node = await asyncio.create_subprocess_exec(CALLMASK, "run", env=env, stdout=log, stderr=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as api:
            for _ in range(300):
                try:
                    if (await api.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            reply = await api.post(
                f"/numbers/1/numbers/{number_key}/actions",
                headers={"Authorization": f"App {api_key}"},
                json={
                    "type": "VOICE_NUMBER_MASKING",
                    "callbackUrl": receiver.url("/callback"),
                    "statusUrl": receiver.url("/status"),
                },
            )
            assert reply.status_code == 200, reply.text
        assert rtpengine_running(ng_port)
        async with SippUas("uas_answer.xml", port=trunk_port, calls=1) as far_end:
            caller_task = asyncio.create_task(
                run_uac(
                    "uac_call_remote_bye.xml",
                    target=("127.0.0.1", sip_port),
                    service=DID,
                    timeout_s=30,
                )
            )
            await receiver.wait_for("/callback")
            await asyncio.sleep(1.5)  # answered and talking
            node.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(node.wait(), timeout=20) == 0
            caller = await caller_task
            far = await far_end.wait(15)
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
        log.close()
    assert caller.received("BYE"), caller.describe()
    assert far.received("BYE"), far.describe()
    assert not rtpengine_running(ng_port), "rtpengine outlived callmask"
    with sqlite3.connect(tmp_path / "var" / "callmask.db") as db:
        (status, cause) = db.execute("SELECT status, hangup_cause FROM call_records").fetchone()
        (events,) = db.execute("SELECT count(*) FROM webhook_events").fetchone()
    assert status == "answered" and "shutting down" in cause
    assert events == 1, "the status report is in the outbox (delivered now or after restart)"
