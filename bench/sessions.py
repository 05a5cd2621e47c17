"""Sessions over a number pool at scale: a pool of ``--pool`` numbers and ``--sessions``
open sessions, on SQLite and PostgreSQL; session create (through the allocator) and the
inbound lookup a call makes ((caller, DID) -> session), p50/p99 of ``--runs`` each.
Then, unless ``--no-cps``, calls per second with session routing (bench/cps.py
``--routing session``, the same rig as the CPS ramp).

    .venv/bin/python bench/sessions.py --pool 1000 --sessions 100000 --runs 1000

The open sessions are written in bulk (one INSERT per table and chunk) in the shape the
allocator leaves them: customer i with agent i mod 500, the agent's k-th session on
pool number k, so no identifier holds a number twice. The creates measured then go
through ``Sessions.create`` like an API request: a new customer with one of those
agents, who already holds 200 numbers the allocator has to step around.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # type: ignore[import-untyped]  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.node import percentile  # noqa: E402
from callmask import heap  # noqa: E402
from callmask.accounts import create_account  # noqa: E402
from callmask.sessions.calls import SessionRoute, find_session_route  # noqa: E402
from callmask.sessions.repository import ParticipantRequest, Services, Sessions  # noqa: E402
from callmask.sessions.sids import new_sid  # noqa: E402
from callmask.store.database import Database  # noqa: E402
from callmask.store.migrate import upgrade  # noqa: E402
from callmask.store.models import (  # noqa: E402
    Number,
    PoolNumber,
    ProxyParticipant,
    ProxySession,
)
from callmask.store.postdial import PostDialReader  # noqa: E402

AGENTS = 500
CHUNK = 5000
POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def customer(i: int) -> str:
    return f"+1212{5000000 + i:07d}"


def agent(j: int) -> str:
    return f"+1646{5000000 + j:07d}"


def pool_number(k: int) -> str:
    return f"+1917{5000000 + k:07d}"


async def fill(database: Database, pool: int, sessions: int) -> tuple[str, str, list[str]]:
    now = dt.datetime.now(dt.UTC)
    async with database.session() as session:
        account, _ = await create_account(session, "bench")
        service = await Services(session).create(account.id, unique_name="bench")
    numbers = [
        {"number_key": uuid.uuid4().hex.upper(), "e164": pool_number(k), "country": "US"}
        for k in range(pool)
    ]
    pool_rows = [
        {
            "sid": new_sid("PN"),
            "service_sid": service.sid,
            "account_id": account.id,
            "number_key": n["number_key"],
            "e164": n["e164"],
            "is_reserved": False,
            "created_at": now,
            "updated_at": now,
        }
        for n in numbers
    ]
    async with database.session() as session:
        await session.execute(
            insert(Number), [{**n, "account_id": account.id, "purchased_at": now} for n in numbers]
        )
        await session.execute(insert(PoolNumber), pool_rows)
    for start in range(0, sessions, CHUNK):
        session_rows, participant_rows = [], []
        for i in range(start, min(sessions, start + CHUNK)):
            sid = new_sid("KC")
            k = (i // AGENTS) % pool
            session_rows.append(
                {
                    "sid": sid,
                    "service_sid": service.sid,
                    "account_id": account.id,
                    "status": "open",
                    "mode": "voice-and-message",
                    "ttl": 0,
                    "date_started": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for identifier in (customer(i), agent(i % AGENTS)):
                participant_rows.append(
                    {
                        "sid": new_sid("KP"),
                        "session_sid": sid,
                        "service_sid": service.sid,
                        "account_id": account.id,
                        "identifier": identifier,
                        "proxy_identifier": pool_rows[k]["e164"],
                        "pool_number_sid": pool_rows[k]["sid"],
                        "active": True,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        async with database.session() as session:
            await session.execute(insert(ProxySession), session_rows)
            await session.execute(insert(ProxyParticipant), participant_rows)
    return account.id, service.sid, [r["e164"] for r in pool_rows]


async def measure(database: Database, pool: int, sessions: int, runs: int) -> None:
    account_id, service_sid, numbers = await fill(database, pool, sessions)
    # As a node runs once started (callmask.heap): what is alive is frozen and the
    # cyclic collector is off, so its pauses are not what this measures.
    heap.settle()
    creates = []
    for r in range(runs):
        started = time.perf_counter()
        async with database.session() as session:
            await Sessions(session).create(
                account_id,
                service_sid,
                participants=[
                    ParticipantRequest(identifier=customer(sessions + r)),
                    ParticipantRequest(identifier=agent(r % AGENTS)),
                ],
            )
        creates.append((time.perf_counter() - started) * 1000)
    lookups = []
    reader = PostDialReader(database)  # what a node's routing table reads with
    rng = random.Random(7)
    for _ in range(runs):
        i = rng.randrange(sessions)
        did = numbers[(i // AGENTS) % pool]
        started = time.perf_counter()
        route = await find_session_route(reader, customer(i), did)
        lookups.append((time.perf_counter() - started) * 1000)
        assert isinstance(route, SessionRoute) and route.callee_identifier == agent(i % AGENTS)
    reader.close()
    name = database.url.split("+", 1)[0]
    for what, values in (("session create", creates), ("inbound session lookup", lookups)):
        p50, p99 = percentile(values, 0.50), percentile(values, 0.99)
        print(f"{what}, {name}: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({len(values)} runs)")


async def on_postgres(args: argparse.Namespace) -> None:
    base = make_url(POSTGRES)
    name = f"callmask_bench_sessions_{uuid.uuid4().hex[:8]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = await asyncpg.connect(admin_dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"PostgreSQL at 127.0.0.1:5432 not usable, its figures are skipped: {exc}")
        return
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        url = base.set(database=name).render_as_string(hide_password=False)
        await asyncio.to_thread(upgrade, url)
        database = Database(url)
        try:
            await measure(database, args.pool, args.sessions, args.runs)
        finally:
            await database.close()
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--no-cps", action="store_true")
    args = parser.parse_args()
    print(f"pool {args.pool} numbers, {args.sessions} open sessions")
    with tempfile.TemporaryDirectory(prefix="callmask-sessions-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'callmask.db'}"
        await asyncio.to_thread(upgrade, url)
        database = Database(url)
        try:
            await measure(database, args.pool, args.sessions, args.runs)
        finally:
            await database.close()
    await on_postgres(args)
    if not args.no_cps:
        print("calls per second with session routing (bench/cps.py --routing session):")
        command = [sys.executable, str(ROOT / "bench" / "cps.py"), "--routing", "session"]
        command += ["--start", "100", "--step", "200", "--max", "700", "--step-seconds", "10"]
        process = await asyncio.create_subprocess_exec(*command)
        await asyncio.wait_for(process.wait(), timeout=240)


if __name__ == "__main__":
    asyncio.run(main())
