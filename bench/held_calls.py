"""Concurrent calls held without loss: SIPp places ``--calls`` calls at ``--rate`` per
second, each held ``--hold-s`` seconds, through callmask (media anchored in the managed
userspace rtpengine, no RTP played), so at the peak every call is up at once. Prints
how many completed and the peak of callmask's own active-calls gauge.

    .venv/bin/python bench/held_calls.py --calls 2000 --rate 100 --hold-s 60
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.sipp import SippUas, run_uac  # noqa: E402

from bench.node import (  # noqa: E402
    DID,
    SCENARIOS,
    active_calls,
    callback_server,
    callmask_node,
    node_env,
    ports,
)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--hold-s", type=float, default=60.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="callmask-concurrent-") as tmp:
        env = node_env(Path(tmp))
        sip_port, trunk_port = ports(env)
        server = await callback_server(int(env["BENCH_CALLBACK_PORT"]))
        peak = 0
        async with (
            callmask_node(Path(tmp), env),
            SippUas(str(SCENARIOS / "uas_bench.xml"), port=trunk_port),
        ):
            caller = asyncio.create_task(
                run_uac(
                    str(SCENARIOS / "uac_bench.xml"),
                    target=("127.0.0.1", sip_port),
                    service=DID,
                    calls=args.calls,
                    rate=args.rate,
                    variables={"hold_ms": str(int(args.hold_s * 1000))},
                    timeout_s=args.calls / args.rate + args.hold_s + 60,
                    extra_args=["-l", str(args.calls)],
                    trace_messages=False,
                )
            )
            while not caller.done():
                peak = max(peak, await active_calls(env))
                await asyncio.wait({caller}, timeout=1.0)
            result = caller.result()
        server.close()
    print(f"calls placed: {args.calls} at {args.rate:g}/s, each held {args.hold_s:g} s")
    print(f"completed: {result.successful}, failed: {result.failed}")
    print(f"peak concurrent calls in callmask: {peak}")


if __name__ == "__main__":
    asyncio.run(main())
