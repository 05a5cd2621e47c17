"""Real audio for tests: speech WAVs from espeak-ng, MP3s encoded from them by lame.

Uploading audio is only tested honestly with files a real encoder made, so nothing here
fakes MPEG frames. Every file is made once per test session and kept under the
directory the session fixture hands in (``AudioSamples(tmp_path_factory.mktemp(...))``);
the file name is a digest of what was asked for, so asking twice costs nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

DEFAULT_SPEECH = "Thank you for calling. This call is connected through a masked number."

# A bounded run time for each external encoder call: espeak-ng and lame finish a
# sentence in tens of milliseconds, so ten seconds only ever trips on a hang.
TOOL_TIMEOUT_S = 10.0


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(
            f"{tool} is not installed (Debian package: see scripts/install-system.sh)"
        )
    return path


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class AudioSamples:
    """Makes and caches test audio under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def speech_wav_path(self, text: str = DEFAULT_SPEECH) -> Path:
        path = self.directory / f"speech-{_digest(text)}.wav"
        if not path.exists():
            partial = path.with_suffix(".partial.wav")
            subprocess.run(
                [_require("espeak-ng"), "-w", str(partial), text],
                check=True,
                capture_output=True,
                timeout=TOOL_TIMEOUT_S,
            )
            partial.replace(path)
        return path

    def speech_mp3_path(self, text: str = DEFAULT_SPEECH) -> Path:
        """An MP3 of ``text`` spoken: ``espeak-ng -w x.wav ... && lame --quiet x.wav x.mp3``."""
        path = self.directory / f"speech-{_digest(text)}.mp3"
        if not path.exists():
            partial = path.with_suffix(".partial.mp3")
            subprocess.run(
                [_require("lame"), "--quiet", str(self.speech_wav_path(text)), str(partial)],
                check=True,
                capture_output=True,
                timeout=TOOL_TIMEOUT_S,
            )
            partial.replace(path)
        return path

    def speech_wav(self, text: str = DEFAULT_SPEECH) -> bytes:
        return self.speech_wav_path(text).read_bytes()

    def speech_mp3(self, text: str = DEFAULT_SPEECH) -> bytes:
        return self.speech_mp3_path(text).read_bytes()

    def mp3_of_size(self, size_bytes: int) -> bytes:
        """A valid MP3 of exactly ``size_bytes``: lame's frames repeated back to back, the
        last one cut short (players and decoders drop a truncated final frame)."""
        path = self.directory / f"sized-{size_bytes}.mp3"
        if not path.exists():
            frames = self.speech_mp3()
            copies = size_bytes // len(frames) + 1
            partial = path.with_suffix(".partial.mp3")
            partial.write_bytes((frames * copies)[:size_bytes])
            partial.replace(path)
        return path.read_bytes()
