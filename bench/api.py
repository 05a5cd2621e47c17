"""Latency of the masking-action lookup a customer's system makes most
(``GET /numbers/1/numbers/{numberKey}/actions``), through the real app over an
in-process ASGI client, on SQLite and on PostgreSQL (a scratch database on the server
of ``--postgres-url``; skipped with a message when it does not answer).

    .venv/bin/python bench/api.py --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.node import percentile  # noqa: E402
from callmask.accounts import create_account  # noqa: E402
from callmask.config import Settings  # noqa: E402
from callmask.node import node_app  # noqa: E402
from callmask.store.database import Database  # noqa: E402
from callmask.store.migrate import upgrade_async  # noqa: E402
from callmask.store.repositories import Actions, Numbers  # noqa: E402


async def measure(url: str, data_dir: Path, requests: int) -> tuple[float, float]:
    await upgrade_async(url)
    database = Database(url)
    try:
        async with database.session() as session:
            account, api_key = await create_account(session, "bench")
            numbers = Numbers(session)
            keys = []
            for i in range(100):
                number = await numbers.add_to_inventory(f"+4179302{i:04d}", "CH", account.id)
                await Actions(session).create(
                    account.id,
                    number.number_key,
                    type_="VOICE_NUMBER_MASKING",
                    callback_url="https://client.example/callback",
                    status_url="https://client.example/status",
                )
                keys.append(number.number_key)
        settings = Settings(
            _env_file=None, data_dir=data_dir, database_url=url, webhook_worker=False
        )  # type: ignore[call-arg]
        app = node_app(settings, database=database)
        latencies: list[float] = []
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://callmask.bench",
                headers={"Authorization": f"App {api_key}"},
            ) as client,
        ):
            for i in range(requests):
                started = time.perf_counter()
                reply = await client.get(f"/numbers/1/numbers/{keys[i % len(keys)]}/actions")
                latencies.append((time.perf_counter() - started) * 1000)
                assert reply.status_code == 200, reply.text
        return percentile(latencies, 0.5), percentile(latencies, 0.99)
    finally:
        await database.close()


def report(store: str, p50: float, p99: float, requests: int) -> None:
    print(f"action lookup, {store}: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({requests} requests)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="callmask-api-") as tmp:
        p50, p99 = await measure(f"sqlite+aiosqlite:///{tmp}/bench.db", Path(tmp), args.requests)
        print(
            f"action lookup, SQLite: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({args.requests} requests)"
        )
        base = make_url(args.postgres_url)
        admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
        name = f"callmask_bench_api_{uuid.uuid4().hex[:8]}"
        try:
            connection = await asyncio.wait_for(asyncpg.connect(admin_dsn), timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            print(f"action lookup, PostgreSQL: SKIPPED, no server at {args.postgres_url}: {exc}")
            return
        await connection.execute(f'CREATE DATABASE "{name}"')
        try:
            url = base.set(database=name).render_as_string(hide_password=False)
            p50, p99 = await measure(url, Path(tmp), args.requests)
            report("PostgreSQL", p50, p99, args.requests)
        finally:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
