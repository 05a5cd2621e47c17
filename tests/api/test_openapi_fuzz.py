"""Schemathesis against callmask's own OpenAPI document (issue 6, "Bad input").

Every operation that ``GET /openapi.json`` lists is called with requests schemathesis
generates from the document: its coverage phase (boundary values, missing and
wrong-typed fields, unexpected methods) and then ``MAX_EXAMPLES`` generated requests,
valid and invalid (its positive and negative modes). The caller is authenticated as a
tenant (``Authorization: App <key>``), or as the operator on ``/admin/`` and
``/metrics``. Requests go over ASGI to an app built as ``callmask run`` builds it, on a
store that already holds one of everything a path or body can name (DIDs owned, free
and another account's, masking actions, audio files, webhook events and secrets,
agents, lead lists and broadcast keys, CDRs). Generated cases are steered two ways:
keys and body fields are often swapped for seeded values, so requests reach the code
behind the lookups rather than stopping at 404; and one case in four carries a NUL in
a path, query or body value, which PostgreSQL refuses in text. The store is SQLite,
and PostgreSQL as well when ``CALLMASK_TEST_DATABASE_URL`` is set (``postgres``).

Checked on every response: no 5xx (``not_a_server_error``); an invalid request is never
accepted (``negative_data_rejection``); a documented status carries the documented
content type and a body that matches its schema (``content_type_conformance``,
``response_schema_conformance``). Statuses are not checked against the document
(``status_code_conformance``): FastAPI documents 422 for bad input, while both dialects
answer 400 (DESIGN.md, the Infobip and Tata references), and 401/404/409 are part of
each dialect's contract rather than of the generated document.

The operations that drive the call engine (``CALL_OPERATIONS``) answer 503 by design
on a node without the call path, so they are fuzzed separately, against a node with
SIP, a managed rtpengine and a SIPp far side that answers (``interop``).

Tests are parametrized here, one per operation, rather than with schemathesis' pytest
integration: with pytest 9.2 its ``from_fixture`` fails (``Function._nodeid`` is
gone) and ``schema.parametrize()`` gives every operation the same test id.

Bounded: no Hypothesis deadline (a shared 2-core machine has pauses that say nothing
about callmask), no shrinking (it replays requests for minutes; a failure is reported
as generated, with its curl line), and the audio fetch timeout cut to one second so a
generated URL cannot hold a request for long. The whole file runs in about a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import re
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import AcceptedNegativeData, Failure
from schemathesis.core.parameters import ParameterLocation
from schemathesis.errors import FailureGroup
from schemathesis.python.asgi import get_client, shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)
from sqlalchemy import func, select

from callmask.accounts import create_account
from callmask.config import Settings
from callmask.media.audio import AudioStore
from callmask.node import node_app
from callmask.phone import region_of
from callmask.store.database import Database
from callmask.store.models import AudioFile, TataAgent, TataBroadcastKey, TataLeadList
from callmask.store.repositories import Actions, Numbers
from callmask.store.tata_repositories import (
    AccountWebhooks,
    Agents,
    BroadcastKeys,
    LeadLists,
    Leads,
)
from callmask.webhooks.outbox import enqueue
from callmask.webhooks.repository import Secrets
from tests.api.infobip import assert_error
from tests.calls.conftest import node_settings as call_node_settings
from tests.conftest import ADMIN_KEY, Tenant, _empty_postgres, make_settings
from tests.support.sipp import SippUas, free_udp_port
from tests.tata.conftest import cdr

MAX_EXAMPLES = 25

CHECKS = [
    not_a_server_error,
    negative_data_rejection,
    content_type_conformance,
    response_schema_conformance,
]

# Both sides of the operator/tenant split: these prefixes take the operator key.
OPERATOR_PREFIXES = ("/admin", "/metrics")

# The tenant's DIDs (Indian, as in the Tata reference; the node's default region is IN).
OWNED_DIDS = ("+918069000001", "+918069000002", "+918069000003")
FREE_DIDS = ("+918069000011", "+918069000012")
OTHER_DID = "+918069000021"  # another account's
AGENT_NUMBER = "+919876543210"
LEAD_NUMBER = "+919876501234"
# A loopback address the worker refuses to post to (private addresses are refused),
# and nothing listens on the discard port anyway: deliveries fail fast.
DEAD_URL = "http://127.0.0.1:9/hook"


def node_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "default_region": "IN",
        # What an operator runs: callback and audio URLs on private ranges refused.
        "webhook_allow_private": False,
        "audio_fetch_timeout": 1.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, database_url, **values)


# The operations that ask the running call engine for something; on a node without the
# call path they answer 503 by design (``get_call_control``). A test below keeps this
# list honest.
CALL_OPERATIONS = (
    "GET /v1/live_calls",
    "POST /v1/call/hangup",
    "POST /v1/click_to_call",
    "POST /v1/call/options",
    "POST /v1/c2c_api",
)


def _openapi_document() -> dict[str, Any]:
    # Building the app does no I/O; its document is the one GET /openapi.json serves
    # (a test below checks that).
    app = node_app(node_settings(Path("/nonexistent"), "sqlite+aiosqlite://"))
    return app.openapi()


OPENAPI_DOCUMENT = _openapi_document()
DOCUMENTED_OPERATIONS = [
    f"{method.upper()} {path}"
    for path, operations in OPENAPI_DOCUMENT["paths"].items()
    for method in operations
]
API_OPERATIONS = [label for label in DOCUMENTED_OPERATIONS if label not in CALL_OPERATIONS]


@dataclass(frozen=True)
class Seed:
    """The tenant's key, and for each name a path parameter or body field goes by, values
    that name something in the seeded store or that the API accepts."""

    api_key: str
    values: Mapping[str, tuple[object, ...]]


async def _seed(database: Database, audio_store: AudioStore) -> Seed:
    async with database.session() as session:
        account, api_key = await create_account(session, "acme")
        other, _ = await create_account(session, "globex")
    me = account.id
    async with database.session() as session:
        numbers = Numbers(session)
        owned = [
            (await numbers.add_to_inventory(e164, region_of(e164), me)).number_key
            for e164 in OWNED_DIDS
        ]
        free = [
            (await numbers.add_to_inventory(e164, region_of(e164), None)).number_key
            for e164 in FREE_DIDS
        ]
        foreign = await numbers.add_to_inventory(OTHER_DID, region_of(OTHER_DID), other.id)
    async with database.session() as session:
        actions = Actions(session)
        masking = await actions.create(
            me, owned[0], type_="VOICE_NUMBER_MASKING", callback_url=DEAD_URL, status_url=DEAD_URL
        )
        anonymize = await actions.create(
            me, owned[1], type_="ANONYMIZE", callback_url=DEAD_URL, status_url=None
        )
        foreign_action = await actions.create(
            other.id, foreign.number_key, type_="ANONYMIZE", callback_url=DEAD_URL, status_url=None
        )
        agent = await Agents(session).create(
            me, name="Asha", follow_me_number=AGENT_NUMBER, intercom="1001"
        )
        lead_list = await LeadLists(session).create(me, "otp")
        await Leads(session).put(lead_list.id, LEAD_NUMBER, "482913", overwrite=True)
        key, clear_key = await BroadcastKeys(session).create(
            me, lead_list_id=lead_list.id, template="Your code is {otp}", caller_id=OWNED_DIDS[0]
        )
        await AccountWebhooks(session).set(me, DEAD_URL)
        audio_ids = []
        for owner in (me, other.id):
            # The row as an upload stores it. The routes fuzzed here (list, show, delete)
            # never decode the file, so its bytes are a stand-in: real MP3s come from
            # espeak-ng and lame, which only interop tests may need.
            audio_id = str(uuid.uuid4())
            audio_store.save(audio_id, b"stand-in for an MP3 upload")
            session.add(
                AudioFile(
                    file_id=audio_id,
                    account_id=owner,
                    size_bytes=26,
                    duration_ms=3270,
                    sha256="0" * 64,
                    source_url=None,
                )
            )
            audio_ids.append(audio_id)
        secrets = Secrets(session)
        await secrets.ensure(me)
        secret = await secrets.add(me)
        events = [
            await enqueue(
                session,
                account_id=me,
                event_type="call.status",
                url=DEAD_URL,
                payload={"status": "answered", "n": n},
                ordering_key=f"call-{n}",
            )
            for n in range(3)
        ]
        session.add_all(
            [
                cdr(me, "1700000000.000001", "2026-11-01 09:00:00", 100),
                cdr(
                    me,
                    "1700000000.000002",
                    "2026-11-02 10:00:00",
                    60,
                    direction="outbound",
                    service="click_to_call",
                    caller=AGENT_NUMBER,
                    callee=LEAD_NUMBER,
                    agent_id=agent.id,
                ),
                cdr(me, "1700000000.000003", "2026-11-03 11:00:00", 20, status="busy"),
                cdr(other.id, "1700000000.000004", "2026-11-03 12:00:00", 30),
            ]
        )
    return Seed(
        api_key=api_key,
        values={
            # path parameters
            "number_key": (*owned, *free, foreign.number_key),
            "action_key": (masking.action_key, anonymize.action_key, foreign_action.action_key),
            "event_id": tuple(events),
            "secret_id": (secret.id,),
            "lead_id": (lead_list.id,),
            "lead_list_id": (lead_list.id,),
            "key_id": (key.id,),
            "account_id": (me, other.id),
            "file_id": tuple(audio_ids),
            # body fields
            "numberKey": (*free, *owned, foreign.number_key),
            "accountId": (me,),
            "api_key": (clear_key,),
            "caller_id": OWNED_DIDS,
            "customer_number": (LEAD_NUMBER,),
            "field_0": (LEAD_NUMBER,),
            "agent_number": (AGENT_NUMBER, "1001", str(agent.eid)),
            "agent_id": (str(agent.id),),
            "call_id": ("1700000000.000001",),
            "follow_me_number": (AGENT_NUMBER, "9876543219"),
            "intercom": ("1001", "1002"),
            "destination_number": (LEAD_NUMBER, "9876501235"),
            "type": ("VOICE_NUMBER_MASKING", "ANONYMIZE", 4),
            "callbackUrl": ("https://customer.example.com/callback",),
            "statusUrl": ("https://customer.example.com/status",),
            "name": ("Asha", "OTP customers"),
            "numbers": (["+918069000031"], ["08069000032", "+918069000033"]),
            "template": ("Your code is {otp}",),
            "field_5": ("482913", "1234"),
            "duplicate_option": ("overwrite", "skip"),
            "async": (0, 1),
        },
    )


@dataclass(frozen=True)
class SeededStore:
    template: Path
    files: Path  # the audio files the seeded rows name
    seed: Seed

    def copy_to(self, tmp_path: Path) -> str:
        path = tmp_path / "callmask.db"
        shutil.copy(self.template, path)
        return f"sqlite+aiosqlite:///{path}"

    def place_files(self, files_dir: Path) -> None:
        shutil.copytree(self.files, files_dir)


def _seed_into(url: str, files: Path) -> Seed:
    async def seed() -> Seed:
        database = Database(url)
        try:
            return await _seed(database, AudioStore(files))
        finally:
            await database.close()

    return asyncio.run(seed())


@pytest.fixture(scope="module")
def seeded_store(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> SeededStore:
    """A seeded SQLite store, copied for each test."""
    directory = tmp_path_factory.mktemp("fuzz-store")
    path = directory / "callmask.db"
    shutil.copy(sqlite_template, path)
    files = directory / "files"
    return SeededStore(path, files, _seed_into(f"sqlite+aiosqlite:///{path}", files))


@dataclass(frozen=True)
class Store:
    url: str
    files: Path
    seed: Seed


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    seeded_store: SeededStore,
    postgres_database: str | None,
) -> Store:
    """A seeded store for one test: a copy of the SQLite one, or PostgreSQL emptied and
    seeded again (PostgreSQL refuses what SQLite takes, NUL in text for one)."""
    if request.param == "sqlite":
        return Store(seeded_store.copy_to(tmp_path), seeded_store.files, seeded_store.seed)
    if postgres_database is None:
        pytest.skip("PostgreSQL not configured: set CALLMASK_TEST_DATABASE_URL")
    asyncio.run(_empty_postgres(postgres_database))
    files = tmp_path / "seed-files"
    return Store(postgres_database, files, _seed_into(postgres_database, files))


def _body_properties(label: str) -> frozenset[str]:
    """The top-level properties of the operation's JSON request body, if it has one."""
    method, path = label.split(" ", 1)
    operation = OPENAPI_DOCUMENT["paths"][path][method.lower()]
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = OPENAPI_DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return frozenset(schema.get("properties", {}))


