"""Tenant isolation: another account's numbers, actions and files answer exactly like
objects that do not exist (404), on every route, and stay untouched."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import httpx
import pytest

from callmask.config import Settings
from callmask.store.database import Database
from callmask.store.models import Action, AudioFile
from tests.api.infobip import REFERENCE_ACTION, REFERENCE_DID, assert_error, count, owner_of, stock
from tests.conftest import Tenant
from tests.support.audio import AudioSamples

pytestmark = pytest.mark.interop  # the victim's file is a real MP3 (espeak-ng + lame)

MISSING_KEY = "6FED0BC540BFADD9B05ED7D89AAC22FA"
MISSING_FILE = "382a92df-1f6d-4d30-8274-cf508a0c7d62"


@dataclass(frozen=True)
class Belongings:
    number_key: str
    action: dict[str, str]
    file_id: str


async def _set_up(
    client: httpx.AsyncClient, database: Database, owner: Tenant, audio: AudioSamples
) -> Belongings:
    [number_key] = await stock(database, REFERENCE_DID, account_id=owner.account_id)
    reply = await client.post(
        f"/numbers/1/numbers/{number_key}/actions", json=REFERENCE_ACTION, headers=owner.basic
    )
    assert reply.status_code == 200, reply.text
    action = reply.json()
    content = base64.b64encode(audio.speech_mp3()).decode()
    reply = await client.post("/numbers/1/files", json={"content": content}, headers=owner.basic)
    assert reply.status_code == 200, reply.text
    return Belongings(number_key, action, reply.json()["fileId"])


def _without_keys(text: str, *keys: str) -> str:
    for key in keys:
        text = text.replace(key, "<key>")
    return text


async def test_another_account_cannot_see_or_touch_anything_of_a_tenant(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    tenant: Tenant,
    other_tenant: Tenant,
    audio: AudioSamples,
    subtests: pytest.Subtests,
) -> None:
    mine = await _set_up(client, database, tenant, audio)
    n, a, f = mine.number_key, mine.action["actionKey"], mine.file_id
    # Each request of the intruder, next to the same request for an object that does not
    # exist at all: the two answers must not differ except for the key itself.
    probes = [
        ("GET", f"/numbers/1/numbers/{n}", None, f"/numbers/1/numbers/{MISSING_KEY}"),
        ("DELETE", f"/numbers/1/numbers/{n}", None, f"/numbers/1/numbers/{MISSING_KEY}"),
        ("POST", "/numbers/1/numbers", {"numberKey": n}, None),
        ("GET", f"/numbers/1/numbers/{n}/actions", None, None),
        ("POST", f"/numbers/1/numbers/{n}/actions", REFERENCE_ACTION, None),
        ("POST", f"/numbers/1/numbers/{n}/action", REFERENCE_ACTION, None),
        ("DELETE", f"/numbers/1/numbers/{n}/actions/{a}", None, None),
        ("GET", f"/numbers/1/files/{f}", None, f"/numbers/1/files/{MISSING_FILE}"),
        ("DELETE", f"/numbers/1/files/{f}", None, f"/numbers/1/files/{MISSING_FILE}"),
    ]
    for method, path, body, missing_path in probes:
        with subtests.test(msg=f"{method} {path}"):
            reply = await client.request(method, path, json=body, headers=other_tenant.basic)
            text = assert_error(reply, 404, "NOT_FOUND")
            if missing_path is None:
                missing_path = path.replace(n, MISSING_KEY)
                body = {"numberKey": MISSING_KEY} if body == {"numberKey": n} else body
            missing = await client.request(
                method, missing_path, json=body, headers=other_tenant.basic
            )
            missing_text = assert_error(missing, 404, "NOT_FOUND")
            assert _without_keys(text, n, f) == _without_keys(
                missing_text, MISSING_KEY, MISSING_FILE
            )

    # Listings of the intruder show none of it.
    reply = await client.get("/numbers/1/numbers", headers=other_tenant.basic)
    assert reply.json() == {"numbers": [], "numberCount": 0}
    reply = await client.get("/numbers/1/files", headers=other_tenant.basic)
    assert reply.json() == {"files": []}
    reply = await client.get("/numbers/1/numbers/available", headers=other_tenant.basic)
    assert n not in {x["numberKey"] for x in reply.json()["numbers"]}

    # And everything is still the tenant's, unchanged.
    assert await owner_of(database, n) == tenant.account_id
    assert await count(database, Action) == 1
    assert await count(database, AudioFile) == 1
    assert (settings.files_dir / f"{f}.mp3").exists()
    reply = await client.get(f"/numbers/1/numbers/{n}/actions", headers=tenant.basic)
    assert reply.json() == {"actions": [mine.action]}
    reply = await client.get(f"/numbers/1/files/{f}", headers=tenant.basic)
    assert reply.status_code == 200


async def test_a_tenant_cannot_delete_its_action_through_another_accounts_number(
    client: httpx.AsyncClient,
    database: Database,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    [mine, theirs] = await stock(database, REFERENCE_DID, "+41793026732")
    for number_key, owner in ((mine, tenant), (theirs, other_tenant)):
        reply = await client.post(
            "/numbers/1/numbers", json={"numberKey": number_key}, headers=owner.basic
        )
        assert reply.status_code == 200, reply.text
    reply = await client.post(
        f"/numbers/1/numbers/{theirs}/actions", json=REFERENCE_ACTION, headers=other_tenant.basic
    )
    their_action = reply.json()["actionKey"]
    # The tenant owns *a* number, and names the other account's action under it.
    reply = await client.delete(
        f"/numbers/1/numbers/{mine}/actions/{their_action}", headers=tenant.basic
    )
    assert_error(reply, 404, "NOT_FOUND")
    assert await count(database, Action) == 1


async def test_a_number_bought_by_one_account_cannot_be_bought_by_another(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    [number_key] = await stock(database, REFERENCE_DID)
    first = await client.post(
        "/numbers/1/numbers", json={"numberKey": number_key}, headers=tenant.basic
    )
    assert first.status_code == 200, first.text
    second = await client.post(
        "/numbers/1/numbers", json={"numberKey": number_key}, headers=other_tenant.basic
    )
    assert_error(second, 404, "NOT_FOUND")
    assert await owner_of(database, number_key) == tenant.account_id
    # Buying one's own number again is a conflict, not a silent success.
    again = await client.post(
        "/numbers/1/numbers", json={"numberKey": number_key}, headers=tenant.basic
    )
    assert_error(again, 409, "CONFLICT")
    # Once released, anyone may buy it.
    reply = await client.delete(f"/numbers/1/numbers/{number_key}", headers=tenant.basic)
    assert reply.status_code == 200, reply.text
    reply = await client.post(
        "/numbers/1/numbers", json={"numberKey": number_key}, headers=other_tenant.basic
    )
    assert reply.status_code == 200, reply.text
    assert await owner_of(database, number_key) == other_tenant.account_id
