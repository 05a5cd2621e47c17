"""Delivery over a real socket: a customer's server (tests/support/receiver.py) on
127.0.0.1 receives what the worker sends, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import aiohttp
from sqlalchemy import func, select
from standardwebhooks import Webhook

from callmask.outbound import client_session
from callmask.store.database import Database
from callmask.store.models import WebhookAttempt, WebhookEvent
from callmask.webhooks.outbox import enqueue
from callmask.webhooks.repository import Secrets
from tests.conftest import Tenant
from tests.support.dns import StaticResolver
from tests.support.receiver import Receiver, Reply, free_port, running_receiver
from tests.webhooks.conftest import (
    FakeClock,
    attempt_rows,
    enqueue_one,
    event_row,
    make_worker,
    running,
    status_is,
    wait_until,
)


async def active_secrets(database: Database, tenant: Tenant) -> list[str]:
    async with database.session() as session:
        return (await Secrets(session).active([tenant.account_id]))[tenant.account_id]


async def test_a_healthy_receiver_gets_exactly_one_signed_delivery(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    payload = {"action": "dial", "status": "answered", "duration": 42, "from": "+4915112345"}
    worker = make_worker(database, http)
    async with running(worker):
        event_id = await enqueue_one(database, tenant, receiver.url("/status"), payload)
        worker.notify()
        [request] = await receiver.wait_for("/status")
        await wait_until(status_is(database, event_id, "delivered"))
        await asyncio.sleep(0.3)  # room for a wrong second send to show up
    assert len(receiver.on("/status")) == 1
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == event_id
    assert request.json() == payload
    [secret] = await active_secrets(database, tenant)
    assert Webhook(secret).verify(request.body, request.headers) == payload
    event = await event_row(database, event_id)
    assert event.attempt_count == 1 and event.lease_until is None
    assert event.delivered_at is not None
    [attempt] = await attempt_rows(database, event_id)
    assert (attempt.status_code, attempt.outcome, attempt.error) == (200, "delivered", None)


async def test_a_receiver_failing_twice_gets_it_on_the_third_try_and_the_log_shows_three(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    receiver.answer("/hook", Reply(500, "oops"), Reply(500, "still down"), Reply(200, "ok"))
    worker = make_worker(database, http)
    async with running(worker):
        event_id = await enqueue_one(database, tenant, receiver.url("/hook"))
        worker.notify()
        await wait_until(status_is(database, event_id, "delivered"))
    requests = receiver.on("/hook")
    assert len(requests) == 3
    assert {r.headers["webhook-id"] for r in requests} == {event_id}
    assert len({r.body for r in requests}) == 1  # the very same bytes each time
    attempts = await attempt_rows(database, event_id)
    assert [(a.status_code, a.outcome) for a in attempts] == [
        (500, "retry"),
        (500, "retry"),
        (200, "delivered"),
    ]
    assert [a.response_excerpt for a in attempts] == ["oops", "still down", "ok"]
    assert attempts[0].error == "HTTP 500"
    assert all(a.latency_ms >= 0 for a in attempts)
    event = await event_row(database, event_id)
    assert event.attempt_count == 3


async def test_gone_410_is_final_after_one_attempt(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    receiver.always("/gone", Reply(410, "endpoint removed"))
    worker = make_worker(database, http)
    async with running(worker):
        event_id = await enqueue_one(database, tenant, receiver.url("/gone"))
        worker.notify()
        await wait_until(status_is(database, event_id, "dead"))
        await asyncio.sleep(0.3)  # the fast schedule would have retried by now
    assert len(receiver.on("/gone")) == 1
    [attempt] = await attempt_rows(database, event_id)
    assert (attempt.status_code, attempt.outcome) == (410, "dead")
    assert (await event_row(database, event_id)).last_error == "HTTP 410"


async def test_a_redirect_is_not_followed_and_is_final(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    receiver.always("/moved", Reply(302, headers={"location": receiver.url("/elsewhere")}))
    worker = make_worker(database, http)
    event_id = await enqueue_one(database, tenant, receiver.url("/moved"))
    assert await worker.run_once() == 1
    assert len(receiver.on("/moved")) == 1
    assert receiver.on("/elsewhere") == []
    assert (await event_row(database, event_id)).status == "dead"


async def test_a_receiver_exhausting_the_schedule_ends_dead(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    receiver.always("/down", Reply(503))
    worker = make_worker(database, http, schedule=(0.01, 0.01))
    async with running(worker):
        event_id = await enqueue_one(database, tenant, receiver.url("/down"))
        worker.notify()
        await wait_until(status_is(database, event_id, "dead"))
    assert len(receiver.on("/down")) == 3
    outcomes = [a.outcome for a in await attempt_rows(database, event_id)]
    assert outcomes == ["retry", "retry", "dead"]
    assert "gave up after 3 attempts" in ((await event_row(database, event_id)).last_error or "")


async def test_retry_after_in_seconds_and_as_a_date_sets_the_next_attempt(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    receiver.answer(
        "/busy",
        Reply(429, headers={"retry-after": "120"}),
        Reply(503, headers={"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"}),
        Reply(200),
    )
    event_id = await enqueue_one(database, tenant, receiver.url("/busy"))
    clock = FakeClock()  # now, so the event is due
    worker = make_worker(database, http, clock=clock, schedule=(5, 5, 5))

    assert await worker.run_once() == 1
    event = await event_row(database, event_id)
    [first] = await attempt_rows(database, event_id)
    assert event.status == "pending"
    assert (event.next_attempt_at - first.attempted_at).total_seconds() == 120
    clock.advance(119)
    assert await worker.run_once() == 0  # not due before Retry-After says so
    clock.advance(1)
    assert await worker.run_once() == 1
    event = await event_row(database, event_id)
    second = (await attempt_rows(database, event_id))[1]
    # A date far ahead is clamped to an hour.
    assert (event.next_attempt_at - second.attempted_at).total_seconds() == 3600
    clock.advance(3600)
    assert await worker.run_once() == 1
    assert (await event_row(database, event_id)).status == "delivered"
    assert len(receiver.on("/busy")) == 3


async def test_retry_after_is_honoured_in_real_time(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    receiver.answer("/slow-down", Reply(503, headers={"retry-after": "1"}), Reply(200))
    worker = make_worker(database, http)  # schedule 0.05 s: Retry-After must win
    async with running(worker):
        event_id = await enqueue_one(database, tenant, receiver.url("/slow-down"))
        worker.notify()
        first, second = await receiver.wait_for("/slow-down", count=2, timeout_s=5)
        await wait_until(status_is(database, event_id, "delivered"))
    # Retry-After counts from the first attempt's start; the receiver sees the first
    # request a little after that, so its own gap may be a hair under a second.
    attempts = await attempt_rows(database, event_id)
    started_gap_s = (attempts[1].attempted_at - attempts[0].attempted_at).total_seconds()
    assert 1.0 <= started_gap_s < 2.0
    assert 0.9 <= second.received_at - first.received_at < 2.0


async def test_a_receiver_that_does_not_answer_in_time_is_retried(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    receiver.answer("/stuck", Reply(200, delay_s=1.0), Reply(200))
    worker = make_worker(database, http, timeout_s=0.2, lease_s=1.0)
    async with running(worker):
        event_id = await enqueue_one(database, tenant, receiver.url("/stuck"))
        worker.notify()
        await wait_until(status_is(database, event_id, "delivered"))
    first, second = await attempt_rows(database, event_id)
    assert (first.status_code, first.outcome) == (None, "retry")
    assert first.error is not None and "timed out" in first.error
    assert (second.status_code, second.outcome) == (200, "delivered")


async def test_events_of_one_call_arrive_in_order_even_across_retries(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    # The first report of call A fails once; A's later reports must wait for it, while
    # call B's report is not held up by A.
    receiver.answer("/a", Reply(500), Reply(200), Reply(200), Reply(200))
    url_a, url_b = receiver.url("/a"), receiver.url("/b")
    ids = [
        await enqueue_one(database, tenant, url_a, {"n": n}, ordering_key="call-A")
        for n in (1, 2, 3)
    ]
    other = await enqueue_one(database, tenant, url_b, {"n": 0}, ordering_key="call-B")
    worker = make_worker(database, http)
    async with running(worker):
        worker.notify()
        await receiver.wait_for("/a", count=4)
        await wait_until(status_is(database, ids[2], "delivered"))
    assert [r.json()["n"] for r in receiver.on("/a")] == [1, 1, 2, 3]
    assert [r.headers["webhook-id"] for r in receiver.on("/a")] == [ids[0], *ids]
    assert (await event_row(database, other)).status == "delivered"
    # B went out before A's retry: it was not stuck behind another call.
    b_at = receiver.on("/b")[0].received_at
    assert b_at < receiver.on("/a")[1].received_at


async def test_a_dead_event_does_not_block_the_rest_of_its_call(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    receiver.answer("/c", Reply(410))
    first = await enqueue_one(database, tenant, receiver.url("/c"), {"n": 1}, ordering_key="k")
    second = await enqueue_one(database, tenant, receiver.url("/c"), {"n": 2}, ordering_key="k")
    worker = make_worker(database, http)
    assert await worker.run_once() == 1  # only the first: the second waits for it
    assert (await event_row(database, first)).status == "dead"
    assert await worker.run_once() == 1
    assert (await event_row(database, second)).status == "delivered"
    assert [r.json()["n"] for r in receiver.on("/c")] == [1, 2]


async def test_an_address_on_the_operators_network_is_refused_and_final(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    worker = make_worker(database, http, allow_private=False)
    event_id = await enqueue_one(database, tenant, receiver.url("/internal"))
    assert await worker.run_once() == 1
    assert receiver.on("/internal") == []
    event = await event_row(database, event_id)
    assert event.status == "dead"
    assert "refused URL" in (event.last_error or "")
    [attempt] = await attempt_rows(database, event_id)
    assert (attempt.status_code, attempt.outcome) == (None, "dead")


async def test_a_name_that_resolves_into_the_operators_network_is_refused_and_final(
    database: Database, receiver: Receiver, tenant: Tenant
) -> None:
    # The URL passes check_url (a name); the session's resolver finds 127.0.0.1.
    dns = StaticResolver({"status.test": ["127.0.0.1"]})
    url = f"http://status.test:{receiver.port}/status"
    event_id = await enqueue_one(database, tenant, url)
    async with client_session(allow_private=False, max_connections=2, upstream=dns) as strict:
        worker = make_worker(database, strict, allow_private=False)
        assert await worker.run_once() == 1
    assert dns.asked == ["status.test"]
    assert receiver.requests == []
    event = await event_row(database, event_id)
    assert event.status == "dead"
    assert event.last_error == (
        "refused URL: status.test resolves to a non-public address (127.0.0.1)"
    )
    [attempt] = await attempt_rows(database, event_id)
    assert (attempt.status_code, attempt.outcome) == (None, "dead")


async def test_after_rotation_both_secrets_sign_until_the_old_one_is_revoked(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    [old] = await active_secrets(database, tenant)
    async with database.session() as session:
        new = (await Secrets(session).add(tenant.account_id)).secret
    worker = make_worker(database, http)
    await enqueue_one(database, tenant, receiver.url("/r"), {"n": 1})
    await worker.run_once()
    [request] = receiver.on("/r")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(request.body, request.headers)

    async with database.session() as session:
        secrets = Secrets(session)
        old_id = next(s.id for s in await secrets.of_account(tenant.account_id) if s.secret == old)
        await secrets.revoke(tenant.account_id, old_id)
    await enqueue_one(database, tenant, receiver.url("/r"), {"n": 2})
    await worker.run_once()
    later = receiver.on("/r")[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(later.body, later.headers)
    assert json.loads(later.body) == {"n": 2}


async def test_events_survive_a_receiver_outage_and_a_callmask_restart(
    db_url: str, http: aiohttp.ClientSession, tenant: Tenant
) -> None:
    """Receiver down, callmask stopped and started again, receiver back: every event
    arrives, and (as nothing got through before) exactly once."""
    port = free_port()  # nothing listens here yet: connection refused
    url = f"http://127.0.0.1:{port}/events"
    database = Database(db_url)
    ids = [
        await enqueue_one(database, tenant, url, {"n": n}, ordering_key=f"call-{n % 3}")
        for n in range(12)
    ]
    worker = make_worker(database, http, schedule=(0.05,) * 200)
    async with running(worker):
        worker.notify()

        async def heads_retried() -> bool:
            # The first event of each of the three calls has failed at least twice.
            async with database.session() as session:
                tried = await session.scalar(
                    select(func.count()).where(WebhookEvent.attempt_count >= 2)
                )
            return (tried or 0) >= 3

        await wait_until(heads_retried)
    await database.close()  # the process is gone

    async with running_receiver(port) as receiver:
        restarted = Database(db_url)
        try:
            worker = make_worker(restarted, http, schedule=(0.05,) * 200)
            async with running(worker):
                worker.notify()
                await receiver.wait_for("/events", count=len(ids))

                async def all_delivered() -> bool:
                    async with restarted.session() as session:
                        pending = await session.scalar(
                            select(func.count()).where(WebhookEvent.status != "delivered")
                        )
                    return pending == 0

                await wait_until(all_delivered)
                await asyncio.sleep(0.3)
        finally:
            await restarted.close()
    received = Counter(r.headers["webhook-id"] for r in receiver.on("/events"))
    assert set(received) == set(ids)
    assert max(received.values()) == 1
    for call in range(3):
        order = [r.json()["n"] for r in receiver.on("/events") if r.json()["n"] % 3 == call]
        assert order == sorted(order)


async def test_a_worker_that_died_holding_events_loses_them_only_until_the_lease_expires(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    event_id = await enqueue_one(database, tenant, receiver.url("/lease"))
    clock = FakeClock()
    dead_worker = make_worker(database, http, clock=clock, lease_s=60)
    [(claimed, secrets)] = await dead_worker._store_and_claim([], 10)  # then "crashes"

    heir = make_worker(database, http, clock=clock, lease_s=60)
    assert await heir.run_once() == 0  # still leased
    clock.advance(61)
    assert await heir.run_once() == 1
    assert (await event_row(database, event_id)).status == "delivered"

    # The dead worker wakes up after all: its stale result must not undo the heir's.
    stale = await dead_worker._attempt(claimed, secrets)
    await dead_worker._store_and_claim([stale], 0)
    assert (await event_row(database, event_id)).status == "delivered"
    assert (await event_row(database, event_id)).attempt_count == 1
    assert len(receiver.on("/lease")) == 2  # at least once: the receiver deduplicates
    assert len(await attempt_rows(database, event_id)) == 2  # both tries are logged


async def test_stopping_the_worker_mid_send_hands_the_event_back_at_once(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    receiver.answer("/slow", Reply(200, delay_s=3.0))
    worker = make_worker(database, http, timeout_s=5, lease_s=60)
    async with running(worker):
        event_id = await enqueue_one(database, tenant, receiver.url("/slow"))
        worker.notify()
        await receiver.wait_for("/slow")
    event = await event_row(database, event_id)
    assert (event.status, event.lease_until) == ("pending", None)
    again = make_worker(database, http)
    assert await again.run_once() == 1
    assert (await event_row(database, event_id)).status == "delivered"


async def test_notify_wakes_the_worker_without_waiting_for_the_poll(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    worker = make_worker(database, http, poll_interval_s=30)
    async with running(worker):
        await asyncio.sleep(0.1)  # the worker is asleep now, for 30 s
        loop = asyncio.get_running_loop()
        started = loop.time()
        await enqueue_one(database, tenant, receiver.url("/now"))
        worker.notify()
        [request] = await receiver.wait_for("/now", timeout_s=5)
    assert request.received_at - started < 1.0


async def test_two_workers_never_send_the_same_event_twice(
    db_url: str, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    setup = Database(db_url)
    url = receiver.url("/many")
    try:
        async with setup.session() as session:
            ids = [
                await enqueue(
                    session,
                    account_id=tenant.account_id,
                    event_type="call.status",
                    url=url,
                    payload={"n": n},
                    ordering_key=f"call-{n % 50}" if n % 2 else None,
                )
                for n in range(500)
            ]
    finally:
        await setup.close()
    first_db, second_db = Database(db_url), Database(db_url)
    try:
        first = make_worker(first_db, http, batch_size=20, concurrency=20)
        second = make_worker(second_db, http, batch_size=20, concurrency=20)
        async with running(first), running(second):
            first.notify()
            second.notify()
            await receiver.wait_for("/many", count=500, timeout_s=60)
            await asyncio.sleep(0.5)  # a duplicate would arrive now
    finally:
        await first_db.close()
        await second_db.close()
    received = Counter(r.headers["webhook-id"] for r in receiver.on("/many"))
    assert set(received) == set(ids)
    assert [i for i, n in received.items() if n > 1] == []
    check = Database(db_url)
    try:
        async with check.session() as session:
            statuses = Counter((await session.scalars(select(WebhookEvent.status))).all())
            attempts = await session.scalar(select(func.count()).select_from(WebhookAttempt))
    finally:
        await check.close()
    assert statuses == {"delivered": 500}
    assert attempts == 500


async def test_a_claim_knows_which_events_hold_back_a_later_one_of_their_call(
    database: Database, http: aiohttp.ClientSession, tenant: Tenant
) -> None:
    url = "http://127.0.0.1:9/unused"
    first = await enqueue_one(database, tenant, url, {"n": 1}, ordering_key="call-A")
    await enqueue_one(database, tenant, url, {"n": 2}, ordering_key="call-A")
    alone = await enqueue_one(database, tenant, url, {"n": 3}, ordering_key="call-B")
    unordered = await enqueue_one(database, tenant, url, {"n": 4})
    worker = make_worker(database, http)
    claimed = await worker._store_and_claim([], 10)
    assert {event.id: event.blocks_successor for event, _ in claimed} == {
        first: True,
        alone: False,
        unordered: False,
    }


async def test_a_store_outage_after_sending_neither_stops_the_worker_nor_resends(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> None:
    """The receiver got the event but its attempt cannot be written (here: the table
    is gone for a moment). The result waits in memory; nothing is sent twice."""
    event_id = await enqueue_one(database, tenant, receiver.url("/once"))
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE webhook_attempts RENAME TO webhook_attempts_away")
    worker = make_worker(database, http, lease_s=30)
    async with running(worker):
        worker.notify()
        await receiver.wait_for("/once")
        await asyncio.sleep(0.6)  # a few failing store rounds (poll interval 0.2 s)
        assert (await event_row(database, event_id)).status == "pending"
        async with database.engine.begin() as conn:
            await conn.exec_driver_sql(
                "ALTER TABLE webhook_attempts_away RENAME TO webhook_attempts"
            )
        await wait_until(status_is(database, event_id, "delivered"))
    assert len(receiver.on("/once")) == 1
    assert [a.outcome for a in await attempt_rows(database, event_id)] == ["delivered"]
