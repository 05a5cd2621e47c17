"""Audio files for the ``audio`` command (Infobip reference, "Audio file upload"),
plus GET and DELETE, which the reference lacks but every user needs."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from callmask.api.deps import CurrentAccount, ServicesDep, SessionDep
from callmask.api.infobip.schemas import FileIdOut, FileIn, FileListOut, FileOut, KeyPath
from callmask.errors import InvalidInput
from callmask.media.audio import decode_base64_content, fetch_audio, inspect_mp3
from callmask.netguard import check_url
from callmask.store.models import AudioFile
from callmask.store.repositories import AudioFiles

router = APIRouter(prefix="/numbers/1/files", tags=["files"])


@router.post("")
async def upload_file(
    body: FileIn, session: SessionDep, account: CurrentAccount, services: ServicesDep
) -> FileIdOut:
    settings = services.settings
    if (body.url is None) == (body.content is None):
        raise InvalidInput("give exactly one of url or content")
    if body.content is not None:
        data = decode_base64_content(body.content, max_bytes=settings.max_audio_bytes)
    else:
        assert body.url is not None
        url = check_url(body.url, allow_private=settings.webhook_allow_private, field="url")
        data = await fetch_audio(
            services.http,
            url,
            max_bytes=settings.max_audio_bytes,
            timeout_s=settings.audio_fetch_timeout,
            allow_private=settings.webhook_allow_private,
        )
    info = inspect_mp3(data)
    file_id = str(uuid.uuid4())
    services.audio_store.save(file_id, data)
    try:
        await AudioFiles(session).add(
            AudioFile(
                file_id=file_id,
                account_id=account.id,
                size_bytes=len(data),
                duration_ms=info.duration_ms,
                sha256=info.sha256,
                source_url=body.url,
            )
        )
        await session.commit()
    except BaseException:
        services.audio_store.delete(file_id)
        raise
    return FileIdOut(fileId=file_id)


@router.get("")
async def list_files(session: SessionDep, account: CurrentAccount) -> FileListOut:
    return FileListOut(files=[FileOut.of(f) for f in await AudioFiles(session).list(account.id)])


@router.get("/{file_id}")
async def get_file(file_id: KeyPath, session: SessionDep, account: CurrentAccount) -> FileOut:
    return FileOut.of(await AudioFiles(session).get(account.id, file_id))


@router.delete("/{file_id}", status_code=204, response_class=Response)
async def delete_file(
    file_id: KeyPath, session: SessionDep, account: CurrentAccount, services: ServicesDep
) -> Response:
    await AudioFiles(session).remove(account.id, file_id)
    # Commit first: if the row cannot be deleted, the file it points to must stay.
    await session.commit()
    services.audio_store.delete(file_id)
    return Response(status_code=204)
