"""Audio file upload: only real MP3s up to 4 MB are stored; everything else gets a
precise 4xx and leaves neither a row nor a file behind."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from callmask.config import Settings
from callmask.media.audio import fetch_audio
from callmask.netguard import BlockedAddress
from callmask.node import node_app
from callmask.outbound import client_session
from callmask.store.database import Database
from callmask.store.models import AudioFile
from tests.api.infobip import assert_error, count
from tests.conftest import Tenant, make_settings
from tests.support.audio import AudioSamples
from tests.support.dns import StaticResolver
from tests.support.receiver import Receiver, Reply, free_port

pytestmark = pytest.mark.interop  # real MP3s and WAVs from espeak-ng + lame

MAX_BYTES = 4 * 1024 * 1024  # the reference: "Max size of the file is 4MB"

# Seeds of 200 kB random blobs in which mutagen finds two chained MPEG frame headers
# and, before the frame-run check, took for an MP3.
FRAME_LOOKALIKE_SEEDS = [272, 891, 931, 1297, 1517, 1554, 2713]


def _stored_files(settings: Settings) -> list[Path]:
    directory = settings.files_dir
    return sorted(directory.iterdir()) if directory.exists() else []


async def assert_nothing_stored(database: Database, settings: Settings) -> None:
    assert await count(database, AudioFile) == 0
    assert _stored_files(settings) == []


async def _upload(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]
) -> httpx.Response:
    return await client.post("/numbers/1/files", json=body, headers=tenant.basic)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_a_customer_uploads_an_mp3_and_reads_its_metadata_back(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    tenant: Tenant,
    audio: AudioSamples,
) -> None:
    mp3 = audio.speech_mp3()
    reply = await _upload(client, tenant, {"content": _b64(mp3)})
    assert reply.status_code == 200, reply.text
    file_id = reply.json()["fileId"]
    assert _stored_files(settings) == [settings.files_dir / f"{file_id}.mp3"]

    reply = await client.get(f"/numbers/1/files/{file_id}", headers=tenant.basic)
    assert reply.status_code == 200, reply.text
    meta = reply.json()
    assert meta["fileId"] == file_id
    assert meta["size"] == len(mp3)
    # espeak-ng speaks the default sentence in about 4 s; lame keeps the length.
    assert 2000 < meta["duration"] < 8000, meta

    reply = await client.get("/numbers/1/files", headers=tenant.basic)
    assert [f["fileId"] for f in reply.json()["files"]] == [file_id]

    reply = await client.delete(f"/numbers/1/files/{file_id}", headers=tenant.basic)
    assert reply.status_code == 204
    assert reply.content == b""
    await assert_nothing_stored(database, settings)
    assert_error(
        await client.get(f"/numbers/1/files/{file_id}", headers=tenant.basic), 404, "NOT_FOUND"
    )


async def test_a_file_of_exactly_4_mb_is_accepted(
    client: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    audio: AudioSamples,
    receiver: Receiver,
) -> None:
    mp3 = audio.mp3_of_size(MAX_BYTES)
    receiver.always("/4mb.mp3", Reply(200, mp3, {"content-type": "audio/mpeg"}))
    for body in ({"content": _b64(mp3)}, {"url": receiver.url("/4mb.mp3")}):
        reply = await _upload(client, tenant, body)
        assert reply.status_code == 200, reply.text
        stored = settings.files_dir / f"{reply.json()['fileId']}.mp3"
        assert stored.read_bytes() == mp3


async def test_a_file_of_4_mb_and_one_byte_is_too_large(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    tenant: Tenant,
    audio: AudioSamples,
    receiver: Receiver,
) -> None:
    mp3 = audio.mp3_of_size(MAX_BYTES + 1)
    reply = await _upload(client, tenant, {"content": _b64(mp3)})
    assert_error(reply, 413, "PAYLOAD_TOO_LARGE", mentions=str(MAX_BYTES))
    # The same file by URL: refused from its Content-Length ...
    receiver.always("/big.mp3", Reply(200, mp3, {"content-type": "audio/mpeg"}))
    reply = await _upload(client, tenant, {"url": receiver.url("/big.mp3")})
    assert_error(reply, 413, "PAYLOAD_TOO_LARGE", mentions=str(MAX_BYTES))
    await assert_nothing_stored(database, settings)


def _not_mp3s(audio: AudioSamples) -> dict[str, bytes]:
    return {
        "a WAV": audio.speech_wav(),
        "a text file": b"ID3 this is not audio, just a note\n" * 200,
        "a JSON document": b'{"fileId": "382a92df"}',
        "one byte": b"\xff",
        "an MP3 frame header and nothing else": audio.speech_mp3()[:4],
        **{
            f"random bytes (seed {seed})": random.Random(seed).randbytes(200_000)
            for seed in FRAME_LOOKALIKE_SEEDS
        },
    }


async def test_a_file_that_is_not_an_mp3_is_refused_whatever_it_is_called(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    tenant: Tenant,
    audio: AudioSamples,
    receiver: Receiver,
    subtests: pytest.Subtests,
) -> None:
    for name, data in _not_mp3s(audio).items():
        with subtests.test(msg=name):
            reply = await _upload(client, tenant, {"content": _b64(data)})
            assert_error(reply, 400, "BAD_REQUEST", mentions="mp3")
            # By URL, with every label saying it is an MP3.
            path = f"/{len(receiver.requests)}/announcement.mp3"
            receiver.always(path, Reply(200, data, {"content-type": "audio/mpeg"}))
            reply = await _upload(client, tenant, {"url": receiver.url(path)})
            assert_error(reply, 400, "BAD_REQUEST", mentions="mp3")
    await assert_nothing_stored(database, settings)


async def test_an_empty_file_is_refused(
    client: httpx.AsyncClient, database: Database, settings: Settings, tenant: Tenant
) -> None:
    assert_error(
        await _upload(client, tenant, {"content": ""}), 400, "BAD_REQUEST", mentions="empty"
    )
    await assert_nothing_stored(database, settings)


@pytest.mark.parametrize(
    "content",
    [
        "SUQzBAAAAAAAF1RTU0U................oBlRZUxIALUaldwrWAAIoVfL",  # the reference's elision
        "not base64 at all!",
        "QUJDRA",  # missing padding
        "QUJD\nRA==",
    ],
)
async def test_content_that_is_not_base64_is_refused(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    tenant: Tenant,
    content: str,
) -> None:
    reply = await _upload(client, tenant, {"content": content})
    assert_error(reply, 400, "BAD_REQUEST", mentions="base64")
    await assert_nothing_stored(database, settings)


@pytest.mark.parametrize(
    "body",
    [{}, {"url": None, "content": None}, {"url": "http://client.server/a.mp3", "content": "QUJD"}],
)
async def test_exactly_one_of_url_or_content_is_required(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    tenant: Tenant,
    body: dict[str, Any],
) -> None:
    assert_error(await _upload(client, tenant, body), 400, "BAD_REQUEST", mentions="url or content")
    await assert_nothing_stored(database, settings)


async def test_an_audio_url_nobody_answers_on_is_refused(
    client: httpx.AsyncClient, database: Database, settings: Settings, tenant: Tenant
) -> None:
    closed_port = free_port()  # bound and released: nothing listens there now
    reply = await _upload(client, tenant, {"url": f"http://127.0.0.1:{closed_port}/winxp.mp3"})
    assert_error(reply, 400, "BAD_REQUEST", mentions="could not fetch")
    await assert_nothing_stored(database, settings)


async def test_an_audio_url_that_does_not_answer_200_is_refused(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    tenant: Tenant,
    audio: AudioSamples,
    receiver: Receiver,
    subtests: pytest.Subtests,
) -> None:
    receiver.always("/real.mp3", Reply(200, audio.speech_mp3()))
    for status in (404, 500, 302, 204):
        with subtests.test(msg=f"HTTP {status}"):
            # A redirect is not followed: it could lead anywhere, the network included.
            headers = {"location": receiver.url("/real.mp3")} if status == 302 else {}
            receiver.always(f"/{status}.mp3", Reply(status, b"", headers))
            reply = await _upload(client, tenant, {"url": receiver.url(f"/{status}.mp3")})
            assert_error(reply, 400, "BAD_REQUEST", mentions=f"HTTP {status}")
    assert receiver.on("/real.mp3") == []
    await assert_nothing_stored(database, settings)


async def test_an_audio_url_into_the_operators_network_is_refused(
    tmp_path: Path,
    db_url: str,
    database: Database,
    tenant: Tenant,
    receiver: Receiver,
    subtests: pytest.Subtests,
) -> None:
    settings = make_settings(tmp_path, db_url, webhook_allow_private=False)
    application = node_app(settings, database=database)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://callmask.test"
        ) as client,
    ):
        for url in (
            "ftp://client.server/winxp.mp3",
            "file:///etc/passwd",
            "winxp.mp3",
            receiver.url("/winxp.mp3"),  # a real server on 127.0.0.1
            "http://127.0.0.1/winxp.mp3",
            "http://10.1.1.1/winxp.mp3",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/winxp.mp3",
            "http://localhost/winxp.mp3",
        ):
            with subtests.test(msg=url):
                reply = await _upload(client, tenant, {"url": url})
                assert_error(reply, 400, "BAD_REQUEST", mentions="url")
    assert receiver.requests == []  # refused before any request was made
    await assert_nothing_stored(database, settings)


async def test_an_audio_url_whose_name_resolves_into_the_operators_network_is_refused(
    receiver: Receiver,
) -> None:
    # The URL passes check_url (a name); the session's resolver finds 127.0.0.1.
    receiver.always("/winxp.mp3", Reply(200, b"ID3"))
    dns = StaticResolver({"audio.test": ["127.0.0.1"]})
    async with client_session(allow_private=False, max_connections=2, upstream=dns) as http:
        with pytest.raises(BlockedAddress, match=r"audio\.test resolves to a non-public address"):
            await fetch_audio(
                http,
                f"http://audio.test:{receiver.port}/winxp.mp3",
                max_bytes=MAX_BYTES,
                timeout_s=2,
                allow_private=False,
            )
    assert receiver.requests == []


async def test_a_slow_audio_server_is_given_up_on(
    tmp_path: Path,
    db_url: str,
    database: Database,
    tenant: Tenant,
    audio: AudioSamples,
    receiver: Receiver,
) -> None:
    settings = make_settings(tmp_path, db_url, audio_fetch_timeout=0.2)
    receiver.always("/slow.mp3", Reply(200, audio.speech_mp3(), delay_s=1.0))
    application = node_app(settings, database=database)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://callmask.test"
        ) as client,
    ):
        reply = await _upload(client, tenant, {"url": receiver.url("/slow.mp3")})
    assert_error(reply, 400, "BAD_REQUEST", mentions="could not fetch")
    await assert_nothing_stored(database, settings)


@contextlib.asynccontextmanager
async def dripping_server(interval_s: float) -> AsyncIterator[str]:
    """An audio server on 127.0.0.1 that answers 200 at once and then sends the body a
    byte per ``interval_s``: every single read is quick, the download never ends."""
    stop = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\n")
            writer.write(b"Content-Length: 100000\r\n\r\n")
            for _ in range(1000):  # bounded: the server gives up after 1000 bytes
                if stop.is_set():
                    break
                writer.write(b"\xff")
                await writer.drain()
                await asyncio.sleep(interval_s)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/drip.mp3"
    finally:
        stop.set()
        server.close()
        await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), timeout=5)
        await server.wait_closed()


async def test_an_audio_server_that_drips_the_file_is_given_up_on_in_time(
    tmp_path: Path, db_url: str, database: Database, tenant: Tenant
) -> None:
    settings = make_settings(tmp_path, db_url, audio_fetch_timeout=0.5)
    application = node_app(settings, database=database)
    async with (
        dripping_server(interval_s=0.05) as url,
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://callmask.test"
        ) as client,
    ):
        started = time.monotonic()
        # The bound of the test itself: a fetch limited per read only would take 50 s.
        async with asyncio.timeout(10):
            reply = await _upload(client, tenant, {"url": url})
        elapsed_s = time.monotonic() - started
    assert_error(reply, 400, "BAD_REQUEST", mentions="timed out after 0.5 s")
    assert elapsed_s < 3, elapsed_s
    await assert_nothing_stored(database, settings)


async def test_file_ids_are_random_uuids(
    client: httpx.AsyncClient, tenant: Tenant, audio: AudioSamples
) -> None:
    content = _b64(audio.speech_mp3())
    ids = [(await _upload(client, tenant, {"content": content})).json()["fileId"] for _ in range(3)]
    assert len(set(ids)) == 3
    assert all(uuid.UUID(i).version == 4 for i in ids)
