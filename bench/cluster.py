"""Calls per second through Kamailio to one and to two callmask nodes on one PostgreSQL,
and the post-dial delay Kamailio adds, with SIPp as the carrier on both sides.

The cluster is the one the cluster test runs (tests/cluster/rig.py): Kamailio from the
shipped deploy/kamailio/kamailio.cfg on 127.0.0.1, ``callmask run`` nodes on 127.0.0.2
and 127.0.0.3, each with its own managed rtpengine, all on a scratch PostgreSQL
database (created here, dropped at the end). The carrier's caller (SIPp UAC) sends to
Kamailio; the nodes' outbound legs go through Kamailio to the carrier's far end (SIPp
UAS), which rings and answers. Every call: routing callback on loopback, media anchored
(no RTP played), 1 s talk, CDR and status report.

Kamailio runs with the shipped configuration's timers and probe interval; only its
shared memory is raised (see KAMAILIO_SHM_MB).

1. Delay: ``--delay-seconds`` worth of calls at ``--delay-rate`` calls/s on each of two
   paths, in ``--delay-rounds`` alternating rounds: directly to a node whose trunk is
   the far end (no Kamailio on either leg; node 3 on 127.0.0.4, stopped afterwards),
   and through Kamailio to node 1 (both legs through it, as in production). The post-dial delay is
   INVITE -> first 180/200 at the caller, from SIPp's message trace (microseconds; its
   response-time statistics count in 4 ms ticks). The difference is what Kamailio adds.
2. CPS ramp through Kamailio to node 1 alone, then to nodes 1 and 2: ``--start``,
   ``--start`` + ``--step``, ... calls/s, each step one SIPp run of ``--step-seconds``
   worth of calls; the ramp stops after the first step under 99.9 % of its offered calls
   completed (or at ``--max``).

Skipped with a message (exit 0) when Kamailio, SIPp, rtpengine or PostgreSQL is missing.

    .venv/bin/python bench/cluster.py --start 100 --step 100 --max 1000 --step-seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # type: ignore[import-untyped]  # noqa: E402
import httpx  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from tests.cluster.rig import ADMIN_KEY, SCENARIOS, Kamailio, Node, kamailio_missing  # noqa: E402
from tests.support.sipp import (  # noqa: E402
    SippResult,
    SippTimeoutError,
    SippUas,
    free_udp_port,
    run_uac,
)

from bench.node import DID, callback_server, percentile  # noqa: E402

SUSTAINED_SHARE = 0.999
POSTGRES = os.environ.get(
    "CALLMASK_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# deploy/kamailio/kamailio.cfg's defaults (the cluster test shortens the timers).
KAMAILIO_CHILDREN = 4
SHIPPED_PING_INTERVAL_S = 5
SHIPPED_FR_TIMER_MS = 2000
SHIPPED_FR_INV_TIMER_MS = 180_000
# Debian's unit starts Kamailio with 64 MB of shared memory (SHM_MEMORY), where every
# transaction lives until tm's wait timer (5 s) after it ends: about four per call. At
# 300 calls/s that ran out ("out of mem" in t_newtran, the call refused with 500), so the
# bench gives it what an operator would set in /etc/default/kamailio for such rates.
KAMAILIO_SHM_MB = 512
SETTLE_S = 15.0  # at most, for a step's last calls to end on the nodes


@dataclass
class Step:
    rate: int
    offered: int
    ok: int
    failed: int
    per_node: list[int] = field(default_factory=list)  # calls each node took

    @property
    def share(self) -> float:
        return self.ok / self.offered if self.offered else 0.0


@dataclass
class Delays:
    """INVITE -> first 180 or 200 at the caller, ms, one value per call."""

    values_ms: list[float]
    calls: int
    ok: int

    @property
    def p50(self) -> float:
        return percentile(self.values_ms, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.values_ms, 0.99)


# -------------------------------------------------------------------- the store


def admin_dsn(server_url: str) -> str:
    return make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def postgres_unusable(server_url: str) -> str | None:
    """Why the server cannot be used, or None."""
    try:
        connection = await asyncpg.connect(admin_dsn(server_url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    await connection.close()
    return None


@contextlib.asynccontextmanager
async def scratch_database(server_url: str, *, keep: bool = False) -> AsyncIterator[str]:
    """A new, migrated database on the server, dropped afterwards unless ``keep``."""
    from callmask.store.migrate import upgrade

    base = make_url(server_url)
    name = f"callmask_bench_cluster_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(admin_dsn(server_url), timeout=3)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        url = base.set(database=name).render_as_string(hide_password=False)
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        if keep:
            print(f"database kept: {name}")
        else:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


async def seed(url: str, callback_port: int) -> None:
    """One account, the DID, its masking action asking the bench's callback."""
    from callmask.accounts import create_account
    from callmask.phone import region_of
    from callmask.store.database import Database
    from callmask.store.repositories import Actions, Numbers

    did = "+" + DID
    database = Database(url)
    try:
        async with database.session() as session:
            account, _ = await create_account(session, "bench")
            number = await Numbers(session).add_to_inventory(did, region_of(did), account.id)
            await Actions(session).create(
                account.id,
                number.number_key,
                type_="VOICE_NUMBER_MASKING",
                callback_url=f"http://127.0.0.1:{callback_port}/callback",
                status_url=f"http://127.0.0.1:{callback_port}/status",
            )
    finally:
        await database.close()


