"""Call-records bench: p50/p99 of ``GET /v1/call/records`` over 1,000,000 CDRs, on
PostgreSQL or SQLite.

    .venv/bin/python bench/records.py [--database postgresql|sqlite]
                                      [--server-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]
                                      [--rows 1000000] [--accounts 1] [--runs 200] [--keep]
                                      [--no-analyze]

What it does, in this order:

1. makes a scratch database, PostgreSQL: ``callmask_bench_records_<pid>`` on the server
   of ``--server-url``; SQLite: a file in a new temporary directory; and migrates it to
   head with the project's migrations (so the indexes and the triggers that keep the
   daily counts are the migration's, and the bulk load below goes through them);
2. creates ``--accounts`` accounts, 50 agents for the measured (first) account, and
   ``--rows`` CDRs in batches of 100,000 (PostgreSQL: ``COPY``; SQLite: ``executemany``
   of the stdlib ``sqlite3`` module, one transaction per batch), the measured account
   holding ``1/accounts`` of them (default: all 1,000,000, the worst case for it),
   spread over one year, with the mix of directions, services, statuses, durations,
   departments and repeat customers described in ``make_rows``; then checks that the
   daily counts add up to the rows;
3. gathers planner statistics, unless ``--no-analyze``: PostgreSQL ``VACUUM ANALYZE``
   (what autovacuum does to a table that stopped changing; it sets the visibility map
   that index-only counts need), SQLite ``ANALYZE``;
4. starts the real app (``node_app``) over the scratch database and sends the typical
   filtered queries below through an httpx ASGI client with the account's key, ``--runs``
   times each with different parameters (days, customers, agents) after 5 warm-up runs;
5. prints p50/p99/max per query, and drops the database unless ``--keep``.

Loading (rows and statistics) is bounded by ``--load-timeout-s``; every query run by the
request count.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]
import httpx
from sqlalchemy import func, select
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import make_url

from callmask.accounts import create_account
from callmask.config import Settings
from callmask.node import node_app
from callmask.store.database import Database
from callmask.store.migrate import upgrade
from callmask.store.models import CallRecord, CallRecordDailyCount
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
Row = tuple[Any, ...]  # one CDR, the values of COLUMNS
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
) -> Iterator[Row]:
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


@dataclass
class Tenants:
    """The accounts, made through the repositories; the first is the measured one."""

    api_key: str
    account_ids: list[str]
    agents: list[tuple[int, str]]  # (agent id, follow-me number) of the measured account


async def create_tenants(url: str, accounts: int) -> Tenants:
    database = Database(url)
    try:
        async with database.session() as session:
            created = [await create_account(session, f"bench {i}") for i in range(accounts)]
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
    return Tenants(
        api_key=created[0][1],
        account_ids=account_ids,
        agents=[(agent.id, agent.follow_me_number) for agent in agents],
    )


class ScratchDatabase(Protocol):
    """A database made for one run: migrated to head, bulk loaded, then dropped."""

    label: str
    url: str

    async def create(self) -> None:
        """An empty database at ``url``."""

    async def load(self, batches: Iterable[list[Row]], deadline: float, *, analyze: bool) -> None:
        """Write the batches of CDRs and (``analyze``) gather the planner's statistics,
        by the ``time.monotonic()`` deadline or raise TimeoutError."""

    async def drop(self, *, keep: bool) -> None: ...


class ScratchPostgreSQL:
    label = "PostgreSQL"

    def __init__(self, server_url: str) -> None:
        base = make_url(server_url)
        self.name = f"callmask_bench_records_{os.getpid()}"
        self.admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
        self.url = base.set(database=self.name).render_as_string(hide_password=False)

    async def _admin(self, statement: str) -> None:
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def create(self) -> None:
        await self._admin(f'CREATE DATABASE "{self.name}"')

    async def load(self, batches: Iterable[list[Row]], deadline: float, *, analyze: bool) -> None:
        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        async with asyncio.timeout(deadline - time.monotonic()):
            connection = await asyncpg.connect(dsn)
            try:
                for batch in batches:
                    await connection.copy_records_to_table(
                        "call_records", records=batch, columns=COLUMNS
                    )
                if analyze:
                    started = time.perf_counter()
                    # What autovacuum does to a table that stopped changing; it also sets
                    # the visibility map that index-only counts need.
                    await connection.execute("VACUUM ANALYZE call_records")
                    elapsed_s = time.perf_counter() - started
                    print(f"  VACUUM ANALYZE {elapsed_s:.1f} s", file=sys.stderr)
            finally:
                await connection.close()

    async def drop(self, *, keep: bool) -> None:
        if keep:
            print(f"kept database {self.name}", file=sys.stderr)
            return
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def sqlite_time_format() -> Callable[[dt.datetime | None], str | None]:
    """The strings SQLAlchemy writes for the CDR times on SQLite (the app's own writes
    and the filters' bound values), so that loaded rows compare like the app's."""
    dialect = SQLiteDialect()
    column_type = CallRecord.__table__.c.invited_at.type.dialect_impl(dialect)
    process = column_type.bind_processor(dialect)
    assert process is not None
    return process


SQLITE_TIME = sqlite_time_format()
TIME_COLUMNS = [COLUMNS.index(name) for name in COLUMNS if name.endswith("_at")]
# Holds the indexes' pages while rows arrive in random key order (id, call_id); at the
# default 2 MiB every insert rereads index pages from the file.
SQLITE_LOAD_CACHE_KIB = 256 * 1024
# VM instructions between deadline checks: a few milliseconds of work.
SQLITE_PROGRESS_STEPS = 100_000


def sqlite_row(row: Row) -> Row:
    values = list(row)
    for index in TIME_COLUMNS:
        values[index] = SQLITE_TIME(values[index])
    return tuple(values)


class ScratchSQLite:
    """A database file in a temporary directory, loaded with the stdlib ``sqlite3``
    module: ``executemany`` of 100,000 rows per transaction, through the migration's
    triggers (so the daily counts are kept as a node keeps them), then ``ANALYZE``."""

    label = "SQLite"

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="callmask_bench_records_"))
        self.path = self.directory / "callmask.db"
        self.url = f"sqlite+aiosqlite:///{self.path}"

    async def create(self) -> None:
        """Nothing to do: migrating makes the file."""

    async def load(self, batches: Iterable[list[Row]], deadline: float, *, analyze: bool) -> None:
        # Blocking, and so beyond asyncio's timeouts: SQLite is told to stop instead.
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            connection.execute("PRAGMA foreign_keys=ON")  # as the app's connections
            connection.execute(f"PRAGMA cache_size=-{SQLITE_LOAD_CACHE_KIB}")
            connection.set_progress_handler(
                lambda: time.monotonic() > deadline, SQLITE_PROGRESS_STEPS
            )
            insert = (
                f"INSERT INTO call_records ({', '.join(COLUMNS)})"
                f" VALUES ({', '.join('?' * len(COLUMNS))})"
            )
            for batch in batches:
                if time.monotonic() > deadline:
                    raise TimeoutError
                connection.execute("BEGIN")
                connection.executemany(insert, map(sqlite_row, batch))
                connection.execute("COMMIT")
            if analyze:
                started = time.perf_counter()
                connection.execute("ANALYZE")
                print(f"  ANALYZE {time.perf_counter() - started:.1f} s", file=sys.stderr)
        except sqlite3.OperationalError as exc:
            if time.monotonic() > deadline:  # the progress handler interrupted it
                raise TimeoutError from exc
            raise
        finally:
            connection.close()

    async def drop(self, *, keep: bool) -> None:
        if keep:
            print(f"kept database file {self.path}", file=sys.stderr)
            return
        shutil.rmtree(self.directory, ignore_errors=True)


async def check_daily_counts(url: str) -> None:
    """The triggers saw every row: the daily counts add up to the rows."""
    database = Database(url)
    try:
        async with database.session() as session:
            rows = await session.scalar(
                select(func.count())
                .select_from(CallRecord)
                .where(CallRecord.account_id.is_not(None))
            )
            counted = await session.scalar(select(func.sum(CallRecordDailyCount.calls)))
    finally:
        await database.close()
    if rows != counted:
        raise SystemExit(f"daily counts add up to {counted}, but there are {rows} CDRs")


async def load(
    scratch: ScratchDatabase,
    rows: int,
    accounts: int,
    rng: random.Random,
    deadline: float,
    *,
    analyze: bool,
) -> Sample:
    """Accounts, agents and CDRs; returns what the queries pick parameters from."""
    tenants = await create_tenants(scratch.url, accounts)
    measured = tenants.account_ids[0]
    call_ids: list[str] = []
    clients: list[str] = []

    def batches() -> Iterator[list[Row]]:
        for first in range(0, rows, BATCH_ROWS):
            count = min(BATCH_ROWS, rows - first)
            batch = list(make_rows(rng, count, first, tenants.account_ids, tenants.agents))
            picked = [r for r in batch[:: max(1, len(batch) // 200)] if r[2] == measured]
            call_ids.extend(r[1] for r in picked)
            # caller of an inbound call, called party of an outbound one
            clients.extend(r[6] if r[3] == "inbound" else r[7] for r in picked)
            yield batch
            print(f"  loaded {first + len(batch):>9,} rows", file=sys.stderr)

    await scratch.load(batches(), deadline, analyze=analyze)
    await check_daily_counts(scratch.url)
    return Sample(
        api_key=tenants.api_key,
        call_ids=call_ids,
        clients=[c for c in clients if c not in DIDS],
        agent_ids=[agent_id for agent_id, _ in tenants.agents],
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
        app = node_app(settings, database=database)
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


def scratch_database(args: argparse.Namespace) -> ScratchDatabase:
    if args.database == "sqlite":
        return ScratchSQLite()
    return ScratchPostgreSQL(args.server_url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--server-url",
        default=os.environ.get(
            "CALLMASK_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
        help="PostgreSQL only: any database URL on the server to use (a scratch database is made)",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--load-timeout-s", type=float, default=900)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="measure without planner statistics, as a SQLite node's file is: SQLite, "
        "unlike PostgreSQL's autovacuum, never gathers them by itself",
    )
    args = parser.parse_args()

    scratch = scratch_database(args)
    await scratch.create()
    try:
        # The migration's indexes and triggers, so the load goes through them.
        await asyncio.to_thread(upgrade, scratch.url)
        started = time.perf_counter()
        deadline = time.monotonic() + args.load_timeout_s
        rng = random.Random(args.seed)
        sample = await load(
            scratch, args.rows, args.accounts, rng, deadline, analyze=not args.no_analyze
        )
        load_s = time.perf_counter() - started
        results = await measure(scratch.url, sample, args.runs, args.seed)
    finally:
        await scratch.drop(keep=args.keep)

    measured_rows = args.rows // args.accounts
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"{args.rows:,} CDRs ({measured_rows:,} of the measured account), loaded in "
        f"{load_s:.0f} s; {args.runs} runs per query through the ASGI app, {scratch.label}"
        + (", no planner statistics" if args.no_analyze else "")
    )
    print(f"{'query':<44} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'avg count':>11}")
    for name, timings_ms, mean_count in results:
        print(
            f"{name:<44} {statistics.median(timings_ms):8.1f} "
            f"{percentile(timings_ms, 0.99):8.1f} {max(timings_ms):8.1f} {mean_count:11,.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
