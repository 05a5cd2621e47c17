"""Number masking actions: what a DID does on an inbound call (Infobip reference,
"Number masking action setup", "Get number masking action", "Delete ...").

One action per number. A second POST for a number that has one is refused with 409
and changes nothing: silently replacing the routing of a live DID is the kind of
surprise an operator finds out about from missed calls. Delete, then create.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from callmask.api.deps import CurrentAccount, ServicesDep, SessionDep
from callmask.api.infobip.schemas import (
    ActionIn,
    ActionListOut,
    ActionOut,
    ActionType,
    KeyPath,
)
from callmask.errors import InvalidInput
from callmask.netguard import check_url
from callmask.store.repositories import Actions

router = APIRouter(prefix="/numbers/1/numbers/{number_key}", tags=["number masking"])

ACTION_TYPES = ", ".join(t.value for t in ActionType)


async def _create(
    number_key: KeyPath,
    body: ActionIn,
    session: SessionDep,
    account: CurrentAccount,
    services: ServicesDep,
) -> ActionOut:
    if not body.type:
        raise InvalidInput(f"type is required (one of {ACTION_TYPES})")
    if body.type not in ActionType.__members__:
        raise InvalidInput(f"unknown type {body.type!r} (one of {ACTION_TYPES})")
    allow_private = services.settings.webhook_allow_private
    if not body.callbackUrl:
        raise InvalidInput("callbackUrl is required")
    callback_url = check_url(body.callbackUrl, allow_private=allow_private, field="callbackUrl")
    status_url = (
        check_url(body.statusUrl, allow_private=allow_private, field="statusUrl")
        if body.statusUrl
        else None
    )
    action = await Actions(session).create(
        account.id, number_key, type_=body.type, callback_url=callback_url, status_url=status_url
    )
    return ActionOut.of(action)


# The reference's request example posts to ".../action" while its endpoint reads
# ".../actions"; clients in the wild use both.
router.add_api_route("/actions", _create, methods=["POST"], summary="Set up a masking action")
router.add_api_route(
    "/action",
    _create,
    methods=["POST"],
    include_in_schema=False,
    operation_id="create_action_alias",
)


@router.get("/actions")
async def list_actions(
    number_key: KeyPath, session: SessionDep, account: CurrentAccount
) -> ActionListOut:
    actions = await Actions(session).for_number(account.id, number_key)
    return ActionListOut(actions=[ActionOut.of(a) for a in actions])


@router.delete("/actions/{action_key}", status_code=204, response_class=Response)
async def delete_action(
    number_key: KeyPath, action_key: KeyPath, session: SessionDep, account: CurrentAccount
) -> Response:
    await Actions(session).delete(account.id, number_key, action_key)
    return Response(status_code=204)
