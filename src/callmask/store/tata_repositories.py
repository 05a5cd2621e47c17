"""Repositories of the Tata CPaaS dialect (reference: tata-cpaas-anonymize.txt): the
account's webhook URL, agents, broadcast lead lists, leads and broadcast keys, and the
call-record query behind ``GET /v1/call/records``.

Like ``callmask.store.repositories``: every method takes the owning ``account_id`` so
another account's rows are "not found", and nothing here commits; the caller's
``Database.session()`` owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import ColumnElement, Select, case, delete, func, or_, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from callmask.errors import Conflict, NotFound
from callmask.store.models import (
    AccountSettings,
    CallRecord,
    CallRecordDailyCount,
    Number,
    TataAgent,
    TataBroadcastKey,
    TataLead,
    TataLeadList,
    utcnow,
)
from callmask.store.repositories import hash_api_key

# Agent ids are random 12-digit integers and extension ids random 15-digit strings:
# numeric like the reference's, below 2**53 so JavaScript clients read them exactly.
AGENT_ID_DIGITS = 12
EID_DIGITS = 15


def _random_digits(count: int) -> int:
    lowest = int(10 ** (count - 1))
    return lowest + secrets.randbelow(9 * lowest)


class AccountWebhooks:
    """The account-level webhook URL of the Tata dialect (call details go there)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, account_id: str) -> str | None:
        row = await self.session.get(AccountSettings, account_id)
        return None if row is None else row.webhook_url

    async def set(self, account_id: str, url: str | None) -> None:
        row = await self.session.get(AccountSettings, account_id)
        if row is None:
            self.session.add(AccountSettings(account_id=account_id, webhook_url=url))
        else:
            row.webhook_url = url
            row.updated_at = utcnow()
        await self.session.flush()


async def account_dids(session: AsyncSession, account_id: str) -> Sequence[Number]:
    """The account's DIDs, oldest purchase first: the first is the default caller ID."""
    query = (
        select(Number)
        .where(Number.account_id == account_id)
        .order_by(Number.purchased_at, Number.e164)
    )
    return (await session.scalars(query)).all()


class Agents:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self, account_id: str, *, name: str, follow_me_number: str, intercom: str | None
    ) -> TataAgent:
        if intercom is not None and await self._one(account_id, TataAgent.intercom == intercom):
            raise Conflict(f"intercom {intercom} is already used by another agent")
        if await self._one(account_id, TataAgent.follow_me_number == follow_me_number):
            raise Conflict(f"follow_me_number {follow_me_number} is already another agent's")
        agent = TataAgent(
            id=_random_digits(AGENT_ID_DIGITS),
            account_id=account_id,
            name=name,
            follow_me_number=follow_me_number,
            eid=str(_random_digits(EID_DIGITS)),
            intercom=intercom,
            custom_status=0,
        )
        self.session.add(agent)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            # A concurrent request took the intercom or number between check and insert.
            raise Conflict("intercom or follow_me_number was just taken by another agent") from exc
        return agent

    async def list(self, account_id: str) -> Sequence[TataAgent]:
        query = select(TataAgent).where(TataAgent.account_id == account_id)
        return (await self.session.scalars(query.order_by(TataAgent.created_at))).all()

    async def _one(self, account_id: str, condition: ColumnElement[bool]) -> TataAgent | None:
        query = select(TataAgent).where(TataAgent.account_id == account_id, condition)
        return await self.session.scalar(query)

    async def by_reference(self, account_id: str, reference: str) -> TataAgent | None:
        """An agent named by its id, its eid or its intercom (what the reference lets a
        client put in ``agent_id``, ``intercom`` or ``agent_number``)."""
        if not reference.isdigit():
            return None
        conditions: list[ColumnElement[bool]] = [
            TataAgent.eid == reference,
            TataAgent.intercom == reference,
        ]
        if len(reference) <= 18:  # fits a BIGINT
            conditions.append(TataAgent.id == int(reference))
        return await self._one(account_id, or_(*conditions))

    async def by_intercom(self, account_id: str, intercom: str) -> TataAgent | None:
        return await self._one(account_id, TataAgent.intercom == intercom)

    async def by_number(self, account_id: str, e164: str) -> TataAgent | None:
        return await self._one(account_id, TataAgent.follow_me_number == e164)

    async def by_ids(self, account_id: str, ids: set[int]) -> dict[int, TataAgent]:
        if not ids:
            return {}
        query = select(TataAgent).where(TataAgent.account_id == account_id, TataAgent.id.in_(ids))
        return {agent.id: agent for agent in await self.session.scalars(query)}

    async def call_counts(self, account_id: str) -> dict[int, tuple[int, int]]:
        """Answered and missed calls per agent, from the call records."""
        query = (
            select(
                CallRecord.agent_id,
                func.sum(case((CallRecord.status == "answered", 1), else_=0)),
                func.sum(case((CallRecord.status == "answered", 0), else_=1)),
            )
            .where(CallRecord.account_id == account_id, CallRecord.agent_id.is_not(None))
            .group_by(CallRecord.agent_id)
        )
        rows = await self.session.execute(query)
        return {
            int(agent_id): (int(done or 0), int(missed or 0))
            for agent_id, done, missed in rows
            if agent_id is not None
        }


