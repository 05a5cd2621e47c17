"""Calls per second through callmask: SIPp UAC -> callmask -> SIPp UAS, routing callback on
loopback, media anchored in a managed rtpengine, status reports delivered, 1 s calls.

Starts its own ``callmask run`` (SQLite in a temporary directory, log level WARNING),
its own callback server (which also takes the status reports) and SIPp far end, then
one SIPp caller that ramps the offered rate up in steps with SIPp's own
``-rate_increase``: ``--start`` calls/s for ``--step-seconds``, then ``--step`` more,
up to ``--max``. A step is sustained when at least 99.9 % of the calls that ended in it
succeeded, and so were all steps below it. Post-dial delay is what callmask adds between
the caller's INVITE and the outbound INVITE with the callback's time taken out; it is
read from each call's CDR and grouped by the step the INVITE came in.

    .venv/bin/python bench/cps.py --start 100 --step 100 --max 700 --step-seconds 10

``--routing session``: the DID is a session pool number and the caller a participant,
so each call is looked up by (caller, DID), gets an interaction row and is bridged to
the other participant (bench/sessions.py runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
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

SUSTAINED_SHARE = 0.999


@dataclass
class Step:
    rate: int
    ended_ok: int = 0
    ended_failed: int = 0
    delays_ms: list[float] = field(default_factory=list)

    @property
    def share(self) -> float:
        ended = self.ended_ok + self.ended_failed
        return self.ended_ok / ended if ended else 0.0


def post_dial_delays(database: Path) -> list[tuple[float, float]]:
    """(INVITE time as Unix seconds, post-dial delay ms) of every call in the CDRs."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT strftime('%s', invited_at) + (strftime('%f', invited_at) % 1), details"
            " FROM call_records"
        ).fetchall()
    delays = []
    for invited, details in rows:
        value = json.loads(details or "{}").get("post_dial_delay_ms")
        if value is not None:
            delays.append((float(invited), float(value)))
    return delays


def ended_per_second(stat_file: Path) -> list[tuple[float, int, int]]:
    """(seconds since SIPp started, calls that succeeded, calls that failed) per row of
    SIPp's -trace_stat file (one row a second)."""
    rows = [row.split(";") for row in stat_file.read_text().splitlines() if row]
    names = rows[0]
    out = []
    for row in rows[1:]:
        values = dict(zip(names, row, strict=False))
        hours, minutes, seconds = values["ElapsedTime(C)"].split(":")[:3]
        elapsed_s = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        out.append((elapsed_s, int(values["SuccessfulCall(P)"]), int(values["FailedCall(P)"])))
    return out


def tally(steps: list[Step], workdir: Path, started: float, step_s: float, hold_s: float) -> None:
    """Fill in each step's ended calls (SIPp's statistics, a row a second) and post-dial
    delays (the CDRs, by the time their INVITE came in)."""
    (stat_file,) = workdir.glob("sipp-uac-*/stats.csv")
    for elapsed_s, ok, failed in ended_per_second(stat_file):
        # A call ends a hold after it started: count it in the step it started in.
        index = int(max(0.0, elapsed_s - hold_s - 0.5) // step_s)
        step = steps[min(index, len(steps) - 1)]
        step.ended_ok += ok
        step.ended_failed += failed
    for invited, delay_ms in post_dial_delays(workdir / "callmask.db"):
        index = int((invited - started) // step_s)
        if 0 <= index < len(steps):
            steps[index].delays_ms.append(delay_ms)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=100, help="first offered rate, calls/s")
    parser.add_argument("--step", type=int, default=100, help="rate added at each step")
    parser.add_argument("--max", type=int, default=700, help="last offered rate")
    parser.add_argument("--step-seconds", type=int, default=10)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument(
        "--routing",
        choices=("action", "session"),
        default="action",
        help="the DID's masking action asks the callback, or the DID is a pool number "
        "and each call routes by its session (no callback)",
    )
    args = parser.parse_args()
    steps = [Step(rate) for rate in range(args.start, args.max + 1, args.step)]
    total_calls = sum(step.rate * args.step_seconds for step in steps)
    duration_s = len(steps) * args.step_seconds

    with tempfile.TemporaryDirectory(prefix="callmask-cps-") as tmp:
        workdir = Path(tmp)
        env = node_env(workdir)
        sip_port, trunk_port = ports(env)
        server = await callback_server(int(env["BENCH_CALLBACK_PORT"]))
        async with (
            callmask_node(workdir, env, routing=args.routing),
            SippUas(
                str(SCENARIOS / "uas_bench.xml"),
                port=trunk_port,
                extra_args=["-max_socket", "5000"],
                trace_messages=False,
            ),
        ):
            started = time.time()
            result = await run_uac(
                str(SCENARIOS / "uac_bench.xml"),
                target=("127.0.0.1", sip_port),
                service=DID,
                calls=total_calls,
                rate=args.start,
                variables={"hold_ms": str(args.hold_ms)},
                timeout_s=duration_s + 60,
                extra_args=[
                    *("-rate_increase", str(args.step), "-rate_max", str(args.max)),
                    *("-rate_interval", f"{args.step_seconds}s", "-no_rate_quit"),
                    *("-l", str(args.max * 5)),
                ],
                workdir=workdir,
                trace_messages=False,
            )
            await asyncio.sleep(1.5)  # CDRs of the last calls
        server.close()
        tally(steps, workdir, started, args.step_seconds, args.hold_ms / 1000)

    header = ("offered cps", "calls", "ok", "success", "pdd p50 ms", "pdd p99 ms")
    print("{:>11} {:>6} {:>6} {:>8} {:>10} {:>10}".format(*header))
    best: Step | None = None
    sustained = True  # so far, every step
    for step in steps:
        delays = step.delays_ms
        p50, p99 = percentile(delays, 0.50), percentile(delays, 0.99)
        ended = step.ended_ok + step.ended_failed
        row = f"{step.rate:>11} {ended:>6} {step.ended_ok:>6} {step.share:>8.2%}"
        print(f"{row} {p50:>10.3f} {p99:>10.3f}", flush=True)
        sustained = sustained and step.share >= SUSTAINED_SHARE
        if sustained:
            best = step
    print(f"SIPp: {result.successful} successful, {result.failed} failed of {total_calls}")
    if best is None:
        print("highest sustained rate: none (>= 99.9 % success)")
        return
    delays = best.delays_ms
    p50, p99 = percentile(delays, 0.50), percentile(delays, 0.99)
    print(f"highest sustained rate: {best.rate} calls/s (>= 99.9 % success)")
    print(f"post-dial delay added at that rate: p50 {p50:.3f} ms, p99 {p99:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