ABSENT = object()  # a body field the generated case left out


def _with_nul(value: object) -> object:
    """The value with a NUL in the middle, if it is text (or a number sent as text)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return value
    text = str(value)
    middle = len(text) // 2
    return f"{text[:middle]}\x00{text[middle:]}"


def _steer_generated_cases(schema: BaseSchema, seed: Seed) -> None:
    """Two nudges to what schemathesis generates, so the store is reached and tested:

    - path parameters and top-level body fields that name something seeded get a seeded
      value three times in four (each field on its own, absent body fields included): a
      request gets far only when every field checked before the lookup is right;
    - one case in four carries a NUL in the middle of one of its path, query or body
      values: PostgreSQL refuses NUL in text, and generated strings rarely hold one.

    Schemathesis re-judges whether a changed case is still valid or invalid."""

    @schema.hook
    def flatmap_case(context: schemathesis.HookContext, case: Case) -> st.SearchStrategy[Case]:
        path = dict(case.path_parameters or {})
        body: dict[str, Any] = dict(case.body) if isinstance(case.body, dict) else {}
        in_path = [name for name in path if name in seed.values]
        in_body: list[str] = []
        if isinstance(case.body, dict):
            label = f"{case.method.upper()} {case.operation.path}"
            in_body = sorted(name for name in _body_properties(label) if name in seed.values)

        def either(container: dict[str, Any], names: list[str]) -> st.SearchStrategy[Any]:
            return st.fixed_dictionaries(
                {
                    name: st.integers(0, 3).flatmap(
                        lambda n, name=name: (
                            st.just(container.get(name, ABSENT))
                            if n == 0
                            else st.sampled_from(seed.values[name])
                        )
                    )
                    for name in names
                }
            )

        def apply(
            chosen: tuple[dict[str, Any], dict[str, Any], int, int],
        ) -> Case:
            new_path, new_body, nul_roll, nul_pick = chosen
            path.update(new_path)
            for name, value in new_body.items():
                if value is ABSENT:
                    body.pop(name, None)
                else:
                    body[name] = value
            query = dict(case.query or {})
            if nul_roll == 0:
                places = [
                    (container, name)
                    for container in (path, query, body)
                    for name, value in container.items()
                    if _with_nul(value) is not value
                ]
                if places:
                    container, name = places[nul_pick % len(places)]
                    container[name] = _with_nul(container[name])
            # Assigned only when changed, so untouched cases keep their labels as
            # generated.
            if path != (case.path_parameters or {}):
                case.path_parameters = path
            if query != (case.query or {}):
                case.query = query
            if isinstance(case.body, dict) and body != case.body:
                case.body = body
            return case

        return st.tuples(
            either(path, in_path), either(body, in_body), st.integers(0, 3), st.integers(0, 99)
        ).map(apply)


# Query parameters that are lists of free text (Tata records filters): on the wire any
# value is text, so the value schemathesis generates as "not a string" (false, 0.5)
# arrives as the string "false" and is rightly accepted.
FREE_TEXT_LISTS = frozenset({"department", "department[]", "ivr", "ivr[]"})


def _accept_text_lists(schema: BaseSchema) -> None:
    @schema.hook
    def filter_failure(
        context: schemathesis.HookContext, failure: Failure, case: Case, response: Response
    ) -> bool:
        if not isinstance(failure, AcceptedNegativeData) or case.meta is None:
            return True
        data = case.meta.phase.data
        names = {data.parameter} if data.parameter else {m.parameter for m in data.mutations}
        return not (data.parameter_location is ParameterLocation.QUERY and names <= FREE_TEXT_LISTS)


@dataclass(frozen=True)
class FuzzedNode:
    schema: BaseSchema  # as GET /openapi.json serves it, bound to the node's app
    seed: Seed


@pytest.fixture
def fuzzed_node(tmp_path: Path, store: Store) -> Iterator[FuzzedNode]:
    settings = node_settings(tmp_path, store.url)
    shutil.copytree(store.files, settings.files_dir)
    # The app owns its store: schemathesis starts the lifespan (which opens it) on the
    # event loop it runs ASGI apps on, with the first request (GET /openapi.json).
    app = node_app(settings)
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        _steer_generated_cases(schema, store.seed)
        _accept_text_lists(schema)
        yield FuzzedNode(schema, store.seed)
    finally:
        shutdown_lifespans()


def credentials(label: str, seed: Seed) -> dict[str, str]:
    _, path = label.split(" ", 1)
    if path.startswith(OPERATOR_PREFIXES):
        return {"Authorization": f"App {ADMIN_KEY}"}
    return {"Authorization": f"App {seed.api_key}"}


def fuzz(node: FuzzedNode, label: str) -> Counter[int]:
    """Schemathesis' coverage phase for the operation (boundary values, missing and
    wrong-typed fields, unexpected methods: each once), then ``MAX_EXAMPLES`` generated
    requests, valid and invalid; every response goes through ``CHECKS``. Returns how
    many responses had each status."""
    operation = node.schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served /openapi.json"
    headers = credentials(label, node.seed)
    modes = list(GenerationMode)
    statuses: Counter[int] = Counter()

    def send(case: Case) -> None:
        statuses[case.call_and_validate(headers=headers, checks=CHECKS).status_code] += 1

    failures: list[str] = []
    coverage = node.schema.iter_coverage_cases(
        operation,
        generation_modes=modes,
        generation_config=node.schema.config.generation_for(operation=operation, phase="coverage"),
    )
    for case in coverage:
        try:
            send(case)
        except FailureGroup as exc:
            failures.append(str(exc))
        except Exception as exc:  # raised by the app: the ASGI client re-raises what a 500 hid
            failures.append(f"{type(exc).__name__}: {exc}\n{case.as_curl_command()}")
    assert not failures, f"{len(failures)} coverage requests failed:\n\n" + "\n\n".join(
        failures[:5]
    )

    # No shrinking: a failing request is reported as generated (with its curl line),
    # because shrinking replays requests for up to minutes. Hypothesis' example
    # database replays it first on the next run.
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(case=st.one_of([operation.as_strategy(generation_mode=mode) for mode in modes]))
    def generated(case: Case) -> None:
        send(case)

    generated()
    return statuses


@pytest.mark.parametrize("label", API_OPERATIONS)
def test_no_operation_answers_a_server_error(label: str, fuzzed_node: FuzzedNode) -> None:
    statuses = fuzz(fuzzed_node, label)
    # Every request carries valid credentials: a 401 would mean the fuzzing never got
    # past authentication and proved nothing.
    assert 401 not in statuses, statuses


# -- the call engine's operations, against a node that runs calls ---------------------


@contextlib.contextmanager
def carrier_far_side(port: int) -> Iterator[None]:
    """The trunk's far side: a SIPp UAS that answers every call (B hangs up after two
    seconds), on an event loop of its own. The node runs on schemathesis' loop and the
    test itself is synchronous, so neither can host SIPp's process."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sipp far side", daemon=True)
    thread.start()
    uas = SippUas(
        "uas_answer_bye.xml", port=port, variables={"hold_ms": "2000"}, trace_messages=False
    )
    try:
        asyncio.run_coroutine_threadsafe(uas.__aenter__(), loop).result(timeout=15)
        try:
            yield
        finally:
            asyncio.run_coroutine_threadsafe(uas.stop(), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _live_calls_to_name(app: Any, seed: Seed) -> tuple[str, ...]:
    """Two answered click-to-call calls, so that generated hangups and transfers can
    name a live call; their call ids."""
    tata = {"Authorization": seed.api_key}
    with get_client(app) as client:
        call_ids = []
        for _ in range(2):
            reply = client.post(
                "/v1/click_to_call",
                json={
                    "agent_number": "1001",
                    "destination_number": LEAD_NUMBER,
                    "async": 0,
                    "get_call_id": 1,
                },
                headers=tata,
            )
            assert reply.status_code == 200 and reply.json()["success"], reply.text
            call_ids.append(reply.json()["call_id"])
        live = {call["call_id"] for call in client.get("/v1/live_calls", headers=tata).json()}
    assert set(call_ids) <= live, (call_ids, live)
    return tuple(call_ids)


@pytest.fixture
def call_node(tmp_path: Path, seeded_store: SeededStore) -> Iterator[FuzzedNode]:
    trunk_port = free_udp_port()
    settings = call_node_settings(
        tmp_path,
        seeded_store.copy_to(tmp_path),
        trunk_port,
        default_region="IN",
        webhook_allow_private=False,
        audio_fetch_timeout=1.0,
    )
    seeded_store.place_files(settings.files_dir)
    app = node_app(settings, with_calls=True)
    with carrier_far_side(trunk_port):
        try:
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            seed = seeded_store.seed
            seed = dataclasses.replace(
                seed, values={**seed.values, "call_id": _live_calls_to_name(app, seed)}
            )
            _steer_generated_cases(schema, seed)
            yield FuzzedNode(schema, seed)
        finally:
            # Ends the calls still up (BYE both ways), then SIP and rtpengine.
            shutdown_lifespans()


@pytest.mark.interop
@pytest.mark.parametrize("label", CALL_OPERATIONS)
def test_no_call_engine_operation_answers_a_server_error(label: str, call_node: FuzzedNode) -> None:
    statuses = fuzz(call_node, label)
    if label != "POST /v1/c2c_api":  # its 401 is the dialect's answer to a wrong api_key
        assert 401 not in statuses, statuses
    assert 503 not in statuses, statuses


# -- what the fuzzing relies on ------------------------------------------------------


async def test_the_fuzzed_document_is_the_one_the_api_serves(client: httpx.AsyncClient) -> None:
    assert (await client.get("/openapi.json")).json() == OPENAPI_DOCUMENT


async def test_only_the_call_engine_operations_need_the_call_path(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """On a node without the call path, exactly ``CALL_OPERATIONS`` answer 503 (so the
    fuzzing above leaves nothing else out), and they answer it before reading the
    request."""
    refused = []
    for label in DOCUMENTED_OPERATIONS:
        method, path = label.split(" ", 1)
        headers = (
            {"Authorization": f"App {ADMIN_KEY}"}
            if path.startswith(OPERATOR_PREFIXES)
            else tenant.app_key
        )
        url = re.sub(r"\{[^}]+\}", "x", path)
        reply = await client.request(method, url, headers=headers, json={})
        if reply.status_code == 503:
            assert reply.json() == {
                "success": False,
                "message": "calls are not running on this node",
            }, label
            refused.append(label)
    assert sorted(refused) == sorted(CALL_OPERATIONS)


# -- regressions the fuzzing found ---------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/numbers/1/numbers/available", "/numbers/1/numbers", "/webhooks/1/deliveries"]
)
async def test_a_page_past_what_the_store_can_count_is_a_400(
    client: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    """``page=184467440737095517`` made the row offset overflow SQLite's integers: 500."""
    last = await client.get(path, params={"page": "999999999"}, headers=tenant.app_key)
    assert last.status_code == 200, last.text
    reply = await client.get(path, params={"page": "184467440737095517"}, headers=tenant.app_key)
    assert_error(reply, 400, "BAD_REQUEST", mentions="page")


async def test_the_operator_and_file_listings_carry_time_zones(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, tmp_path: Path
) -> None:
    """SQLite hands times back without a zone; they went out as "2026-11-25T03:40:01"."""
    async with database.session() as session:
        session.add(
            AudioFile(
                file_id=str(uuid.uuid4()),
                account_id=tenant.account_id,
                size_bytes=1,
                duration_ms=1,
                sha256="0" * 64,
                source_url=None,
            )
        )
    accounts = await client.get("/admin/accounts", headers={"Authorization": f"App {ADMIN_KEY}"})
    files = await client.get("/numbers/1/files", headers=tenant.app_key)
    stamps = [a["createdAt"] for a in accounts.json()] + [
        f["createdAt"] for f in files.json()["files"]
    ]
    assert len(stamps) == 2, stamps
    for stamp in stamps:
        assert dt.datetime.fromisoformat(stamp).utcoffset() == dt.timedelta(0), stamp


@pytest.mark.parametrize("value", ["2026", "20261125", "0", "0.5", "-1", "+5", "4.8e-225"])
async def test_a_delivery_filter_time_is_iso_8601_not_unix_seconds(
    client: httpx.AsyncClient, tenant: Tenant, value: str
) -> None:
    """pydantic read "from=2026" as 1970-01-01T00:33:46Z and answered 200."""
    for name in ("from", "to"):
        reply = await client.get(
            "/webhooks/1/deliveries", params={name: value}, headers=tenant.app_key
        )
        assert_error(reply, 400, "BAD_REQUEST", mentions="ISO-8601")
    for good in ("2026-11-25T10:00:00Z", "2026-11-25T10:00:00+05:30", "2026-11-25"):
        reply = await client.get(
            "/webhooks/1/deliveries", params={"from": good}, headers=tenant.app_key
        )
        assert reply.status_code == 200, (good, reply.text)


async def test_retrying_a_delivery_answers_promptly(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The route opened a second store session while the request held one; with SQLite's
    single pooled connection it waited for itself until the pool timed out."""
    async with asyncio.timeout(5):
        reply = await client.post("/webhooks/1/deliveries/0/retry", headers=tenant.app_key)
    assert_error(reply, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "url", "where"),
    [
        ("GET", "/v1/call/records?call_id=a%00b", "call_id"),
        ("GET", "/v1/call/records?department=a%00b", "department"),
        ("GET", "/v1/call/records?callerid=98%0076", "callerid"),
        ("DELETE", "/v1/broadcast/lists/a%00b", "path"),
        ("DELETE", "/v1/broadcast/keys/a%00b", "path"),
        ("POST", "/v1/broadcast/lead/a%00b", "path"),
        ("GET", "/webhooks/1/deliveries?eventType=a%00b", "eventType"),
        ("GET", "/webhooks/1/deliveries/a%00b", "path"),
        ("POST", "/webhooks/1/deliveries/a%00b/retry", "path"),
        ("GET", "/admin/accounts/a%00b/webhook", "path"),
    ],
)
async def test_a_nul_in_the_path_or_query_is_a_400_naming_where(
    client: httpx.AsyncClient, tenant: Tenant, method: str, url: str, where: str
) -> None:
    """PostgreSQL refuses NUL in text: each of these was a 500 there."""
    admin = url.startswith("/admin")
    headers = {"Authorization": f"App {ADMIN_KEY}"} if admin else tenant.app_key
    reply = await client.request(method, url, headers=headers, json={})
    if url.startswith("/v1/"):
        assert reply.status_code == 400, reply.text
        assert reply.json() == {"success": False, "message": f"{where} contains a NUL character"}
    else:
        assert_error(reply, 400, "BAD_REQUEST", mentions=f"{where} contains a NUL")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/agent", {"name": "A\x00sha", "follow_me_number": "9876543210"}, "name"),
        ("/v1/broadcast/lists", {"name": "otp\x00"}, "name"),
        ("/v1/broadcast/keys", {"lead_list_id": "a\x00b", "template": "{otp}"}, "lead_list_id"),
    ],
)
async def test_a_control_character_in_a_tata_text_field_is_a_400_and_stores_nothing(
    client: httpx.AsyncClient,
    database: Database,
    tenant: Tenant,
    path: str,
    body: dict[str, str],
    field: str,
) -> None:
    """A NUL in an agent's or a lead list's name reached PostgreSQL: a 500."""
    reply = await client.post(path, json=body, headers=tenant.app_key)
    assert reply.status_code == 400, reply.text
    assert reply.json() == {"success": False, "message": f"{field} contains control characters"}
    async with database.session() as session:
        for table in (TataAgent, TataLeadList, TataBroadcastKey):
            assert await session.scalar(select(func.count()).select_from(table)) == 0