@dataclass
class Outcome:
    """What the store holds once every node has stopped."""

    records: int
    closed_at_stop: int  # calls still up when their node stopped (their caller gone)
    reports_delivered: int
    reports: int


async def outcome(url: str) -> Outcome:
    from sqlalchemy import func, select

    from callmask.store.database import Database
    from callmask.store.models import CallRecord, WebhookEvent

    database = Database(url)
    try:
        async with database.session() as session:
            count = select(func.count())
            return Outcome(
                records=await session.scalar(count.select_from(CallRecord)) or 0,
                closed_at_stop=await session.scalar(
                    count.select_from(CallRecord).where(
                        CallRecord.hangup_cause.like("%shutting down%")
                    )
                )
                or 0,
                reports_delivered=await session.scalar(
                    count.select_from(WebhookEvent).where(WebhookEvent.status == "delivered")
                )
                or 0,
                reports=await session.scalar(count.select_from(WebhookEvent)) or 0,
            )
    finally:
        await database.close()


# -------------------------------------------------------------------- the nodes


async def node_metric(node: Node, name: str) -> float:
    async with httpx.AsyncClient(base_url=node.api_url, timeout=5) as http:
        reply = await http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    for line in reply.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def settle(nodes: list[Node]) -> None:
    """Until no node has a call up (bounded): the next step starts from idle."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        active = [await node_metric(node, "callmask_active_calls") for node in nodes]
        if not any(active):
            return
        await asyncio.sleep(0.25)


async def started_calls(nodes: list[Node]) -> list[int]:
    return [int(await node_metric(node, "callmask_calls_started_total")) for node in nodes]


# -------------------------------------------------------------------- the carrier


async def caller(
    target: tuple[str, int],
    *,
    calls: int,
    rate: int,
    hold_ms: int,
    workdir: Path,
    trace_messages: bool,
) -> SippResult:
    """One SIPp caller run, bounded by its call count's duration plus a margin."""
    duration_s = calls / rate + hold_ms / 1000
    extra = ["-l", str(rate * 5)]
    try:
        return await run_uac(
            str(SCENARIOS / "uac_cluster.xml"),
            target=target,
            service=DID,
            calls=calls,
            rate=rate,
            variables={"hold_ms": str(hold_ms)},
            timeout_s=duration_s + 20,
            extra_args=extra,
            workdir=workdir,
            trace_messages=trace_messages,
        )
    except SippTimeoutError as exc:
        return exc.result


