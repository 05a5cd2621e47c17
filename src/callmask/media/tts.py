"""Text to speech for announcements (OTPs): espeak-ng renders WAV files that rtpengine
plays with ``play media``. Files are cached by the SHA-256 of voice and text, so a
repeated OTP costs nothing, and written atomically so rtpengine never reads half a file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path

# espeak-ng renders a sentence in well under a second; this bounds a stuck process.
RENDER_TIMEOUT_S = 10.0
MAX_TEXT_CHARS = 1000


class SpeechFailed(Exception):
    """espeak-ng is missing or could not render the text."""


class TextToSpeech:
    def __init__(self, cache_dir: Path, *, voice: str = "en", binary: str = "espeak-ng") -> None:
        self.cache_dir = cache_dir
        self.voice = voice
        self.binary = binary
        self._rendering: dict[Path, asyncio.Future[None]] = {}

    def path_for(self, text: str) -> Path:
        digest = hashlib.sha256(f"{self.voice}\0{text}".encode()).hexdigest()
        return self.cache_dir / f"{digest}.wav"

    async def render(self, text: str) -> Path:
        if not text.strip() or len(text) > MAX_TEXT_CHARS:
            raise SpeechFailed(f"text must be 1 to {MAX_TEXT_CHARS} characters")
        path = self.path_for(text)
        if path.exists():
            return path.resolve()
        pending = self._rendering.get(path)
        if pending is not None:  # the same text asked twice at once: render it once
            await asyncio.shield(pending)
            return path.resolve()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rendering[path] = future
        try:
            await self._render(text, path)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(SpeechFailed(str(exc)))
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._rendering[path]
        return path.resolve()

    async def _render(self, text: str, path: Path) -> None:
        binary = shutil.which(self.binary)
        if binary is None:
            raise SpeechFailed(f"{self.binary} is not installed")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        process = await asyncio.create_subprocess_exec(
            binary,
            "-v",
            self.voice,
            "-w",
            str(partial),
            "--",
            text,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(RENDER_TIMEOUT_S):
                _, stderr = await process.communicate()
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            partial.unlink(missing_ok=True)
            raise SpeechFailed(f"{self.binary} took longer than {RENDER_TIMEOUT_S:g} s") from exc
        if process.returncode != 0 or not partial.exists():
            partial.unlink(missing_ok=True)
            raise SpeechFailed(f"{self.binary} failed: {stderr.decode(errors='replace').strip()}")
        os.replace(partial, path)
