"""Audio files customers upload for the ``audio`` command: validation and storage.

The Infobip document accepts MP3 only, up to 4 MB. A file is accepted only if its MPEG
audio frames decode (mutagen walks the frame chain; a WAV, random bytes or a text file
with an .mp3 name fail), never because of a name or a Content-Type. Files are written
atomically under ``CALLMASK_DATA_DIR/files/<fileId>.mp3`` so that rtpengine, which
reads them by path for ``play media``, never sees half a file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from mutagen import MutagenError
from mutagen.mp3 import MP3

from callmask.errors import InvalidInput, PayloadTooLarge
from callmask.netguard import check_url
from callmask.outbound import OutboundFailure, outbound_failures, read_at_most


@dataclass(frozen=True, slots=True)
class Mp3Info:
    duration_ms: int
    bitrate_bps: int
    sample_rate_hz: int
    sha256: str


def inspect_mp3(data: bytes) -> Mp3Info:
    """Decode the MPEG frame headers of ``data``; raise ``InvalidInput`` unless it is MP3."""
    if not data:
        raise InvalidInput("audio file is empty")
    try:
        info = MP3(io.BytesIO(data)).info  # type: ignore[no-untyped-call]
    except (MutagenError, ValueError, EOFError) as exc:
        raise InvalidInput(f"audio file is not a valid MP3: {exc}") from exc
    if info is None or info.length <= 0 or info.sample_rate <= 0:
        raise InvalidInput("audio file is not a valid MP3: no audio frames")
    # mutagen settles for two chained frame headers when it finds no VBR header and
    # marks that guess "sketchy"; about 1 in 100 blobs of 200 kB random bytes passes
    # that test. A real encoder's output has a VBR header or a long chain of frames.
    if info.sketchy:
        raise InvalidInput("audio file is not a valid MP3: no run of MPEG audio frames")
    return Mp3Info(
        duration_ms=round(info.length * 1000),
        bitrate_bps=int(info.bitrate),
        sample_rate_hz=int(info.sample_rate),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def decode_base64_content(content: str, *, max_bytes: int) -> bytes:
    # 4 base64 characters carry 3 bytes: refuse before decoding a body that cannot fit.
    if len(content) > (max_bytes + 2) // 3 * 4 + 4:
        raise PayloadTooLarge(f"audio file is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"content is not valid base64: {exc}") from exc
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"audio file is larger than {max_bytes} bytes")
    return data


async def fetch_audio(
    client: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
) -> bytes:
    """Download ``url`` with a size cap and an overall timeout; errors become 400s.
    ``client`` comes from ``outbound.client_session`` with the same ``allow_private``:
    its resolver refuses names of non-public addresses, ``check_url`` the rest."""
    check_url(url, allow_private=allow_private)
    too_large = f"audio file is larger than {max_bytes} bytes"
    try:
        # The timeout is the whole download: a server dripping a byte a second must not
        # hold the upload request open for hours.
        with outbound_failures(timeout_s):
            async with client.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False
            ) as reply:
                if reply.status != 200:
                    raise InvalidInput(f"audio url answered HTTP {reply.status}")
                declared = reply.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise PayloadTooLarge(too_large)
                data = await read_at_most(reply, max_bytes + 1)
    except OutboundFailure as exc:
        if exc.blocked is not None:
            raise exc.blocked from exc
        raise InvalidInput(f"could not fetch audio url: {exc}") from exc
    if len(data) > max_bytes:
        raise PayloadTooLarge(too_large)
    return data


class AudioStore:
    """The files directory. Only this class builds paths, from ids it generated."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, file_id: str) -> Path:
        return self.directory / f"{file_id}.mp3"

    def save(self, file_id: str, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(file_id)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final

    def delete(self, file_id: str) -> None:
        self.path(file_id).unlink(missing_ok=True)
