"""Domain errors shared by the store, the services and the API.

The API turns each into the error body of the dialect the client speaks (Infobip's
``requestError`` or Tata's ``{"success": false}``) in one place, ``api/errors.py``;
nothing below the API knows about HTTP.
"""

from __future__ import annotations


class CallmaskError(Exception):
    """Base of the errors a client caused and can be told about."""


class InvalidInput(CallmaskError):
    """The request is well-formed JSON but a value is not acceptable (400)."""


class NotFound(CallmaskError):
    """No such object for this account; other accounts' objects are "not found" too (404)."""


class Conflict(CallmaskError):
    """The request clashes with the current state (409)."""


class Unauthorized(CallmaskError):
    """Missing or wrong credentials (401)."""


class PayloadTooLarge(CallmaskError):
    """A body or an uploaded file is over its limit (413)."""
