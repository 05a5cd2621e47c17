"""The node's recording worker: turns the pcap rtpengine wrote for each recorded call
into the mixed file the API serves, and announces the outcome.

It works on the ``recordings`` rows of its own node (rtpengine's spool is a local
directory) that the call ledger wrote ``in-progress``, oldest first, one at a time and
off the call path: the mixing runs in a thread. A row it cannot finish becomes
``failed`` with the reason; a restarted node picks up the rows its previous run left,
since they are still ``in-progress``. The spool's files of a call are removed once its
row is settled, so the spool holds only calls in progress or not yet mixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Table, insert, select, update

from callmask.recordings import calls
from callmask.recordings.mix import (
    MixedAudio,
    RecordingUnreadable,
    mix_pcap,
    write_mp3,
    write_wav,
)
from callmask.sessions.lifetime import as_utc
from callmask.store.database import Database
from callmask.store.models import Recording, WebhookEvent, utcnow
from callmask.webhooks.outbox import new_event

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
BATCH = 20
SAMPLES_PER_MS = 8  # G.711's 8 kHz, the mix's rate
EVENT_TYPE = "plivo.recording"
_EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Finished:
    status: str
    reason: str | None = None
    path: Path | None = None
    duration_ms: int | None = None
    size_bytes: int | None = None


def spool_files(spool: Path, media_call_id: str) -> tuple[list[Path], list[Path]]:
    """The pcaps and metadata files rtpengine wrote for the call (``<call-id>-<random>``)."""
    name = glob.escape(media_call_id)
    pcaps = sorted((spool / "pcaps").glob(f"{name}-*.pcap"))
    metadata = sorted((spool / "metadata").glob(f"rtpengine-meta-{name}-*"))
    return pcaps, metadata


def recording_path(recordings_dir: Path, account_id: str, recording_id: str, fmt: str) -> Path:
    return recordings_dir / account_id / f"{recording_id}.{fmt}"


def spanning(audio: MixedAudio, row: Recording) -> MixedAudio:
    """The mix, with silence after the last packet up to the call's end: the recording
    covers the call from the answer on, also the time nobody sent audio."""
    started, ended = as_utc(row.started_at), as_utc(row.ended_at)
    assert started is not None and ended is not None
    span_ms = round((ended - started).total_seconds() * 1000)
    if audio.duration_ms >= span_ms:
        return audio
    missing = (span_ms - audio.duration_ms) * SAMPLES_PER_MS
    return dataclasses.replace(audio, pcm=audio.pcm + bytes(2 * missing), duration_ms=span_ms)


class RecordingWorker:
    def __init__(
        self,
        database: Database,
        *,
        node_id: str,
        spool: Path,
        recordings_dir: Path,
        payload_of: Callable[[Recording], dict[str, Any]],
        on_events: Callable[[], None] | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.database = database
        self.node_id = node_id
        self.spool = spool
        self.recordings_dir = recordings_dir
        self.payload_of = payload_of
        self.on_events = on_events
        self.poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.round():
                    pass
            except Exception:
                log.exception("recording worker round failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval_s):
                    await self._wake.wait()

    async def round(self) -> int:
        """Finish the waiting recordings of this node; returns how many."""
        async with self.database.session() as session:
            rows = (
                await session.scalars(
                    select(Recording)
                    .where(
                        Recording.node_id == self.node_id,
                        Recording.status == calls.IN_PROGRESS,
                    )
                    .order_by(Recording.created_at)
                    .limit(BATCH)
                )
            ).all()
            session.expunge_all()
        for row in rows:
            await self.finish(row)
        return len(rows)

    async def finish(self, row: Recording) -> None:
        pcaps, metadata = spool_files(self.spool, row.media_call_id)
        outcome = await self._outcome(row, pcaps)
        if outcome.status == calls.FAILED:
            log.warning("recording %s of call %s failed: %s", row.id, row.call_id, outcome.reason)
        else:
            log.info(
                "recording %s of call %s: %d ms, %d bytes",
                row.id,
                row.call_id,
                outcome.duration_ms or 0,
                outcome.size_bytes or 0,
            )
        row.status = outcome.status
        row.failure_reason = outcome.reason
        row.duration_ms = outcome.duration_ms
        row.size_bytes = outcome.size_bytes
        row.completed_at = utcnow()
        async with self.database.write_turn(), self.database.session() as session:
            await session.execute(
                update(Recording)
                .where(Recording.id == row.id, Recording.status == calls.IN_PROGRESS)
                .values(
                    status=row.status,
                    failure_reason=row.failure_reason,
                    duration_ms=row.duration_ms,
                    size_bytes=row.size_bytes,
                    completed_at=row.completed_at,
                )
            )
            if row.callback_url:
                event = new_event(
                    account_id=row.account_id,
                    event_type=EVENT_TYPE,
                    url=row.callback_url,
                    payload=self.payload_of(row),
                    ordering_key=row.call_id,
                )
                await session.execute(insert(_EVENTS).values(**event))
            await session.commit()
        if row.callback_url and self.on_events is not None:
            self.on_events()
        # Settled: what rtpengine wrote is no longer needed (kept if the row was not
        # written, so that the next round tries again).
        for path in (*pcaps, *metadata):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def _outcome(self, row: Recording, pcaps: list[Path]) -> Finished:
        if row.failure_reason:
            return Finished(calls.FAILED, row.failure_reason)
        if not pcaps:
            return Finished(
                calls.FAILED,
                f"rtpengine wrote no recording file for the call under {self.spool / 'pcaps'}",
            )
        if len(pcaps) > 1:
            # One per call and recording start: a call re-offered to a restarted
            # rtpengine starts a second one. Only the first is mixed; say so.
            log.warning("recording %s: %d pcaps, mixing the first", row.id, len(pcaps))
        target = recording_path(self.recordings_dir, row.account_id, row.id, row.file_format)
        try:
            audio = spanning(await asyncio.to_thread(mix_pcap, pcaps[0]), row)
            target.parent.mkdir(parents=True, exist_ok=True)
            if row.file_format == "wav":
                await asyncio.to_thread(write_wav, audio, target)
            else:
                await write_mp3(audio, target)
        except RecordingUnreadable as exc:
            return Finished(calls.FAILED, str(exc))
        except OSError as exc:
            return Finished(calls.FAILED, f"recording could not be written: {exc}")
        return Finished(
            calls.COMPLETED,
            path=target,
            duration_ms=audio.duration_ms,
            size_bytes=target.stat().st_size,
        )
