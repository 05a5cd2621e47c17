"""The errors of the session layer, carrying the Twilio error they are on the wire.

Codes are Twilio's (twilio.com/docs/api/errors/<code>) where Twilio has one for the
case; where it has none, the code is the HTTP status, which is also what the twilio
SDK reports for an error body without a code."""

from __future__ import annotations

from dataclasses import dataclass

from callmask.errors import CallmaskError

INVALID_PARAMETER = 20001  # HTTP 400
NOT_FOUND = 20404  # HTTP 404
NO_NUMBER_FOR_COUNTRY = 80203
NO_UNRESERVED_NUMBER = 80207  # the pool has no unreserved number at all
ALL_NUMBERS_IN_USE = 80208  # every usable number is in this participant's other sessions
PAIR_CONFLICT = 80604  # the identifier already holds that proxy number in an open session
DUPLICATE_PARTICIPANT = 80623  # HTTP 409


@dataclass(frozen=True, slots=True)
class Exhaustion:
    """Who found the pool empty: recorded after the failed request rolled back."""

    account_id: str
    service_sid: str
    identifier: str


class ProxyError(CallmaskError):
    def __init__(
        self, code: int, status: int, message: str, *, exhaustion: Exhaustion | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.exhaustion = exhaustion


def invalid(message: str) -> ProxyError:
    return ProxyError(INVALID_PARAMETER, 400, message)


def not_found(what: str, sid: str) -> ProxyError:
    return ProxyError(NOT_FOUND, 404, f"The requested resource {what} {sid} was not found")


def conflict(message: str) -> ProxyError:
    return ProxyError(409, 409, message)
