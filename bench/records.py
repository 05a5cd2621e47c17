"""Call-records bench: p50/p99 of ``GET /v1/call/records`` over 1,000,000 CDRs on PostgreSQL.

    .venv/bin/python bench/records.py [--server-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]
                                      [--rows 1000000] [--accounts 1] [--runs 200] [--keep]

What it does, in this order:

1. creates a scratch database ``callmask_bench_records_<pid>`` on the server of
   ``--server-url`` and migrates it to head (so the indexes and the triggers that keep
   the daily counts are the migration's, and the COPY below goes through them);
2. creates ``--accounts`` accounts, 50 agents for the measured (first) account, and
   ``--rows`` CDRs with ``COPY`` in batches of 100,000, the measured account holding
   ``1/accounts`` of them (default: all 1,000,000, the worst case for it), spread over
   one year, with the mix of directions, services, statuses, durations, departments
   and repeat customers described in ``make_rows``;
3. ``VACUUM ANALYZE`` (what autovacuum does to a table that stopped changing; it sets
   the visibility map that index-only counts need);
4. starts the real app (``create_app``) over the scratch database and sends the typical
   filtered queries below through an httpx ASGI client with the account's key, ``--runs``
   times each with different parameters (days, customers, agents) after 5 warm-up runs;
5. prints p50/p99/max per query, and drops the database unless ``--keep``.

Loading is bounded by ``--load-timeout-s``; every query run by the request count.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
from sqlalchemy.engine import make_url

from callmask.api.app import create_app
from callmask.config import Settings
from callmask.store.database import Database
from callmask.store.migrate import upgrade
from callmask.store.repositories import Accounts
from callmask.store.tata_repositories import Agents

YEAR_END = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
YEAR_START = YEAR_END - dt.timedelta(days=365)
BATCH_ROWS = 100_000
AGENTS = 50
CUSTOMERS = 200_000
DIDS = [f"+9180690{i:05d}" for i in range(20)]
COLUMNS = (
    "id",
    "call_id",
    "account_id",
    "direction",
    "service",
    "did",
    "caller",
    "callee",
    "caller_id_shown",
    "a_sip_call_id",
    "b_sip_call_id",
    "invited_at",
    "ringing_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "call_duration_s",
    "status",
    "sip_code",
    "hangup_cause",
    "hangup_by",
    "agent_id",
    "custom_identifier",
    "broadcast_id",
    "department",
    "ivr",
)
STATUSES = [
    ("answered", None, "normal clearing"),
    ("no answer", 480, "no answer"),
    ("busy", 486, "user busy"),
    ("failed", None, "routing failed"),
    ("congestion", 503, "service unavailable"),
]
STATUS_WEIGHTS = [65, 15, 10, 5, 5]


def customer(rng: random.Random) -> str:
    # A Pareto-ish pick: some customers call often, most rarely.
    return f"+9198{int(CUSTOMERS * rng.random() ** 2):08d}"


def make_rows(
    rng: random.Random,
    count: int,
    first: int,
    account_ids: list[str],
    agents: list[tuple[int, str]],
) -> Iterator[tuple[Any, ...]]:
    """``count`` CDRs: 60 % inbound (70 % anonymize, 30 % number masking), 40 % outbound
    (75 % click-to-call with an agent, 25 % OTP broadcast); 65 % answered; talk time
    exponential around 2 minutes; 30 % of inbound calls carry a department, 20 % an IVR.
    The first account gets ``1/len(account_ids)`` of the rows."""
    span_s = (YEAR_END - YEAR_START).total_seconds()
    for n in range(first, first + count):
        account_id = account_ids[n % len(account_ids)]
        invited = YEAR_START + dt.timedelta(seconds=rng.random() * span_s)
        status, sip_code, cause = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        ring_s = rng.uniform(2, 25)
        talk_s = int(rng.expovariate(1 / 120)) + 1 if status == "answered" else 0
        call_s = round(ring_s + talk_s)
        did = DIDS[n % len(DIDS)]
        agent_id, agent_number = agents[rng.randrange(len(agents))]
        department = ivr = broadcast_id = custom_identifier = None
        if rng.random() < 0.6:
            direction = "inbound"
            service = "anonymize" if rng.random() < 0.7 else "number_masking"
            caller, callee = customer(rng), agent_number
            if rng.random() < 0.3:
                department = rng.choice(("sales", "support", "billing"))
            if rng.random() < 0.2:
                ivr = rng.choice(("main", "night"))
        else:
            direction = "outbound"
            if rng.random() < 0.75:
                service = "click_to_call"
                caller, callee = agent_number, customer(rng)
                custom_identifier = f"order-{n}"
            else:
                service, agent_id = "broadcast", 0
                caller, callee = did, customer(rng)
                broadcast_id = "b" * 32
        answered = invited + dt.timedelta(seconds=ring_s) if status == "answered" else None
        yield (
            uuid.UUID(int=rng.getrandbits(128)).hex,
            f"{int(invited.timestamp())}.{n % 1_000_000:06d}",
            account_id,
            direction,
            service,
            did,
            caller,
            callee,
            did,
            f"{n}-a@bench",
            f"{n}-b@bench",
            invited,
            invited + dt.timedelta(seconds=1),
            answered,
            invited + dt.timedelta(seconds=call_s),
            talk_s,
            call_s,
            status,
            sip_code,
            cause,
            "caller",
            agent_id or None,
            custom_identifier,
            broadcast_id,
            department,
            ivr,
        )


@dataclass
class Sample:
    """What the queries pick their parameters from: the measured account's key, some of
    its call ids, numbers of clients that really called, and its agents."""

    api_key: str
    call_ids: list[str]
    clients: list[str]
    agent_ids: list[int]


@dataclass
class Query:
    name: str
    params: Callable[[random.Random], dict[str, str]]


def day(rng: random.Random, days_back: int = 1) -> tuple[str, str]:
    start = YEAR_END - dt.timedelta(days=rng.randrange(days_back, 300))
    end = start + dt.timedelta(days=days_back) - dt.timedelta(seconds=1)
    return start.strftime("%Y-%m-%d %H:%M:%S"), end.strftime("%Y-%m-%d %H:%M:%S")


def queries(sample: Sample) -> list[Query]:
    def window(days: int, **extra: str) -> Callable[[random.Random], dict[str, str]]:
        def params(rng: random.Random) -> dict[str, str]:
            start, end = day(rng, days)
            return {"from_date": start, "to_date": end, **extra}

        return params

    return [
        Query("first page, no filter (count of all rows)", lambda rng: {}),
        Query("one day", window(1)),
        Query("one day, page 5 of 50", window(1, limit="50", page="5")),
        Query("7 days, missed (call_type=m)", window(7, call_type="m")),
        Query(
            "30 days, outbound click-to-call",
            window(30, direction="outbound", services="Click to Call"),
        ),
        Query("30 days, duration >= 60", window(30, duration="60", operator=">=")),
        Query("30 days, department=sales", window(30, department="sales")),
        Query("30 days, page 20 of 50", window(30, limit="50", page="20")),
        Query("call_id lookup", lambda rng: {"call_id": rng.choice(sample.call_ids)}),
        # The national form, as a person types it; the CDRs hold E.164.
        Query(
            "callerid (one customer, all time)",
            lambda rng: {"callerid": rng.choice(sample.clients)[3:]},
        ),
        Query(
            "agent, 30 days",
            lambda rng: {"agents": str(rng.choice(sample.agent_ids)), **window(30)(rng)},
        ),
        Query("agent, all time", lambda rng: {"agents": str(rng.choice(sample.agent_ids))}),
        Query("answered, all time (call_type=c)", lambda rng: {"call_type": "c"}),
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def admin(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def load(url: str, rows: int, accounts: int, rng: random.Random) -> Sample:
    """Accounts, agents and CDRs; returns what the queries pick parameters from."""
    database = Database(url)
    try:
        async with database.session() as session:
            created = [await Accounts(session).create(f"bench {i}") for i in range(accounts)]
            account_ids = [account.id for account, _ in created]
            agents = [
                await Agents(session).create(
                    account_ids[0],
                    name=f"Agent {i}",
                    follow_me_number=f"+9197{i:08d}",
                    intercom=f"{1000 + i}",
                )
                for i in range(AGENTS)
            ]
    finally:
        await database.close()
    agent_pairs = [(agent.id, agent.follow_me_number) for agent in agents]
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    call_ids: list[str] = []
    clients: list[str] = []
    try:
        for first in range(0, rows, BATCH_ROWS):
            batch = list(
                make_rows(rng, min(BATCH_ROWS, rows - first), first, account_ids, agent_pairs)
            )
            picked = [r for r in batch[:: max(1, len(batch) // 200)] if r[2] == account_ids[0]]
            call_ids.extend(r[1] for r in picked)
            # caller of an inbound call, called party of an outbound one
            clients.extend(r[6] if r[3] == "inbound" else r[7] for r in picked)
            await connection.copy_records_to_table("call_records", records=batch, columns=COLUMNS)
            print(f"  loaded {first + len(batch):>9,} rows", file=sys.stderr)
        started = time.perf_counter()
        await connection.execute("VACUUM ANALYZE call_records")
        print(f"  VACUUM ANALYZE {time.perf_counter() - started:.1f} s", file=sys.stderr)
    finally:
        await connection.close()
    return Sample(
        api_key=created[0][1],
        call_ids=call_ids,
        clients=[c for c in clients if c not in DIDS],
        agent_ids=[agent_id for agent_id, _ in agent_pairs],
    )


async def measure(
    url: str, sample: Sample, runs: int, seed: int
) -> list[tuple[str, list[float], float]]:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            _env_file=None,
            data_dir=Path(data_dir),
            database_url=url,
            default_region="IN",  # national numbers, as a Tata deployment reads them
            webhook_worker=False,
            rtpengine="127.0.0.1:1",
        )
        database = Database(url)
        app = create_app(settings, database=database)
        results: list[tuple[str, list[float], float]] = []
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://bench"
                ) as http,
            ):
                headers = {"Authorization": sample.api_key}
                for query in queries(sample):
                    rng = random.Random(seed)
                    counts: list[int] = []
                    timings_ms: list[float] = []
                    for attempt in range(5 + runs):
                        params = query.params(rng)
                        started = time.perf_counter()
                        reply = await http.get("/v1/call/records", params=params, headers=headers)
                        elapsed_ms = (time.perf_counter() - started) * 1000
                        if reply.status_code != 200:
                            raise SystemExit(f"{query.name}: {reply.status_code} {reply.text}")
                        if attempt >= 5:
                            timings_ms.append(elapsed_ms)
                            counts.append(reply.json()["count"])
                    results.append((query.name, timings_ms, statistics.mean(counts)))
        finally:
            await database.close()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server-url",
        default=os.environ.get(
            "CALLMASK_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
        help="any database URL on the PostgreSQL server to use (a scratch database is made)",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--load-timeout-s", type=float, default=900)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    base = make_url(args.server_url)
    name = f"callmask_bench_records_{os.getpid()}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    url = base.set(database=name).render_as_string(hide_password=False)
    await admin(admin_dsn, f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(upgrade, url)
        started = time.perf_counter()
        async with asyncio.timeout(args.load_timeout_s):
            sample = await load(url, args.rows, args.accounts, random.Random(args.seed))
        load_s = time.perf_counter() - started
        results = await measure(url, sample, args.runs, args.seed)
    finally:
        if args.keep:
            print(f"kept database {name}", file=sys.stderr)
        else:
            await admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    measured_rows = args.rows // args.accounts
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"{args.rows:,} CDRs ({measured_rows:,} of the measured account), loaded in "
        f"{load_s:.0f} s; {args.runs} runs per query through the ASGI app, PostgreSQL"
    )
    print(f"{'query':<44} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'avg count':>11}")
    for name_, timings_ms, mean_count in results:
        print(
            f"{name_:<44} {statistics.median(timings_ms):8.1f} "
            f"{percentile(timings_ms, 0.99):8.1f} {max(timings_ms):8.1f} {mean_count:11,.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
