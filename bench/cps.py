"""Calls per second through callmask: SIPp UAC -> callmask -> SIPp UAS, routing callback on
loopback, media anchored in a managed rtpengine, 1 s calls.

Starts its own ``callmask run`` (SQLite in a temporary directory, log level WARNING),
its own callback server and SIPp far end, then steps the offered rate up
(``--rates``), ``--seconds`` at each. A step is sustained when at least 99.9 % of its
calls succeed. Post-dial delay is what callmask adds between the caller's INVITE and
the outbound INVITE with the callback's time taken out; it is read from each call's CDR.

    .venv/bin/python bench/cps.py --rates 50,100,200,300,400 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.sipp import SippUas, free_udp_port, run_uac  # noqa: E402

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


@contextlib.asynccontextmanager
async def callmask_node(workdir: Path, env: dict[str, str]) -> AsyncIterator[None]:
    callmask = str(ROOT / ".venv" / "bin" / "callmask")

    def cli(*args: str) -> str:
        return subprocess.run(
            [callmask, *args], env=env, check=True, capture_output=True, text=True, timeout=60
        ).stdout

    cli("db", "upgrade")
    account = cli("accounts", "create", "bench").split()
    account_id, api_key = account[2], account[5]
    number_key = cli("numbers", "add", "+" + DID, "--account", account_id).split()[0]
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
                raise RuntimeError(f"callmask did not start; see {workdir / 'callmask.log'}")
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
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()
        log.close()


def post_dial_delays(database: Path, since: float) -> list[float]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT details FROM call_records WHERE invited_at >= ?",
            (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(since)),),
        ).fetchall()
    delays = []
    for (details,) in rows:
        value = json.loads(details or "{}").get("post_dial_delay_ms")
        if value is not None:
            delays.append(float(value))
    return delays


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,100,200,300,400")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hold-ms", type=int, default=1000)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    with tempfile.TemporaryDirectory(prefix="callmask-cps-") as tmp:
        workdir = Path(tmp)
        sip_port, trunk_port = free_udp_port(), free_udp_port()
        callback_port = free_udp_port()
        env = {
            **os.environ,
            "CALLMASK_DATA_DIR": str(workdir),
            "CALLMASK_API_PORT": str(free_udp_port()),
            "CALLMASK_SIP_PORT": str(sip_port),
            "CALLMASK_TRUNK_URI": f"sip:127.0.0.1:{trunk_port}",
            "CALLMASK_RTPENGINE_NG_PORT": str(free_udp_port()),
            "CALLMASK_RTPENGINE_PORT_MIN": "40000",
            "CALLMASK_RTPENGINE_PORT_MAX": "49999",
            "CALLMASK_WEBHOOK_ALLOW_PRIVATE": "true",
            "CALLMASK_LOG_LEVEL": "WARNING",
            "BENCH_CALLBACK_PORT": str(callback_port),
        }
        server = await callback_server(callback_port)
        header = ("offered cps", "calls", "ok", "success", "pdd p50 ms", "pdd p99 ms")
        print("{:>11} {:>6} {:>6} {:>8} {:>10} {:>10}".format(*header))
        best = 0.0
        best_pdd = (float("nan"), float("nan"))
        async with (
            callmask_node(workdir, env),
            SippUas(
                str(SCENARIOS / "uas_bench.xml"),
                port=trunk_port,
                extra_args=["-max_socket", "5000"],
            ),
        ):
            for rate in rates:
                calls = int(rate * args.seconds)
                started = time.time() - 1
                result = await run_uac(
                    str(SCENARIOS / "uac_bench.xml"),
                    target=("127.0.0.1", sip_port),
                    service=DID,
                    calls=calls,
                    rate=rate,
                    variables={"hold_ms": str(args.hold_ms)},
                    timeout_s=args.seconds + 60,
                    extra_args=["-l", str(int(rate * 5))],
                )
                await asyncio.sleep(1.5)  # CDRs of the last calls
                delays = post_dial_delays(workdir / "callmask.db", started)
                share = result.successful / calls if calls else 0.0
                p50, p99 = percentile(delays, 0.50), percentile(delays, 0.99)
                row = f"{rate:>11.0f} {calls:>6} {result.successful:>6} {share:>8.2%}"
                print(f"{row} {p50:>10.3f} {p99:>10.3f}", flush=True)
                if share < 0.999:
                    break
                best, best_pdd = rate, (p50, p99)
        server.close()
        print(f"highest sustained rate: {best:.0f} calls/s (>= 99.9 % success)")
        p50, p99 = best_pdd
        print(f"post-dial delay added at that rate: p50 {p50:.3f} ms, p99 {p99:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
