"""What the call path keeps of a recorded call: the ``recordings`` row, written
``in-progress`` in the CDR's own transaction (``calls.ledger``), which the node's
recording worker then finishes (``recordings.worker``).

A recording whose start or consent announcement failed is written all the same, with
its ``failure_reason``: the worker marks it failed and announces that, so a recording
asked for is never silently absent."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import Table, insert

from callmask.calls.ledger import RowWrite
from callmask.routing.decisions import RecordCall
from callmask.store.models import Recording

IN_PROGRESS = "in-progress"
COMPLETED = "completed"
FAILED = "failed"

_RECORDINGS: Table = Recording.__table__  # type: ignore[assignment]
INSERT_RECORDING = insert(_RECORDINGS)


@dataclass(slots=True)
class RecordingStarted:
    """A call's recording, from the moment both parties answered."""

    record: RecordCall
    started_at: dt.datetime
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    failure: str | None = None  # set when rtpengine or the consent prompt failed


def recording_kept(
    started: RecordingStarted,
    *,
    account_id: str,
    call_id: str,
    media_call_id: str,
    node_id: str,
    ended_at: dt.datetime,
) -> RowWrite:
    return RowWrite(
        INSERT_RECORDING,
        {
            "id": started.id,
            "account_id": account_id,
            "call_id": call_id,
            "session_sid": started.record.session_sid,
            "media_call_id": media_call_id,
            "node_id": node_id,
            "status": IN_PROGRESS,
            "failure_reason": started.failure,
            "file_format": started.record.file_format,
            "callback_url": started.record.callback_url,
            "duration_ms": None,
            "size_bytes": None,
            "started_at": started.started_at,
            "ended_at": max(ended_at, started.started_at),
            "created_at": ended_at,
            "completed_at": None,
        },
    )
