"""A callmask node for the benches, started as an operator would: ``callmask run`` on
free loopback ports with SQLite in a temporary directory and a managed rtpengine, one
account with one DID whose masking action points at a minimal local HTTP callback
that always answers ``dial``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from tests.support.sipp import free_udp_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-operator-key"
SCENARIOS = ROOT / "bench" / "scenarios"
DID = "41793026731"
DIAL = json.dumps(
    {"command": "dial", "phoneNumber": "41793026785", "callerId": "41793026700"}
).encode()


async def callback_server(port: int) -> asyncio.Server:
    """The customer's routing endpoint, as cheap as an HTTP/1.1 server can be."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(DIAL), DIAL)
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", port)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# The bench caller (bench/scenarios/uac_bench.xml's From) and the agent a session
# bridges it to, for ``routing="session"``.
SESSION_CALLER = "+12125550100"
SESSION_AGENT = "+12125550199"


async def pool_the_did(workdir: Path, account_id: str, *, record: bool = False) -> None:
    """The DID in a one-number pool with a session for the bench caller and an agent,
    written through callmask's own session layer before the node starts; with
    ``record``, the session records its calls (Plivo's ``record``, mp3)."""
    from callmask.sessions.repository import (
        ParticipantRequest,
        PoolNumbers,
        Services,
        Sessions,
    )
    from callmask.store.database import Database

    database = Database(f"sqlite+aiosqlite:///{workdir / 'callmask.db'}")
    try:
        async with database.session() as session:
            service = await Services(session).create(account_id, unique_name="bench")
            await PoolNumbers(session).add(account_id, service.sid, phone_number="+" + DID)
            created = await Sessions(session).create(
                account_id,
                service.sid,
                participants=[
                    ParticipantRequest(identifier=SESSION_CALLER),
                    ParticipantRequest(identifier=SESSION_AGENT),
                ],
            )
            if record:
                created.plivo_options = json.dumps({"record": True})
                await session.commit()
    finally:
        await database.close()


@contextlib.asynccontextmanager
async def callmask_node(
    workdir: Path, env: dict[str, str], *, routing: str = "action", record: bool = False
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``routing``: "action" (the DID has an Infobip masking action calling the bench's
    callback) or "session" (the DID is a pool number; calls route by session)."""
    callmask = str(ROOT / ".venv" / "bin" / "callmask")

    def cli(*args: str) -> str:
        return subprocess.run(
            [callmask, *args], env=env, check=True, capture_output=True, text=True, timeout=60
        ).stdout

    cli("db", "upgrade")
    account = cli("accounts", "create", "bench").split()
    account_id, api_key = account[2], account[5]
    number_key = cli("numbers", "add", "+" + DID, "--account", account_id).split()[0]
    if routing == "session":
        await pool_the_did(workdir, account_id, record=record)
    log = (workdir / "callmask.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        callmask, "run", env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        import httpx

        api = f"http://127.0.0.1:{env['CALLMASK_API_PORT']}"
        async with httpx.AsyncClient(base_url=api, timeout=5) as http:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                tail = (workdir / "callmask.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"callmask did not start:\n{tail}")
            if routing == "session":
                yield process
                return
            reply = await http.post(
                f"/numbers/1/numbers/{number_key}/actions",
                headers={"Authorization": f"App {api_key}"},
                json={
                    "type": "VOICE_NUMBER_MASKING",
                    "callbackUrl": f"http://127.0.0.1:{env['BENCH_CALLBACK_PORT']}/callback",
                    "statusUrl": f"http://127.0.0.1:{env['BENCH_CALLBACK_PORT']}/status",
                },
            )
            reply.raise_for_status()
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()
        log.close()


def node_env(workdir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLMASK_")}
    env |= {
        "CALLMASK_DATA_DIR": str(workdir),
        "CALLMASK_API_PORT": str(free_udp_port()),
        "CALLMASK_SIP_PORT": str(free_udp_port()),
        "CALLMASK_TRUNK_URI": f"sip:127.0.0.1:{free_udp_port()}",
        "CALLMASK_RTPENGINE_NG_PORT": str(free_udp_port()),
        # Below the kernel's ephemeral range, where the free ports above come from.
        "CALLMASK_RTPENGINE_PORT_MIN": "20000",
        "CALLMASK_RTPENGINE_PORT_MAX": "29999",
        "CALLMASK_WEBHOOK_ALLOW_PRIVATE": "true",
        "CALLMASK_LOG_LEVEL": "WARNING",
        "CALLMASK_ADMIN_KEY": ADMIN_KEY,
        "BENCH_CALLBACK_PORT": str(free_udp_port()),
    }
    return env | overrides


def ports(env: dict[str, str]) -> tuple[int, int]:
    """The node's SIP port and the trunk port the far end listens on."""
    return int(env["CALLMASK_SIP_PORT"]), int(env["CALLMASK_TRUNK_URI"].rsplit(":", 1)[1])


async def active_calls(env: dict[str, str]) -> int:
    """The node's own count of calls in progress (its /metrics gauge)."""
    url = f"http://127.0.0.1:{env['CALLMASK_API_PORT']}/metrics"
    async with httpx.AsyncClient(timeout=5) as http:
        reply = await http.get(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    for line in reply.text.splitlines():
        if line.startswith("callmask_active_calls "):
            return int(float(line.split()[1]))
    return 0
