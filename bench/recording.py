"""What recording costs: calls with media on both sides (SIPp plays G.711 as each
party), through a session, recorded (consent announcement, rtpengine pcap, mixed MP3)
or not; at each ``--rates`` step, ``--seconds`` of calls of ``--hold-ms``.

    .venv/bin/python bench/recording.py --rates 5,10,20 --seconds 10 --hold-ms 3000

Per step and mode it prints the calls SIPp completed, the recordings completed and
failed (recorded runs: a step is sustained when at least 99.9 % of its calls left a
completed recording), and the CPU time callmask and its managed rtpengine used, per
call (``/proc/<pid>/stat`` utime + stime + the waited-for children's, so the lame
encoders count, before and after the step, including the mixing, which runs after the
calls end). Each step runs on a node of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.sipp import SippUas, run_uac  # noqa: E402

from bench.node import DID, SESSION_CALLER, callmask_node, node_env, ports  # noqa: E402

SCENARIOS = ROOT / "tests" / "interop" / "scenarios"
SUSTAINED_SHARE = 0.999
TICKS = os.sysconf("SC_CLK_TCK")
SETTLE_TIMEOUT_S = 120


def cpu_seconds(pid: int) -> float:
    """The process's CPU time, with that of its children it has waited for (callmask's
    lame encoders)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / TICKS  # utime stime cutime cstime


def recordings(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT status, count(*) FROM recordings GROUP BY status")
        return dict(rows.fetchall())


async def settled(database: Path, calls: int) -> dict[str, int]:
    """The recordings once none is in progress (bounded in time)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        counts = recordings(database)
        done = counts.get("completed", 0) + counts.get("failed", 0)
        if (done >= calls and not counts.get("in-progress")) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.5)


async def step(rate: int, seconds: int, hold_ms: int, *, record: bool) -> None:
    calls = rate * seconds
    with tempfile.TemporaryDirectory(prefix="callmask-rec-") as tmp:
        workdir = Path(tmp)
        env = node_env(workdir, CALLMASK_LOG_LEVEL="WARNING")
        sip_port, trunk_port = ports(env)
        async with (
            callmask_node(workdir, env, routing="session", record=record) as node,
            SippUas(
                "uas_answer.xml",
                port=trunk_port,
                extra_args=["-max_socket", "5000"],
                trace_messages=False,
            ),
        ):
            rtpengine = int((workdir / "rtpengine.pid").read_text())
            before = cpu_seconds(node.pid), cpu_seconds(rtpengine)
            result = await run_uac(
                str(SCENARIOS / "uac_call.xml"),
                target=("127.0.0.1", sip_port),
                service=DID,
                calls=calls,
                rate=rate,
                variables={"caller": SESSION_CALLER.removeprefix("+"), "hold_ms": str(hold_ms)},
                timeout_s=seconds + hold_ms / 1000 + 60,
                extra_args=["-l", str(rate * (hold_ms // 1000 + 5))],
                workdir=workdir,
                trace_messages=False,
            )
            counts = await settled(workdir / "callmask.db", result.successful) if record else {}
            after = cpu_seconds(node.pid), cpu_seconds(rtpengine)
    done = max(result.successful, 1)
    callmask_ms = (after[0] - before[0]) * 1000 / done
    rtpengine_ms = (after[1] - before[1]) * 1000 / done
    completed, failed = counts.get("completed", 0), counts.get("failed", 0)
    share = completed / calls if record else result.successful / calls
    print(
        f"{rate:>5} {'on' if record else 'off':>6} {calls:>6} {result.successful:>6} "
        f"{completed:>6} {failed:>6} {share:>8.2%} {callmask_ms:>12.1f} {rtpengine_ms:>13.1f}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5,10,20", help="calls/s, comma-separated")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--hold-ms", type=int, default=3000)
    args = parser.parse_args()
    header = ("cps", "record", "calls", "sipp", "rec ok", "failed", "success")
    print("{:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8}".format(*header), end="")
    print(" {:>12} {:>13}".format("callmask ms", "rtpengine ms"))
    for rate in (int(r) for r in args.rates.split(",")):
        for record in (False, True):
            await step(rate, args.seconds, args.hold_ms, record=record)
    print(
        f"success: SIPp calls completed (record off) or recordings completed (on) of all; "
        f"sustained when >= {SUSTAINED_SHARE:.1%}"
    )


if __name__ == "__main__":
    asyncio.run(main())
