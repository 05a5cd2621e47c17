"""Every request example of the Infobip Number Masking reference
(shared/reference/infobip-number-masking.txt), replayed as a customer would send it,
gets the documented status and response shape.

The whole workflow runs twice: in-process over ASGI (on SQLite and PostgreSQL), and
against the app served by uvicorn on a loopback port, driven by httpx with Basic auth
the way the reference's curl-style examples are.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from callmask.config import Settings
from callmask.node import node_app
from callmask.store.database import Database
from callmask.store.models import Action
from tests.api.infobip import (
    REFERENCE_ACTION,
    REFERENCE_DID,
    count,
    owner_of,
    stock,
)
from tests.conftest import Tenant, create_tenant, make_settings
from tests.support.audio import AudioSamples
from tests.support.receiver import Receiver, Reply, free_port, serve_app

pytestmark = pytest.mark.interop  # real MP3s from espeak-ng + lame

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# The audio URL path of the reference example, served by the loopback receiver.
REFERENCE_AUDIO_PATH = "/more/winstart/mp3/winxp.mp3"


def _is_key(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 32 and value.isalnum() and value.isupper()


async def replay_reference(
    http: httpx.AsyncClient,
    *,
    auth_headers: dict[str, str],
    database: Database,
    settings: Settings,
    receiver: Receiver,
    audio: AudioSamples,
    number_key: str,
    account_id: str,
) -> None:
    """The reference document's requests, in the order a new customer sends them."""
    mp3 = audio.speech_mp3()
    headers = {**JSON_HEADERS, **auth_headers}

    # Numbers API (the reference's prerequisite): find the DID, buy it, see it.
    reply = await http.get(
        "/numbers/1/numbers/available", params={"number": "41793026731"}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    available = reply.json()
    assert available["numberCount"] == 1
    assert [n["numberKey"] for n in available["numbers"]] == [number_key]
    assert available["numbers"][0]["number"] == "41793026731"  # Infobip form: no '+'
    assert available["numbers"][0]["country"] == "CH"

    reply = await http.post("/numbers/1/numbers", json={"numberKey": number_key}, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["numberKey"] == number_key
    assert reply.json()["number"] == "41793026731"
    assert await owner_of(database, number_key) == account_id

    reply = await http.get("/numbers/1/numbers", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["numberCount"] == 1
    assert [n["numberKey"] for n in reply.json()["numbers"]] == [number_key]

    reply = await http.get(f"/numbers/1/numbers/{number_key}", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["number"] == "41793026731"

    # "Number masking action setup": the example posts to .../action (singular).
    reply = await http.post(
        f"/numbers/1/numbers/{number_key}/action", json=REFERENCE_ACTION, headers=headers
    )
    assert reply.status_code == 200, reply.text
    action = reply.json()
    assert set(action) == {"actionKey", "type", "callbackUrl", "statusUrl"}
    assert _is_key(action["actionKey"])
    assert {k: action[k] for k in REFERENCE_ACTION} == REFERENCE_ACTION

    # "Get number masking action".
    reply = await http.get(
        f"/numbers/1/numbers/{number_key}/actions",
        headers={"Accept": "application/json"} | auth_headers,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"actions": [action]}

    # "Delete a number masking action": 204 No Content, no body.
    reply = await http.delete(
        f"/numbers/1/numbers/{number_key}/actions/{action['actionKey']}",
        headers={"Accept": "application/json"} | auth_headers,
    )
    assert reply.status_code == 204, reply.text
    assert reply.content == b""
    assert await count(database, Action) == 0
    reply = await http.get(f"/numbers/1/numbers/{number_key}/actions", headers=headers)
    assert reply.json() == {"actions": []}

    # The endpoint as the reference names it: .../actions (plural).
    reply = await http.post(
        f"/numbers/1/numbers/{number_key}/actions", json=REFERENCE_ACTION, headers=headers
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["actionKey"] != action["actionKey"]

    # "Audio file upload" by URL.
    receiver.always(REFERENCE_AUDIO_PATH, Reply(200, mp3, {"content-type": "audio/mpeg"}))
    reply = await http.post(
        "/numbers/1/files", json={"url": receiver.url(REFERENCE_AUDIO_PATH)}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"fileId"}
    by_url = reply.json()["fileId"]
    assert str(uuid.UUID(by_url)) == by_url
    assert [r.method for r in receiver.on(REFERENCE_AUDIO_PATH)] == ["GET"]
    assert (settings.files_dir / f"{by_url}.mp3").read_bytes() == mp3

    # ... and by base64 "content".
    content = base64.b64encode(mp3).decode()
    assert content.startswith("//")  # lame writes no ID3 tag; the reference's "SUQz" is one
    reply = await http.post("/numbers/1/files", json={"content": content}, headers=headers)
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"fileId"}
    by_content = reply.json()["fileId"]
    assert by_content != by_url
    assert (settings.files_dir / f"{by_content}.mp3").read_bytes() == mp3

    # Release the number: it returns to the inventory, its action goes with it.
    reply = await http.delete(f"/numbers/1/numbers/{number_key}", headers=headers)
    assert reply.status_code == 200, reply.text
    assert await owner_of(database, number_key) is None
    assert await count(database, Action) == 0
    reply = await http.get("/numbers/1/numbers", headers=headers)
    assert reply.json() == {"numbers": [], "numberCount": 0}


async def test_a_customer_replays_every_reference_example_over_asgi(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    tenant: Tenant,
    receiver: Receiver,
    audio: AudioSamples,
) -> None:
    [number_key] = await stock(database, REFERENCE_DID)
    await replay_reference(
        client,
        auth_headers=tenant.basic,
        database=database,
        settings=settings,
        receiver=receiver,
        audio=audio,
        number_key=number_key,
        account_id=tenant.account_id,
    )


async def test_a_customer_replays_every_reference_example_against_a_real_server(
    sqlite_url: str,
    tmp_path: Path,
    receiver: Receiver,
    audio: AudioSamples,
) -> None:
    settings = make_settings(tmp_path, sqlite_url)
    database = Database(sqlite_url)
    try:
        tenant = await create_tenant(database)
        [number_key] = await stock(database, REFERENCE_DID)
        port = free_port()
        async with (
            serve_app(node_app(settings, database=database), port),
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                auth=httpx.BasicAuth(tenant.account_id, tenant.api_key),
                timeout=10,
            ) as http,
        ):
            await replay_reference(
                http,
                auth_headers={},
                database=database,
                settings=settings,
                receiver=receiver,
                audio=audio,
                number_key=number_key,
                account_id=tenant.account_id,
            )
            # The same requests, each as the literal header the reference shows.
            token = base64.b64encode(f"{tenant.account_id}:{tenant.api_key}".encode()).decode()
            reply = await http.get(
                "/numbers/1/numbers",
                headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
                auth=None,
            )
            assert reply.status_code == 200, reply.text
    finally:
        await database.close()
