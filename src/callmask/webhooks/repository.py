"""Queries on the webhook outbox for people: the delivery log an account (or the
operator) reads and re-sends from, and the account's signing secrets.

Like ``store/repositories.py``: methods take the owning ``account_id`` so tenant
isolation is part of the query (another account's event is "not found"), and never
commit; the caller's ``Database.session()`` owns the transaction. The operator's CLI
passes ``account_id=None`` explicitly to see every account.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from callmask.errors import Conflict, NotFound
from callmask.store.models import WebhookAttempt, WebhookEvent, WebhookSecret, utcnow
from callmask.webhooks.outbox import EventStatus
from callmask.webhooks.signature import new_secret

# Every active secret signs every request; a handful covers any rotation and keeps
# the webhook-signature header short.
MAX_ACTIVE_SECRETS = 5


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands times back without a zone (they are stored as UTC) and binds them
    without converting; make every time aware and UTC at this boundary."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


class Deliveries:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def search(
        self,
        *,
        account_id: str | None,
        status: EventStatus | None = None,
        event_type: str | None = None,
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[Sequence[WebhookEvent], int]:
        """Events newest first, with the total count of the filtered set."""
        conditions: list[ColumnElement[bool]] = []
        if account_id is not None:
            conditions.append(WebhookEvent.account_id == account_id)
        if status is not None:
            conditions.append(WebhookEvent.status == status.value)
        if event_type is not None:
            conditions.append(WebhookEvent.event_type == event_type)
        if created_from is not None:
            conditions.append(WebhookEvent.created_at >= as_utc(created_from))
        if created_to is not None:
            conditions.append(WebhookEvent.created_at < as_utc(created_to))
        total = await self.session.scalar(
            select(func.count()).select_from(WebhookEvent).where(*conditions)
        )
        query = (
            select(WebhookEvent)
            .where(*conditions)
            .order_by(WebhookEvent.created_at.desc(), WebhookEvent.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return (await self.session.scalars(query)).all(), int(total or 0)

    async def get(self, event_id: str, *, account_id: str | None) -> WebhookEvent:
        query = select(WebhookEvent).where(WebhookEvent.id == event_id)
        if account_id is not None:
            query = query.where(WebhookEvent.account_id == account_id)
        event = await self.session.scalar(query)
        if event is None:
            raise NotFound(f"delivery {event_id} not found")
        return event

    async def attempts(self, event_id: str) -> Sequence[WebhookAttempt]:
        query = (
            select(WebhookAttempt)
            .where(WebhookAttempt.event_id == event_id)
            .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
        )
        return (await self.session.scalars(query)).all()

    async def retry(
        self, event_id: str, *, account_id: str | None, now: dt.datetime | None = None
    ) -> WebhookEvent:
        """Queue the event again for an attempt now, whatever its status. A lease held
        by a worker sending it right now is left alone, so that send is not doubled."""
        statement = (
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id)
            .values(
                status=EventStatus.PENDING.value,
                next_attempt_at=now or utcnow(),
                delivered_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        if account_id is not None:
            statement = statement.where(WebhookEvent.account_id == account_id)
        result = await self.session.execute(statement)
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"delivery {event_id} not found")
        event = await self.get(event_id, account_id=account_id)
        await self.session.refresh(event)
        return event

    async def pending_stats(self) -> tuple[int, dt.datetime | None]:
        """Number of pending events and the creation time of the oldest one."""
        row = (
            await self.session.execute(
                select(func.count(), func.min(WebhookEvent.created_at)).where(
                    WebhookEvent.status == EventStatus.PENDING.value
                )
            )
        ).one()
        return int(row[0]), row[1]


class Secrets:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ensure(self, account_id: str) -> None:
        """Give the account a signing secret if it has no active one."""
        if not await self._active_rows(account_id):
            await self.add(account_id)

    async def add(self, account_id: str) -> WebhookSecret:
        if len(await self._active_rows(account_id)) >= MAX_ACTIVE_SECRETS:
            raise Conflict(
                f"an account can have at most {MAX_ACTIVE_SECRETS} active webhook secrets; "
                "revoke one first"
            )
        row = WebhookSecret(
            id=uuid.uuid4().hex, account_id=account_id, secret=new_secret(), created_at=utcnow()
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def of_account(self, account_id: str) -> Sequence[WebhookSecret]:
        query = (
            select(WebhookSecret)
            .where(WebhookSecret.account_id == account_id)
            .order_by(WebhookSecret.created_at, WebhookSecret.id)
        )
        return (await self.session.scalars(query)).all()

    async def active(self, account_ids: Sequence[str]) -> dict[str, list[str]]:
        """Active secrets of several accounts, oldest first, by account."""
        query = (
            select(WebhookSecret.account_id, WebhookSecret.secret)
            .where(
                WebhookSecret.account_id.in_(set(account_ids)),
                WebhookSecret.revoked_at.is_(None),
            )
            .order_by(WebhookSecret.created_at, WebhookSecret.id)
        )
        by_account: dict[str, list[str]] = {}
        for account_id, secret in await self.session.execute(query):
            by_account.setdefault(account_id, []).append(secret)
        return by_account

    async def revoke(self, account_id: str, secret_id: str) -> WebhookSecret:
        """Revoke one secret; the last active one stays (409), or nothing would sign."""
        # Lock the account's active secrets (PostgreSQL) so two concurrent revocations
        # cannot each see the other's secret still active and leave none.
        active = await self._active_rows(account_id, lock=True)
        if not any(row.id == secret_id for row in active):
            raise NotFound(f"webhook secret {secret_id} not found or already revoked")
        if len(active) == 1:
            raise Conflict("cannot revoke the last active webhook secret; add a new one first")
        # The count is checked again inside the UPDATE: one statement is atomic on
        # SQLite too, where the SELECT above does not hold a lock.
        still_active = (
            select(func.count())
            .select_from(WebhookSecret)
            .where(WebhookSecret.account_id == account_id, WebhookSecret.revoked_at.is_(None))
            .scalar_subquery()
        )
        result = await self.session.execute(
            update(WebhookSecret)
            .where(
                WebhookSecret.id == secret_id,
                WebhookSecret.account_id == account_id,
                WebhookSecret.revoked_at.is_(None),
                still_active > 1,
            )
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise Conflict("cannot revoke the last active webhook secret; add a new one first")
        row = next(row for row in active if row.id == secret_id)
        await self.session.refresh(row)
        return row

    async def _active_rows(self, account_id: str, *, lock: bool = False) -> list[WebhookSecret]:
        query = select(WebhookSecret).where(
            WebhookSecret.account_id == account_id, WebhookSecret.revoked_at.is_(None)
        )
        if lock:
            query = query.with_for_update()
        return list((await self.session.scalars(query)).all())