def post_dial_delays_ms(result: SippResult) -> list[float]:
    """INVITE sent -> first 180 or 200 to it received, per call, from the message trace."""
    invited: dict[str, float] = {}
    rung: dict[str, float] = {}
    for message in result.messages:
        call_id = message.call_id
        if call_id is None:
            continue
        if message.direction == "sent" and message.method == "INVITE":
            invited.setdefault(call_id, message.timestamp)
        elif (
            message.direction == "received"
            and message.cseq_method == "INVITE"
            and message.status in (180, 200)
        ):
            rung.setdefault(call_id, message.timestamp)
    return [(rung[c] - invited[c]) * 1000 for c in invited if c in rung]


async def measure_delays(
    paths: dict[str, tuple[str, int]], args: argparse.Namespace, workdir: Path
) -> dict[str, Delays]:
    """The post-dial delay of each path (name: where the caller sends), in alternating
    rounds so that whatever else the machine does weighs on every path alike."""
    rate, hold_ms = args.delay_rate, args.hold_ms
    per_round = max(1, rate * args.delay_seconds // args.delay_rounds)
    delays = {name: Delays([], 0, 0) for name in paths}
    # A second of calls on each path first, not counted: the first calls pay for caches.
    for target in paths.values():
        await caller(
            target, calls=rate, rate=rate, hold_ms=hold_ms, workdir=workdir,
            trace_messages=False,
        )  # fmt: skip
    for _ in range(args.delay_rounds):
        for name, target in paths.items():
            result = await caller(
                target, calls=per_round, rate=rate, hold_ms=hold_ms, workdir=workdir,
                trace_messages=True,
            )  # fmt: skip
            delays[name].values_ms.extend(post_dial_delays_ms(result))
            delays[name].calls += per_round
            delays[name].ok += result.successful
    return delays


async def ramp(
    label: str,
    target: tuple[str, int],
    nodes: list[Node],
    args: argparse.Namespace,
    workdir: Path,
) -> list[Step]:
    """The steps run, up to the first one under 99.9 %."""
    steps: list[Step] = []
    for rate in range(args.start, args.max + 1, args.step):
        before = await started_calls(nodes)
        offered = rate * args.step_seconds
        result = await caller(
            target,
            calls=offered,
            rate=rate,
            hold_ms=args.hold_ms,
            workdir=workdir,
            trace_messages=False,
        )
        await settle(nodes)
        after = await started_calls(nodes)
        taken = [a - b for a, b in zip(after, before, strict=True)]
        step = Step(rate, offered, result.successful, result.failed, taken)
        steps.append(step)
        print(
            f"{label:<17} {rate:>11} {offered:>6} {step.ok:>6} {step.failed:>6}"
            f" {step.share:>8.2%}  {' / '.join(map(str, taken))}",
            flush=True,
        )
        if step.share < SUSTAINED_SHARE:
            break
    return steps


def sustained(steps: list[Step]) -> Step | None:
    best = None
    for step in steps:
        if step.share < SUSTAINED_SHARE:
            break
        best = step
    return best


# -------------------------------------------------------------------- the run


@dataclass
class Cluster:
    workdir: Path
    database_url: str
    trunk_port: int
    shm_mb: int = KAMAILIO_SHM_MB
    kamailio_port: int = field(default_factory=free_udp_port)
    nodes: list[Node] = field(default_factory=list)
    kamailio: Kamailio | None = None

    def node(self, n: int, trunk_uri: str) -> Node:
        # 4 ports a call: 1,000 calls up at once each, below the kernel's ephemeral ports.
        media = 20000 + (n - 1) * 4000
        node = Node(
            f"node-{n}",
            self.workdir / f"node-{n}",
            self.database_url,
            sip_host=f"127.0.0.{n + 1}",
            trunk_uri=trunk_uri,
            media_ports=(media, media + 3999),
            log_level="WARNING",
        )
        self.nodes.append(node)
        return node

    async def dispatch_to(self, nodes: list[Node], name: str) -> Kamailio:
        """Kamailio (again on the same port, the nodes' trunk) over exactly ``nodes``."""
        await self.stop_kamailio()
        self.kamailio = Kamailio(
            self.workdir / name,
            [(node.sip_host, node.sip_port) for node in nodes],
            self.trunk_port,
            port=self.kamailio_port,
            ping_interval_s=SHIPPED_PING_INTERVAL_S,
            fr_timer_ms=SHIPPED_FR_TIMER_MS,
            fr_inv_timer_ms=SHIPPED_FR_INV_TIMER_MS,
            children=KAMAILIO_CHILDREN,
            shm_mb=self.shm_mb,
        )
        await self.kamailio.start()
        await self.kamailio.wait_for_states({node.sip_uri: "AP" for node in nodes})
        return self.kamailio

    async def stop_kamailio(self) -> None:
        if self.kamailio is not None:
            await self.kamailio.stop()
            self.kamailio = None

    async def stop(self) -> None:
        await self.stop_kamailio()
        await asyncio.gather(*(node.stop() for node in self.nodes))


def kamailio_version() -> str:
    done = subprocess.run(["kamailio", "-v"], capture_output=True, text=True, timeout=10)
    first = done.stdout.splitlines()[0] if done.stdout else "kamailio"
    return first.replace("version: ", "").strip()


async def run(args: argparse.Namespace, database_url: str, workdir: Path) -> None:
    callback_port = free_udp_port()
    await seed(database_url, callback_port)
    server = await callback_server(callback_port)
    trunk_port = free_udp_port()
    cluster = Cluster(workdir, database_url, trunk_port, shm_mb=args.kamailio_shm_mb)
    try:
        async with SippUas(
            str(SCENARIOS / "uas_cluster.xml"),
            port=trunk_port,
            extra_args=["-max_socket", "5000"],
            trace_messages=False,
        ):
            # 1. The delay: node 1 behind Kamailio, its trunk Kamailio (the production
            # path), against node 3 alone, the caller sending to it and its trunk the far
            # end (no Kamailio on either leg).
            behind = f"sip:127.0.0.1:{cluster.kamailio_port}"
            one = cluster.node(1, behind)
            alone = cluster.node(3, f"sip:127.0.0.1:{trunk_port}")
            await asyncio.gather(one.start(), alone.start())
            kamailio = await cluster.dispatch_to([one], "kamailio-one-node")
            target = ("127.0.0.1", kamailio.port)
            delays = await measure_delays(
                {"direct": (alone.sip_host, alone.sip_port), "through": target}, args, workdir
            )
            await settle([one, alone])
            (alone_started,) = await started_calls([alone])
            await alone.stop()

            header = ("path", "offered cps", "calls", "ok", "failed", "success", "per node")
            print("{:<17} {:>11} {:>6} {:>6} {:>6} {:>8}  {}".format(*header), flush=True)
            one_steps = await ramp("kamailio, 1 node", target, [one], args, workdir)

            # 3. Nodes 1 and 2 behind Kamailio.
            two = cluster.node(2, behind)
            await two.start()
            await cluster.dispatch_to([one, two], "kamailio-two-nodes")
            two_steps = await ramp("kamailio, 2 nodes", target, [one, two], args, workdir)
            await settle([one, two])
            started = sum(await started_calls([one, two])) + alone_started
    finally:
        await cluster.stop()
        server.close()
        await server.wait_closed()

    report(args, delays["direct"], delays["through"], one_steps, two_steps)
    store = await outcome(database_url)
    print(
        f"CDRs in PostgreSQL: {store.records} for {started} calls the nodes started"
        f" ({store.closed_at_stop} of them closed when the nodes stopped: calls still up"
        f" because their caller gave up); status reports delivered: {store.reports_delivered}"
        f" of {store.reports}"
    )


def report(
    args: argparse.Namespace,
    direct: Delays,
    through: Delays,
    one_steps: list[Step],
    two_steps: list[Step],
) -> None:
    print()
    for label, steps in (("one node", one_steps), ("two nodes", two_steps)):
        best = sustained(steps)
        tail = "" if best is None or best is not steps[-1] else ", the highest offered"
        value = f"{best.rate} calls/s{tail}" if best else "none"
        print(f"sustained CPS through Kamailio, {label} (>= 99.9 % success): {value}")
    taken = [sum(step.per_node[n] for step in two_steps) for n in (0, 1)]
    print(f"calls taken in the two-node ramp: node-1 {taken[0]}, node-2 {taken[1]}")
    for label, delays in (("directly to a node", direct), ("through Kamailio", through)):
        print(
            f"post-dial delay at the carrier (INVITE -> 180) at {args.delay_rate} calls/s,"
            f" {label}: p50 {delays.p50:.3f} ms, p99 {delays.p99:.3f} ms"
            f" ({len(delays.values_ms)} of {delays.calls} calls)"
        )
    print(
        f"Kamailio's added delay (through minus direct): p50 {through.p50 - direct.p50:.3f} ms,"
        f" p99 {through.p99 - direct.p99:.3f} ms"
    )
    print(
        f"machine: {os.cpu_count()} cores shared by Kamailio ({KAMAILIO_CHILDREN} UDP"
        " children), both callmask nodes and their rtpengines, the SIPp caller and far end,"
        " the callback server and PostgreSQL: a second node adds processes, not cores, so"
        " two nodes cannot show 2x one node here (on separate machines each node brings"
        " its own cores, and what the nodes share is PostgreSQL and Kamailio)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=100, help="first offered rate, calls/s")
    parser.add_argument("--step", type=int, default=100, help="rate added at each step")
    parser.add_argument("--max", type=int, default=1000, help="last offered rate")
    parser.add_argument("--step-seconds", type=int, default=10)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument("--delay-rate", type=int, default=50, help="calls/s of the delay runs")
    parser.add_argument("--delay-seconds", type=int, default=20, help="of calls, each path")
    parser.add_argument(
        "--delay-rounds",
        type=int,
        default=10,
        help="alternating rounds the delay calls are split into (load from elsewhere on"
        " the machine then weighs on both paths alike)",
    )
    parser.add_argument("--server-url", default=POSTGRES, help="PostgreSQL to make a database on")
    parser.add_argument(
        "--kamailio-shm-mb", type=int, default=KAMAILIO_SHM_MB, help="Kamailio's -m"
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep Kamailio's, the nodes' and SIPp's logs and the database",
    )
    args = parser.parse_args()

    missing = kamailio_missing()
    if missing:
        print(f"cluster bench SKIPPED: {missing}")
        return
    unusable = await postgres_unusable(args.server_url)
    if unusable:
        print(f"cluster bench SKIPPED: PostgreSQL at {args.server_url} not usable: {unusable}")
        return
    print(
        f"{kamailio_version()}, -m {args.kamailio_shm_mb} MB, {KAMAILIO_CHILDREN} children;"
        " callmask nodes on 127.0.0.2 and 127.0.0.3; PostgreSQL"
        f" {make_url(args.server_url).host}; 1 s calls, media anchored, CDR and report each",
        flush=True,
    )
    if args.keep_logs:
        workdir = Path(tempfile.mkdtemp(prefix="callmask-cluster-bench-"))
        async with scratch_database(args.server_url, keep=True) as url:
            await run(args, url, workdir)
        print(f"logs kept in {workdir}")
        return
    with tempfile.TemporaryDirectory(prefix="callmask-cluster-bench-") as tmp:
        async with scratch_database(args.server_url) as url:
            await run(args, url, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