class LeadLists:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, account_id: str, name: str) -> TataLeadList:
        lead_list = TataLeadList(id=uuid.uuid4().hex, account_id=account_id, name=name)
        self.session.add(lead_list)
        await self.session.flush()
        return lead_list

    async def get(self, account_id: str, lead_list_id: str) -> TataLeadList:
        lead_list = await self.session.scalar(
            select(TataLeadList).where(
                TataLeadList.id == lead_list_id, TataLeadList.account_id == account_id
            )
        )
        if lead_list is None:
            raise NotFound(f"lead list {lead_list_id} not found")
        return lead_list

    async def list(self, account_id: str) -> Sequence[tuple[TataLeadList, int]]:
        """The account's lead lists with their lead counts."""
        counts = (
            select(TataLead.lead_list_id, func.count().label("leads"))
            .group_by(TataLead.lead_list_id)
            .subquery()
        )
        query = (
            select(TataLeadList, func.coalesce(counts.c.leads, 0))
            .outerjoin(counts, counts.c.lead_list_id == TataLeadList.id)
            .where(TataLeadList.account_id == account_id)
            .order_by(TataLeadList.created_at)
        )
        return [(row[0], int(row[1])) for row in await self.session.execute(query)]

    async def delete(self, account_id: str, lead_list_id: str) -> None:
        """Delete a list with its leads and the broadcast keys bound to it."""
        lead_list = await self.get(account_id, lead_list_id)
        # Explicit deletes rather than relying on ON DELETE CASCADE, which SQLite
        # honours only on connections that switched foreign keys on.
        await self.session.execute(
            delete(TataBroadcastKey).where(TataBroadcastKey.lead_list_id == lead_list.id)
        )
        await self.session.execute(delete(TataLead).where(TataLead.lead_list_id == lead_list.id))
        await self.session.delete(lead_list)
        await self.session.flush()


class LeadOutcome(enum.Enum):
    ADDED = "added"
    OVERWRITTEN = "overwritten"
    KEPT = "kept"


class Leads:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, lead_list_id: str, number: str) -> TataLead | None:
        return await self.session.scalar(
            select(TataLead).where(TataLead.lead_list_id == lead_list_id, TataLead.number == number)
        )

    async def put(
        self, lead_list_id: str, number: str, otp: str, *, overwrite: bool
    ) -> LeadOutcome:
        """Store the lead for ``number``, or update (``overwrite``) or keep an existing one."""
        existing = await self.find(lead_list_id, number)
        if existing is None:
            try:
                # A savepoint, so that losing a race on the unique (list, number) key
                # leaves the transaction usable for the update below.
                async with self.session.begin_nested():
                    self.session.add(TataLead(lead_list_id=lead_list_id, number=number, otp=otp))
                return LeadOutcome.ADDED
            except IntegrityError:
                existing = await self.find(lead_list_id, number)
                if existing is None:
                    raise
        if not overwrite:
            return LeadOutcome.KEPT
        existing.otp = otp
        existing.updated_at = utcnow()
        await self.session.flush()
        return LeadOutcome.OVERWRITTEN


class BroadcastKeys:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self, account_id: str, *, lead_list_id: str, template: str, caller_id: str
    ) -> tuple[TataBroadcastKey, str]:
        """A new key; returns the row and the clear key, which is shown once."""
        lead_list = await LeadLists(self.session).get(account_id, lead_list_id)
        # 128 bits as 32 hex characters: the shape of the reference's api_key.
        clear = secrets.token_hex(16)
        key = TataBroadcastKey(
            id=uuid.uuid4().hex,
            account_id=account_id,
            lead_list_id=lead_list.id,
            key_sha256=hash_api_key(clear),
            template=template,
            caller_id=caller_id,
        )
        self.session.add(key)
        await self.session.flush()
        return key, clear

    async def by_key(self, account_id: str, clear: str) -> TataBroadcastKey | None:
        return await self.session.scalar(
            select(TataBroadcastKey).where(
                TataBroadcastKey.key_sha256 == hash_api_key(clear),
                TataBroadcastKey.account_id == account_id,
            )
        )

    async def list(self, account_id: str) -> Sequence[TataBroadcastKey]:
        query = select(TataBroadcastKey).where(TataBroadcastKey.account_id == account_id)
        return (await self.session.scalars(query.order_by(TataBroadcastKey.created_at))).all()

    async def delete(self, account_id: str, key_id: str) -> None:
        result = await self.session.execute(
            delete(TataBroadcastKey).where(
                TataBroadcastKey.id == key_id, TataBroadcastKey.account_id == account_id
            )
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"broadcast key {key_id} not found")


