"""What callmask does not carry: Proxy messaging. MessageInteractions (sending an SMS
to a participant) and the short codes of older SDKs are answered, once the caller is
authenticated, with 501 Not Implemented in Twilio's error shape: a Twilio Proxy client
learns at once that callmask is voice-only instead of meeting a 404 it could mistake
for a missing session.
"""

from __future__ import annotations

from fastapi import APIRouter

from callmask.api.twilio.auth import TwilioAccount
from callmask.api.twilio.errors import TwilioProblem, TwilioRoute

router = APIRouter(prefix="/twilio/v1/Services", route_class=TwilioRoute, include_in_schema=False)

NOT_IMPLEMENTED = 501
MESSAGE_INTERACTIONS = "/{service_sid}/Sessions/{session_sid}/Participants/{participant_sid}"


def _voice_only(what: str) -> TwilioProblem:
    return TwilioProblem(
        NOT_IMPLEMENTED,
        NOT_IMPLEMENTED,
        f"{what} are not implemented: callmask carries calls only (voice), not messages",
    )


async def message_interactions(account: TwilioAccount) -> None:
    raise _voice_only("MessageInteractions")


async def short_codes(account: TwilioAccount) -> None:
    raise _voice_only("ShortCodes")


for path, methods in (
    (f"{MESSAGE_INTERACTIONS}/MessageInteractions", ["GET", "POST"]),
    (f"{MESSAGE_INTERACTIONS}/MessageInteractions/{{sid}}", ["GET"]),
):
    router.add_api_route(path, message_interactions, methods=methods)
for path, methods in (
    ("/{service_sid}/ShortCodes", ["GET", "POST"]),
    ("/{service_sid}/ShortCodes/{sid}", ["GET", "POST", "DELETE"]),
):
    router.add_api_route(path, short_codes, methods=methods)
