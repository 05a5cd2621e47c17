"""Agents (reference tata-cpaas-anonymize.txt, "add a new agent" ``POST /v1/agent`` and
"get the agent's details" ``GET /v1/agents``): the people click-to-call rings first and
calls are transferred to (``POST /v1/call/options``).

An agent's intercom (4 digits) and follow-me number are each unique within the account,
so either names one agent; a clash is refused with 409 and nothing is stored.
``calls_answered`` / ``calls_missed`` are counted from the call records that name the
agent.
"""

from __future__ import annotations

import re

from fastapi import APIRouter

from callmask.api.deps import CurrentAccount, ServicesDep, SessionDep
from callmask.api.tata.numbers import phone_number
from callmask.api.tata.schemas import (
    AgentCreatedOut,
    AgentIn,
    AgentOut,
    CallerIdOut,
    required_text,
    text_field,
)
from callmask.errors import InvalidInput
from callmask.phone import digits
from callmask.store.tata_repositories import Agents, account_dids

router = APIRouter(prefix="/v1", tags=["tata: agents"])

INTERCOM = re.compile(r"[0-9]{4}")


def intercom_field(value: object) -> str | None:
    intercom = text_field(value, "intercom", max_length=20)
    if intercom is not None and not INTERCOM.fullmatch(intercom):
        raise InvalidInput(f"intercom must be a 4-digit number (got {intercom!r})")
    return intercom


@router.post("/agent")
async def add_agent(
    body: AgentIn, session: SessionDep, account: CurrentAccount, services: ServicesDep
) -> AgentCreatedOut:
    name = required_text(body.name, "name", max_length=200)
    raw_number = required_text(body.follow_me_number, "follow_me_number", max_length=20)
    follow_me_number = phone_number(
        raw_number, services.settings.default_region, "follow_me_number"
    )
    agent = await Agents(session).create(
        account.id,
        name=name,
        follow_me_number=follow_me_number,
        intercom=intercom_field(body.intercom),
    )
    return AgentCreatedOut(message="Agent added successfully", agent_id=str(agent.id))


@router.get("/agents")
async def list_agents(session: SessionDep, account: CurrentAccount) -> list[AgentOut]:
    repository = Agents(session)
    counts = await repository.call_counts(account.id)
    caller_ids = [
        CallerIdOut(id=did.number_key, number=digits(did.e164))
        for did in await account_dids(session, account.id)
    ]
    return [
        AgentOut(
            id=agent.id,
            name=agent.name,
            follow_me_number=agent.follow_me_number,
            eid=agent.eid,
            intercom=agent.intercom,
            calls_answered=counts.get(agent.id, (0, 0))[0],
            calls_missed=counts.get(agent.id, (0, 0))[1],
            custom_status=agent.custom_status,
            allowed_caller_ids=caller_ids,
        )
        for agent in await repository.list(account.id)
    ]