class DurationOperator(enum.Enum):
    """The comparison of the records' ``duration`` filter; the reference allows the
    last five, and a duration without an operator means equality."""

    EQ = "="
    GT = ">"
    LT = "<"
    GE = ">="
    LE = "<="
    NE = "!="


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """The filters of ``GET /v1/call/records``, already validated and normalised.
    Empty tuples mean "no filter"; ``client_numbers`` and ``destinations`` hold every
    spelling of one number the CDR may carry (E.164, digits, national)."""

    from_at: dt.datetime | None = None
    to_at: dt.datetime | None = None
    to_exclusive: bool = False
    call_id: str | None = None
    agent_ids: tuple[int, ...] = ()
    departments: tuple[str, ...] = ()
    ivrs: tuple[str, ...] = ()
    answered: bool | None = None
    client_numbers: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    direction: str | None = None
    duration_s: int | None = None
    duration_operator: DurationOperator = DurationOperator.EQ
    services: tuple[str, ...] = ()


def _duration_condition(operator: DurationOperator, value: int) -> ColumnElement[bool]:
    column = CallRecord.call_duration_s
    match operator:
        case DurationOperator.EQ:
            return column == value
        case DurationOperator.GT:
            return column > value
        case DurationOperator.LT:
            return column < value
        case DurationOperator.GE:
            return column >= value
        case DurationOperator.LE:
            return column <= value
        case DurationOperator.NE:
            return column != value


