"""Webhook delivery bench: deliveries/s and enqueue->delivered latency to a local receiver.

    .venv/bin/python bench/webhooks.py [--database-url URL] [--events 10000] [--rate 150]

Two phases, each with ``--events`` events, both through the real ``DeliveryWorker``
with its production defaults (concurrency 50, batch 100), the app's kind of aiohttp
session, and a real store (a fresh SQLite file in a temporary directory unless
``--database-url`` names another; a PostgreSQL one is migrated to head first):

- burst: all events enqueued as fast as possible in transactions of ``--batch``; it
  measures throughput. Its latency is mostly time spent queued behind thousands of
  other events, so it is printed but is not the latency figure.
- steady: events enqueued at ``--rate`` per second, one per transaction, the way the
  call engine writes a CDR with its status report; the worker is notified after each
  commit. Its latency is what a customer sees when callmask is keeping up. The
  default rate, 150/s, is one this process keeps up with on the shared 2-core
  development machine: here one event costs 3-5 ms of CPU (the ORM enqueue
  transaction, the worker's claim round, the HTTP request, the receiver) and at
  250/s the process, competing with other work for the second core, fell behind.

"Enqueued" is the moment the enqueuing transaction has committed (before that the
event does not exist for anyone); "delivered" is the moment the receiver has read
the whole request. Both clocks are this process's ``time.perf_counter``. Every
other event shares an ordering key with the one before it (two reports per call),
so the per-call ordering rule is part of what is measured.

The receiver is a minimal HTTP/1.1 server on 127.0.0.1 (keep-alive, answers 200 at
once) so that it takes as little of the CPU as possible from what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from callmask.accounts import create_account
from callmask.outbound import WEBHOOK_USER_AGENT, client_session
from callmask.store.database import Database
from callmask.store.migrate import upgrade
from callmask.webhooks.outbox import enqueue
from callmask.webhooks.worker import DEFAULT_CONCURRENCY, DeliveryWorker

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


@dataclass
class Receiver:
    """Records when each webhook-id arrived; counts repeats."""

    arrived_at: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    expected: int = 0
    all_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, count: int) -> None:
        self.arrived_at.clear()
        self.duplicates = 0
        self.expected = count
        self.all_arrived.clear()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                webhook_id = ""
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"webhook-id":
                        webhook_id = value.strip().decode()
                if length:
                    await reader.readexactly(length)
                now = time.perf_counter()
                if webhook_id in self.arrived_at:
                    self.duplicates += 1
                else:
                    self.arrived_at[webhook_id] = now
                    if len(self.arrived_at) >= self.expected:
                        self.all_arrived.set()
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def payload(n: int) -> dict[str, object]:
    """About the size of an Infobip status report."""
    return {
        "action": "dial",
        "from": "+919876543210",
        "to": "+918012345678",
        "transferTo": "+919812345678",
        "duration": n % 600,
        "status": "answered",
        "fileId": None,
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def report(
    name: str,
    receiver: Receiver,
    enqueued_at: dict[str, float],
    started: float,
    cpu_started: float,
    timed_out: bool,
) -> None:
    latencies_ms = [
        (receiver.arrived_at[i] - enqueued_at[i]) * 1000
        for i in enqueued_at
        if i in receiver.arrived_at
    ]
    delivered = len(latencies_ms)
    last = max(receiver.arrived_at.values(), default=started)
    span_s = last - started
    rate = delivered / span_s if span_s > 0 else 0.0
    print(
        f"  delivered {delivered}/{len(enqueued_at)} ({receiver.duplicates} duplicates"
        f"{', TIMED OUT' if timed_out else ''}) in {span_s:.2f} s -> {rate:.0f} deliveries/s"
    )
    cpu_ms = (time.process_time() - cpu_started) * 1000 / max(1, len(enqueued_at))
    print(f"  CPU of this process (enqueue + worker + receiver): {cpu_ms:.2f} ms per event")
    if latencies_ms:
        print(
            f"  {name} enqueue->delivered latency ms: "
            f"p50 {statistics.median(latencies_ms):.1f}  "
            f"p90 {percentile(latencies_ms, 0.90):.1f}  "
            f"p99 {percentile(latencies_ms, 0.99):.1f}  "
            f"max {max(latencies_ms):.1f}"
        )


async def wait_all(receiver: Receiver, timeout_s: float) -> bool:
    """True if it timed out."""
    try:
        async with asyncio.timeout(timeout_s):
            await receiver.all_arrived.wait()
    except TimeoutError:
        return True
    return False


async def burst(
    database: Database,
    worker: DeliveryWorker,
    receiver: Receiver,
    account_id: str,
    url: str,
    events: int,
    batch: int,
) -> None:
    print(f"burst: {events} events in transactions of {batch}, enqueued as fast as possible")
    receiver.expect(events)
    enqueued_at: dict[str, float] = {}
    started = time.perf_counter()
    cpu_started = time.process_time()
    for first in range(0, events, batch):
        async with database.session() as session:
            ids = [
                await enqueue(
                    session,
                    account_id=account_id,
                    event_type="call.status",
                    url=url,
                    payload=payload(n),
                    ordering_key=f"burst-call-{n // 2}",
                )
                for n in range(first, min(first + batch, events))
            ]
        committed = time.perf_counter()
        enqueued_at.update(dict.fromkeys(ids, committed))
        worker.notify()
    print(f"  enqueued in {time.perf_counter() - started:.2f} s")
    timed_out = await wait_all(receiver, timeout_s=max(60.0, events / 50))
    report("burst", receiver, enqueued_at, started, cpu_started, timed_out)


async def steady(
    database: Database,
    worker: DeliveryWorker,
    receiver: Receiver,
    account_id: str,
    url: str,
    events: int,
    rate: float,
) -> None:
    print(f"steady: {events} events at {rate:g}/s, one per transaction, notify after commit")
    receiver.expect(events)
    enqueued_at: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    cpu_started = time.process_time()
    start_loop = loop.time()
    for n in range(events):
        # Absolute schedule: a late event does not push the rest later.
        delay_s = start_loop + n / rate - loop.time()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        async with database.session() as session:
            event_id = await enqueue(
                session,
                account_id=account_id,
                event_type="call.status",
                url=url,
                payload=payload(n),
                ordering_key=f"steady-call-{n // 2}",
            )
        enqueued_at[event_id] = time.perf_counter()
        worker.notify()
    enqueue_s = time.perf_counter() - started
    print(f"  enqueued in {enqueue_s:.2f} s (achieved {events / enqueue_s:.1f}/s)")
    timed_out = await wait_all(receiver, timeout_s=60.0)
    report("steady", receiver, enqueued_at, started, cpu_started, timed_out)


async def main(args: argparse.Namespace) -> None:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/status"
    database = Database(args.database_url)
    try:
        async with database.session() as session:
            account, _ = await create_account(session, "bench")
        # The client the app's lifespan gives the worker.
        async with (
            client_session(
                allow_private=True,
                max_connections=DEFAULT_CONCURRENCY,
                user_agent=WEBHOOK_USER_AGENT,
            ) as http,
            asyncio.TaskGroup() as tasks,
        ):
            worker = DeliveryWorker(database, http, allow_private=True)
            print(
                f"worker: concurrency={worker.concurrency} batch_size={worker.batch_size} "
                f"poll_interval_s={worker.poll_interval_s}"
            )
            worker_task = tasks.create_task(worker.run())
            try:
                if args.phase in ("burst", "both"):
                    await burst(
                        database, worker, receiver, account.id, url, args.events, args.batch
                    )
                if args.phase in ("steady", "both"):
                    await steady(
                        database, worker, receiver, account.id, url, args.events, args.rate
                    )
            finally:
                worker_task.cancel()
    finally:
        server.close()
        await database.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a new SQLite file in a temp dir")
    parser.add_argument("--events", type=int, default=10_000, help="events per phase")
    parser.add_argument("--rate", type=float, default=150.0, help="steady phase, events/s")
    parser.add_argument("--batch", type=int, default=500, help="burst phase, events per txn")
    parser.add_argument("--phase", choices=("burst", "steady", "both"), default="both")
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio loop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="callmask-bench-") as tmp:
        if not args.database_url:
            args.database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(args.database_url)
        loop_name = "asyncio"
        if not args.no_uvloop:
            try:
                import uvloop

                asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
                loop_name = "uvloop"
            except ImportError:
                pass
        print(f"callmask webhook bench: {args.database_url} ({loop_name})")
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        asyncio.run(main(args))
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    cli()
