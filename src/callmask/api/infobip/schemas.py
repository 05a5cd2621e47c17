"""Request and response bodies of the Infobip dialect, field names as Infobip spells them.

Inputs are deliberately loose types (``str | None``) so that a missing or wrong value
reaches our own validation and gets a sentence that names the field, rather than a
generic schema error.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from callmask.phone import digits
from callmask.store.models import Action, AudioFile, Number
from callmask.webhooks.repository import as_utc

# numberKey and actionKey are 32 hex characters, fileId a UUID. Whatever could not be
# one is refused before any query: PostgreSQL answers a NUL character with an error of
# its own (a 500), and a key of megabytes is no key.
KEY_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
KeyPath = Annotated[str, Path(pattern=KEY_PATTERN)]


class ActionType(StrEnum):
    VOICE_NUMBER_MASKING = "VOICE_NUMBER_MASKING"
    ANONYMIZE = "ANONYMIZE"


class PurchaseNumberIn(BaseModel):
    numberKey: str | None = Field(default=None, pattern=KEY_PATTERN)


class NumberOut(BaseModel):
    numberKey: str
    number: str
    country: str
    type: str = "VIRTUAL_LONG_NUMBER"
    capabilities: list[str] = ["VOICE"]
    shortCode: bool = False

    @classmethod
    def of(cls, number: Number) -> NumberOut:
        return cls(numberKey=number.number_key, number=digits(number.e164), country=number.country)


class NumberListOut(BaseModel):
    numbers: list[NumberOut]
    numberCount: int


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str | None = None
    callbackUrl: str | None = None
    statusUrl: str | None = None


class ActionOut(BaseModel):
    actionKey: str
    type: str
    callbackUrl: str
    statusUrl: str | None

    @classmethod
    def of(cls, action: Action) -> ActionOut:
        return cls(
            actionKey=action.action_key,
            type=action.type,
            callbackUrl=action.callback_url,
            statusUrl=action.status_url,
        )


class ActionListOut(BaseModel):
    actions: list[ActionOut]


class FileIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str | None = None
    content: str | None = None


class FileIdOut(BaseModel):
    fileId: str


class FileOut(BaseModel):
    fileId: str
    size: int
    duration: int  # milliseconds
    createdAt: dt.datetime

    @classmethod
    def of(cls, audio: AudioFile) -> FileOut:
        return cls(
            fileId=audio.file_id,
            size=audio.size_bytes,
            duration=audio.duration_ms,
            # SQLite hands times back without their zone; RFC 3339 needs one.
            createdAt=as_utc(audio.created_at),
        )


class FileListOut(BaseModel):
    files: list[FileOut]
