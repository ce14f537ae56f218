"""A request body limit, enforced before the body is read (ASGI middleware).

A ``Content-Length`` over the limit is answered 413 at once; a chunked body is counted
as it arrives and cut off at the limit, so no request can make the service buffer more.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, send, declared.decode("latin-1"))
            return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer now, and tell the app the client is gone: it stops reading,
                    # and whatever it answers to that is dropped below.
                    refused = True
                    if not started:
                        await self._refuse(scope, send, f"more than {self.max_bytes}")
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, tracked)

    async def _refuse(self, scope: Scope, send: Send, size: str) -> None:
        message = f"request body of {size} bytes; the limit is {self.max_bytes} (max_body_bytes)"
        if str(scope.get("path", "")).startswith("/v1/"):
            error = {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": "request_too_large",
            }
            body = json.dumps({"error": error}).encode()
        else:
            body = json.dumps({"detail": message, "message": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