def record_conditions(account_id: str, where: RecordFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [CallRecord.account_id == account_id]
    if where.from_at is not None:
        conditions.append(CallRecord.invited_at >= where.from_at)
    if where.to_at is not None:
        conditions.append(
            CallRecord.invited_at < where.to_at
            if where.to_exclusive
            else CallRecord.invited_at <= where.to_at
        )
    if where.call_id is not None:
        conditions.append(CallRecord.call_id == where.call_id)
    if where.agent_ids:
        conditions.append(CallRecord.agent_id.in_(where.agent_ids))
    if where.departments:
        conditions.append(CallRecord.department.in_(where.departments))
    if where.ivrs:
        conditions.append(CallRecord.ivr.in_(where.ivrs))
    if where.answered is True:
        conditions.append(CallRecord.status == "answered")
    elif where.answered is False:
        conditions.append(CallRecord.status != "answered")
    if where.destinations:
        conditions.append(CallRecord.callee.in_(where.destinations))
    if where.direction is not None:
        conditions.append(CallRecord.direction == where.direction)
    if where.duration_s is not None:
        conditions.append(_duration_condition(where.duration_operator, where.duration_s))
    if where.services:
        conditions.append(CallRecord.service.in_(where.services))
    return conditions


def record_branches(account_id: str, where: RecordFilter) -> list[list[ColumnElement[bool]]]:
    """The filter as disjoint sets of conditions (each ANDed) whose union is what it
    matches: one set, or two for ``client_numbers``.

    The client is the caller of an inbound call and the called party of an outbound one
    (click-to-call, OTP), and each branch has its own index (caller, callee). Written as
    one OR, the branches need the planner to know that ``account_id`` alone matches many
    rows; SQLite, which never gathers statistics by itself, did not, and scanned all of
    the account's rows instead (2 s per query over 1,000,000 CDRs). Queried as a UNION
    ALL of the branches, every planner finds each branch's index.
    """
    common = record_conditions(account_id, where)
    if not where.client_numbers:
        return [common]
    return [
        [*common, CallRecord.direction == "inbound", CallRecord.caller.in_(where.client_numbers)],
        [
            *common,
            CallRecord.direction == "outbound",
            CallRecord.callee.in_(where.client_numbers),
        ],
    ]


def newest_first(query: Select[CallRecord]) -> Select[CallRecord]:
    return query.order_by(CallRecord.invited_at.desc(), CallRecord.id.desc())


def page_query(
    account_id: str, where: RecordFilter, *, limit: int, offset: int
) -> Select[CallRecord]:
    """The records of one page, newest first.

    With two branches (see ``record_branches``) each branch gives only its own newest
    ``offset + limit`` rows, read along its index, and the page is cut from those. A
    customer with thousands of calls then costs one short index walk per branch; going
    through all of the customer's ids first (``id IN (... UNION ALL ...)``) cost 17 ms
    on PostgreSQL for the busiest one of 1,000,000 CDRs, and as much again to count."""
    branches = record_branches(account_id, where)
    if len(branches) == 1:
        return newest_first(select(CallRecord).where(*branches[0])).limit(limit).offset(offset)
    newest = union_all(
        *(
            newest_first(select(CallRecord).where(*conditions))
            .limit(offset + limit)
            .subquery()
            .select()
            for conditions in branches
        )
    ).subquery()
    record = aliased(CallRecord, newest)
    query = select(record).order_by(record.invited_at.desc(), record.id.desc())
    return query.limit(limit).offset(offset)


def count_query(account_id: str, where: RecordFilter) -> Select[int]:
    """How many records match: the branches are disjoint (inbound, outbound), so their
    rows are counted as one UNION ALL."""
    branches = record_branches(account_id, where)
    if len(branches) == 1:
        return select(func.count()).select_from(CallRecord).where(*branches[0])
    matching = union_all(*(select(CallRecord.id).where(*conditions) for conditions in branches))
    return select(func.count()).select_from(matching.subquery())


def _start_of_day(moment: dt.datetime) -> dt.datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _whole_days(
    start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime | None, dt.datetime | None] | None:
    """The whole UTC days inside ``[start, end)`` as ``[first, stop)`` midnights (None:
    unbounded on that side), or None when the range holds no whole day."""
    first = None
    if start is not None:
        first = _start_of_day(start)
        if first < start:
            first += dt.timedelta(days=1)
    stop = None if end is None else _start_of_day(end)
    if first is not None and stop is not None and first >= stop:
        return None
    return first, stop


def countable_by_day(where: RecordFilter) -> bool:
    """Whether the daily counts can answer this filter: they know day, direction,
    service and answered, nothing else."""
    return not (
        where.call_id
        or where.agent_ids
        or where.departments
        or where.ivrs
        or where.client_numbers
        or where.destinations
        or where.duration_s is not None
    )


class CallRecords:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _count_rows(self, account_id: str, where: RecordFilter) -> int:
        return int(await self.session.scalar(count_query(account_id, where)) or 0)

    async def _count_days(
        self, account_id: str, where: RecordFilter, first: dt.date | None, stop: dt.date | None
    ) -> int:
        counts = CallRecordDailyCount
        conditions: list[ColumnElement[bool]] = [counts.account_id == account_id]
        if first is not None:
            conditions.append(counts.day >= first)
        if stop is not None:
            conditions.append(counts.day < stop)
        if where.direction is not None:
            conditions.append(counts.direction == where.direction)
        if where.services:
            conditions.append(counts.service.in_(where.services))
        if where.answered is not None:
            conditions.append(counts.answered.is_(where.answered))
        query = select(func.coalesce(func.sum(counts.calls), 0)).where(*conditions)
        return int(await self.session.scalar(query) or 0)

    async def count(self, account_id: str, where: RecordFilter) -> int:
        """How many of the account's records match. Selective filters (call id, numbers,
        agents...) count rows through their indexes; filters the daily counts know add
        up whole days from there and count rows only in the partial days at the edges."""
        if not countable_by_day(where):
            return await self._count_rows(account_id, where)
        start = where.from_at
        end = where.to_at
        if end is not None and not where.to_exclusive:
            end += dt.timedelta(microseconds=1)  # the same range, half-open
        days = _whole_days(start, end)
        if days is None:
            return await self._count_rows(account_id, where)
        first, stop = days
        total = await self._count_days(
            account_id,
            where,
            None if first is None else first.date(),
            None if stop is None else stop.date(),
        )
        if start is not None and first is not None and start < first:
            edge = replace(where, from_at=start, to_at=first, to_exclusive=True)
            total += await self._count_rows(account_id, edge)
        if end is not None and stop is not None and stop < end:
            edge = replace(where, from_at=stop, to_at=end, to_exclusive=True)
            total += await self._count_rows(account_id, edge)
        return total

    async def page(
        self, account_id: str, where: RecordFilter, *, limit: int, offset: int
    ) -> tuple[Sequence[CallRecord], int]:
        """One page of the account's records, newest first, and how many match."""
        total = await self.count(account_id, where)
        if total <= offset:
            return [], total
        query = page_query(account_id, where, limit=limit, offset=offset)
        return (await self.session.scalars(query)).all(), total
