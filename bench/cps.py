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
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.sipp import SippUas, run_uac  # noqa: E402

from bench.node import (  # noqa: E402
    DID,
    SCENARIOS,
    callback_server,
    callmask_node,
    node_env,
    percentile,
    ports,
)


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
        env = node_env(workdir)
        sip_port, trunk_port = ports(env)
        callback_port = int(env["BENCH_CALLBACK_PORT"])
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
