"""Repositories: the only code that writes SQL for accounts, keys, numbers, actions and
audio files. Each method takes the owning ``account_id`` where the row belongs to an
account, so tenant isolation is part of every query rather than a check callers may
forget. Methods never commit: the caller's ``Database.session()`` owns the transaction.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.errors import Conflict, NotFound
from callmask.store.models import Account, Action, ApiKey, AudioFile, Number, PoolNumber, utcnow


def new_key() -> str:
    """Numbers, actions: 32 upper-case hex characters, the shape Infobip keys have."""
    return uuid.uuid4().hex.upper()


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class Accounts:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, name: str) -> tuple[Account, str]:
        """Create an account with one API key; return the account and the clear key,
        which is shown once and never stored. ``callmask.accounts.create_account`` adds
        the webhook signing secret every account needs: use that."""
        account = Account(id=secrets.token_hex(8), name=name)
        self.session.add(account)
        await self.session.flush()
        return account, await self.add_key(account.id)

    async def add_key(self, account_id: str) -> str:
        api_key = secrets.token_urlsafe(32)
        self.session.add(ApiKey(account_id=account_id, key_sha256=hash_api_key(api_key)))
        await self.session.flush()
        return api_key

    async def get(self, account_id: str) -> Account:
        account = await self.session.get(Account, account_id)
        if account is None:
            raise NotFound(f"account {account_id} not found")
        return account

    async def list(self) -> Sequence[Account]:
        return (await self.session.scalars(select(Account).order_by(Account.created_at))).all()

    async def by_api_key(self, api_key: str) -> Account | None:
        query = (
            select(Account)
            .join(ApiKey, ApiKey.account_id == Account.id)
            .where(ApiKey.key_sha256 == hash_api_key(api_key))
        )
        return (await self.session.scalars(query)).first()


class Numbers:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_to_inventory(self, e164: str, country: str, account_id: str | None) -> Number:
        if await self.session.scalar(select(Number).where(Number.e164 == e164)) is not None:
            raise Conflict(f"number {e164} is already in the inventory")
        number = Number(number_key=new_key(), e164=e164, country=country, account_id=account_id)
        if account_id is not None:
            number.purchased_at = utcnow()
        self.session.add(number)
        await self.session.flush()
        return number

    async def inventory(self) -> Sequence[Number]:
        return (await self.session.scalars(select(Number).order_by(Number.e164))).all()

    async def available(
        self, *, contains: str | None, country: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Number], int]:
        query = select(Number).where(Number.account_id.is_(None))
        if contains:
            query = query.where(Number.e164.contains(contains, autoescape=True))
        if country:
            query = query.where(Number.country == country.upper())
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await self.session.scalars(query.order_by(Number.e164).limit(limit).offset(offset))
        return rows.all(), int(total or 0)

    async def owned(
        self, account_id: str, *, limit: int, offset: int
    ) -> tuple[Sequence[Number], int]:
        query = select(Number).where(Number.account_id == account_id)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await self.session.scalars(query.order_by(Number.e164).limit(limit).offset(offset))
        return rows.all(), int(total or 0)

    async def get_owned(self, account_id: str, number_key: str) -> Number:
        number = await self.session.scalar(
            select(Number).where(Number.number_key == number_key, Number.account_id == account_id)
        )
        if number is None:
            raise NotFound(f"number {number_key} not found")
        return number

    async def purchase(self, account_id: str, number_key: str) -> Number:
        number = await self.session.scalar(
            select(Number).where(Number.number_key == number_key).with_for_update()
        )
        if number is None or (number.account_id is not None and number.account_id != account_id):
            raise NotFound(f"number {number_key} is not available")
        if number.account_id == account_id:
            raise Conflict(f"number {number_key} is already yours")
        # Compare-and-set: the UPDATE takes the number only if it is still free when the
        # write happens. The row lock above is enough on PostgreSQL, but SQLite has no
        # row locks and runs the SELECT before its write transaction starts, so two
        # buyers both saw the number free and the second UPDATE overwrote the first.
        result = await self.session.execute(
            update(Number)
            .where(Number.number_key == number_key, Number.account_id.is_(None))
            .values(account_id=account_id, purchased_at=utcnow())
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound(f"number {number_key} is not available")
        await self.session.refresh(number)
        return number

    async def release(self, account_id: str, number_key: str) -> Number:
        number = await self.get_owned(account_id, number_key)
        await self.session.execute(delete(Action).where(Action.number_key == number_key))
        number.account_id = None
        number.purchased_at = None
        await self.session.flush()
        return number

    async def by_e164(self, e164: str) -> Number | None:
        return await self.session.scalar(select(Number).where(Number.e164 == e164))


class Actions:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        account_id: str,
        number_key: str,
        *,
        type_: str,
        callback_url: str,
        status_url: str | None,
    ) -> Action:
        await Numbers(self.session).get_owned(account_id, number_key)
        pooled = await self.session.scalar(
            select(PoolNumber.service_sid).where(PoolNumber.number_key == number_key)
        )
        if pooled is not None:
            raise Conflict(
                f"number {number_key} is in the session pool of service {pooled}; a number "
                "is either in a pool or has an action, never both: remove it from the pool first"
            )
        existing = await self.session.scalar(select(Action).where(Action.number_key == number_key))
        if existing is not None:
            raise Conflict(
                f"number {number_key} already has action {existing.action_key}; "
                "delete it before creating another"
            )
        action = Action(
            action_key=new_key(),
            number_key=number_key,
            account_id=account_id,
            type=type_,
            callback_url=callback_url,
            status_url=status_url,
        )
        self.session.add(action)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            # A concurrent POST for the same number won the race on the unique key.
            raise Conflict(f"number {number_key} already has an action") from exc
        return action

    async def for_number(self, account_id: str, number_key: str) -> Sequence[Action]:
        await Numbers(self.session).get_owned(account_id, number_key)
        query = select(Action).where(
            Action.number_key == number_key, Action.account_id == account_id
        )
        return (await self.session.scalars(query)).all()

    async def delete(self, account_id: str, number_key: str, action_key: str) -> None:
        result = await self.session.execute(
            delete(Action).where(
                Action.action_key == action_key,
                Action.number_key == number_key,
                Action.account_id == account_id,
            )
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"action {action_key} not found on number {number_key}")

    async def for_did(self, e164: str) -> tuple[Number, Action] | None:
        """The routing lookup of an inbound call: the DID's owner and its action."""
        query = (
            select(Number, Action)
            .join(Action, Action.number_key == Number.number_key)
            .where(Number.e164 == e164, Number.account_id.is_not(None))
        )
        row = (await self.session.execute(query)).first()
        return None if row is None else (row[0], row[1])


class AudioFiles:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, audio: AudioFile) -> AudioFile:
        self.session.add(audio)
        await self.session.flush()
        return audio

    async def get(self, account_id: str, file_id: str) -> AudioFile:
        audio = await self.session.scalar(
            select(AudioFile).where(
                AudioFile.file_id == file_id, AudioFile.account_id == account_id
            )
        )
        if audio is None:
            raise NotFound(f"file {file_id} not found")
        return audio

    async def list(self, account_id: str) -> Sequence[AudioFile]:
        query = select(AudioFile).where(AudioFile.account_id == account_id)
        return (await self.session.scalars(query.order_by(AudioFile.created_at))).all()

    async def remove(self, account_id: str, file_id: str) -> AudioFile:
        audio = await self.get(account_id, file_id)
        await self.session.delete(audio)
        await self.session.flush()
        return audio
