"""Tables of the callmask store (SQLAlchemy 2 declarative, typed).

Every row that a customer can see belongs to one account (``account_id``); the
repositories filter on it so another account's object is simply "not found". Keys that
travel in URLs (numberKey, actionKey, fileId) are random, never sequential, so they
tell nothing about other tenants. Times are stored as timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints so that Alembic migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: DateTime(timezone=True)}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class ApiKey(Base):
    """An account's API key. Only the SHA-256 of the key is kept: keys are 256-bit
    random tokens, so a slow password hash would add latency without adding safety."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class Number(Base):
    """A DID of the operator's trunk. ``account_id`` is NULL while it is available."""

    __tablename__ = "numbers"

    number_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    e164: Mapped[str] = mapped_column(String(20), unique=True)
    country: Mapped[str] = mapped_column(String(2))
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    purchased_at: Mapped[dt.datetime | None]


class Action(Base):
    """What a DID does on an inbound call. One action per number: the unique
    constraint on ``number_key`` makes that hold even under concurrent POSTs."""

    __tablename__ = "actions"

    action_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    number_key: Mapped[str] = mapped_column(
        ForeignKey("numbers.number_key", ondelete="CASCADE"), unique=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    callback_url: Mapped[str] = mapped_column(Text)
    status_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class AudioFile(Base):
    __tablename__ = "audio_files"

    file_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    source_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


Index("ix_actions_account", Action.account_id)
