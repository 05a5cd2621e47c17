"""Live call control (reference tata-cpaas-anonymize.txt): click-to-call
``POST /v1/click_to_call``, hangup ``POST /v1/call/hangup``, transfer to an agent
``POST /v1/call/options`` (type 4), and ``GET /v1/live_calls``, which the reference names
(as the source of the records' ``callerid``) but does not describe.

The calls themselves are the call engine's; this module only validates, resolves
agents and caller IDs from the store, and asks ``CallControl``. A node that runs the
API without the call engine answers these routes with 503.

Shapes and choices:

- click-to-call: ``agent_number`` is an agent's intercom, eid or id, else a phone number;
  ``destination_number`` 10-15 digits, ``+91`` or ``0`` prefix allowed; ``caller_id``
  must be one of the account's DIDs (default: the first); ``async`` defaults to 1 (the
  documented reply, "Originate successfully queued", is the queued case). With
  ``async=0`` the reply waits until the agent answers; if the agent does not, the
  reply is 200 ``{"success": false, "message": "Agent did not answer"}``: the request
  was valid and was carried out. ``get_call_id=1`` adds ``call_id``.
- hangup: a call that is not live for this account (unknown, finished, another
  account's) -> 404 ``success: false``; nothing is hung up.
- transfer: ``type`` other than 4 -> 400; unknown agent -> 404; call not live -> 404;
  live but not answered yet, or ended during the transfer -> 409.
- live calls: a JSON list of ``LiveCallOut`` (call_id, direction, services, state,
  did_number, caller_id = the client's number, destination, start_stamp,
  answered_stamp), times UTC.

Store transactions are committed before waiting on the call engine, so a click-to-call
that waits a minute for the agent does not hold a database connection meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, HTTPException

from callmask.api.deps import CallControlDep, CurrentAccount, ServicesDep, SessionDep
from callmask.api.tata.numbers import (
    caller_id_for,
    customer_number,
    phone_number,
    shown,
    stamp,
)
from callmask.api.tata.records import service_name
from callmask.api.tata.schemas import (
    CallOptionsIn,
    CallQueuedOut,
    ClickToCallIn,
    HangupIn,
    LiveCallOut,
    SuccessOut,
    flag_field,
    int_field,
    required_text,
    text_field,
)
from callmask.calls.control import ClickToCall, LiveCall
from callmask.cluster.calls import OwnerUnreachable
from callmask.errors import Conflict, InvalidInput, NotFound
from callmask.store.models import TataAgent
from callmask.store.tata_repositories import AccountWebhooks, Agents

router = APIRouter(prefix="/v1", tags=["tata: calls"])

TRANSFER_TO_AGENT = 4
T = TypeVar("T")
MAX_CALL_TIMEOUT_S = 24 * 3600


def _live_call_out(call: LiveCall) -> LiveCallOut:
    client = call.caller if call.direction == "inbound" else call.callee
    return LiveCallOut(
        call_id=call.call_id,
        direction=call.direction,
        services=service_name(call.service),
        state=call.state,
        did_number=shown(call.did),
        caller_id=shown(client),
        destination=shown(call.callee),
        start_stamp=stamp(call.started_at) or "",
        answered_stamp=stamp(call.answered_at),
    )


async def _cluster(operation: Awaitable[T]) -> T:
    """A live-call operation that may run on another node: its owner being gone is 503."""
    try:
        return await operation
    except OwnerUnreachable as exc:
        raise HTTPException(503, str(exc)) from exc


@router.get("/live_calls")
async def live_calls(account: CurrentAccount, calls: CallControlDep) -> list[LiveCallOut]:
    return [_live_call_out(call) for call in await _cluster(calls.all_live_calls(account.id))]


@router.post("/call/hangup")
async def hangup(body: HangupIn, account: CurrentAccount, calls: CallControlDep) -> SuccessOut:
    call_id = required_text(body.call_id, "call_id", max_length=40)
    if not await _cluster(calls.hangup_anywhere(account.id, call_id)):
        raise NotFound(f"no live call {call_id}")
    return SuccessOut(message="Call hangup successful")


async def _agent_or_number(
    agents: Agents, account_id: str, reference: str, region: str | None
) -> tuple[TataAgent | None, str]:
    """``agent_number`` as the reference allows it: an agent's intercom, eid or id,
    else a number (which may still be an agent's follow-me number)."""
    agent = await agents.by_reference(account_id, reference)
    if agent is not None:
        return agent, agent.follow_me_number
    try:
        number = phone_number(reference, region, "agent_number")
    except InvalidInput as exc:
        raise InvalidInput(
            f"agent_number {reference!r} is neither an agent of this account "
            "(intercom, eid or id) nor a valid phone number"
        ) from exc
    return await agents.by_number(account_id, number), number


@router.post("/click_to_call", response_model_exclude_none=True)
async def click_to_call(
    body: ClickToCallIn,
    session: SessionDep,
    account: CurrentAccount,
    services: ServicesDep,
    calls: CallControlDep,
) -> CallQueuedOut:
    region = services.settings.default_region
    agent_reference = required_text(body.agent_number, "agent_number", max_length=20)
    destination = customer_number(
        required_text(body.destination_number, "destination_number", max_length=20),
        region,
        "destination_number",
    )
    run_async = flag_field(body.async_, "async", default=True)
    get_call_id = flag_field(body.get_call_id, "get_call_id", default=False)
    call_timeout_s = int_field(
        body.call_timeout, "call_timeout", minimum=1, maximum=MAX_CALL_TIMEOUT_S
    )
    custom_identifier = text_field(body.custom_identifier, "custom_identifier")
    # ClickToCall carries the agent's number only; the engine can find the agent by it.
    agent, agent_number = await _agent_or_number(
        Agents(session), account.id, agent_reference, region
    )
    caller_id = await caller_id_for(
        session, account.id, text_field(body.caller_id, "caller_id", max_length=20), region
    )
    webhook_url = await AccountWebhooks(session).get(account.id)
    await session.commit()
    call_id = await calls.click_to_call(
        ClickToCall(
            account_id=account.id,
            agent_number=agent_number,
            destination_number=destination,
            caller_id=caller_id,
            call_timeout_s=call_timeout_s,
            custom_identifier=custom_identifier,
            webhook_url=webhook_url,
            agent_id=agent.id if agent is not None else None,
        ),
        wait_for_agent=not run_async,
    )
    if call_id is None:
        return CallQueuedOut(success=False, message="Agent did not answer")
    return CallQueuedOut(
        message="Originate successfully queued", call_id=call_id if get_call_id else None
    )


async def _transfer_target(agents: Agents, account_id: str, body: CallOptionsIn) -> TataAgent:
    agent_id = text_field(body.agent_id, "agent_id", max_length=20)
    intercom = text_field(body.intercom, "intercom", max_length=20)
    if agent_id is None and intercom is None:
        raise InvalidInput("give agent_id or intercom of the agent to transfer to")
    by_id = by_intercom = None
    if agent_id is not None:
        by_id = await agents.by_reference(account_id, agent_id)
        if by_id is None:
            raise NotFound(f"agent {agent_id} not found")
    if intercom is not None:
        by_intercom = await agents.by_intercom(account_id, intercom)
        if by_intercom is None:
            raise NotFound(f"no agent with intercom {intercom}")
    if by_id is not None and by_intercom is not None and by_id.id != by_intercom.id:
        raise InvalidInput("agent_id and intercom name different agents")
    agent = by_id or by_intercom
    assert agent is not None
    return agent


@router.post("/call/options")
async def call_options(
    body: CallOptionsIn,
    session: SessionDep,
    account: CurrentAccount,
    calls: CallControlDep,
) -> SuccessOut:
    operation = int_field(body.type, "type", minimum=0, maximum=1000)
    if operation is None:
        raise InvalidInput("type is required (4: transfer to an agent)")
    if operation != TRANSFER_TO_AGENT:
        raise InvalidInput(f"type {operation} is not supported; only 4 (transfer to an agent)")
    call_id = required_text(body.call_id, "call_id", max_length=40)
    agent = await _transfer_target(Agents(session), account.id, body)
    await session.commit()
    live = await _cluster(calls.find_live_call(account.id, call_id))
    if live is None:
        raise NotFound(f"no live call {call_id}")
    if live.state != "answered":
        raise Conflict(f"call {call_id} is not answered yet; only answered calls can move")
    if not await _cluster(calls.transfer(account.id, call_id, agent.follow_me_number)):
        raise Conflict(f"call {call_id} ended before it could be transferred")
    return SuccessOut(message="Redirect successful")
