"""Request body size cap, enforced while the body streams in.

Checking Content-Length alone would let a chunked upload through; counting the bytes
as they arrive covers both, and answers 413 before the whole body is buffered.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callmask.errors import PayloadTooLarge


class BodyTooLarge(PayloadTooLarge):
    """Raised from ``receive`` mid-body; the API's error handlers answer it as 413."""


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return
        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge(f"request body is larger than {self.max_bytes} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            # FastAPI turns any exception raised while it reads the body into its own
            # "400 There was an error parsing the body" response; once the cap is hit,
            # that answer is dropped and the 413 below goes out instead.
            if exceeded and not response_started:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not response_started:
            await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        text = f"request body is larger than {self.max_bytes} bytes"
        if str(scope.get("path", "")).startswith("/v1/"):
            body: object = {"success": False, "message": text}
        else:
            body = {
                "requestError": {
                    "serviceException": {"messageId": "PAYLOAD_TOO_LARGE", "text": text}
                }
            }
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
