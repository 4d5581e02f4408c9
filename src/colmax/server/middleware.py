"""ASGI middleware that runs before any request body is parsed: authentication, body size.

Both are plain ASGI (not FastAPI dependencies) so that they cover every path, the OpenAPI
schema and unknown routes included, and so that an oversized body is refused while it is still
arriving instead of after it has been read into memory and parsed.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["AuthMiddleware", "BodyLimitMiddleware", "is_write"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_write(method: str, path: str) -> bool:
    """Whether a request changes the index (any unsafe method under ``/documents``).

    Examples:
        >>> is_write("POST", "/documents"), is_write("POST", "/search")
        (True, False)
    """
    return method.upper() not in _SAFE_METHODS and (
        path == "/documents" or path.startswith("/documents/")
    )


async def send_json(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    """A complete ``{"detail": ...}`` JSON response."""
    body = json.dumps({"detail": detail}).encode("utf-8")
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Bearer-key check on every request; writes refused when no key is configured.

    Args:
        app: the wrapped ASGI app.
        api_key: the key, or ``None`` for no authentication.
        allow_unauthenticated_writes: without a key, let writes through anyway.
    """

    def __init__(
        self, app: ASGIApp, api_key: str | None, allow_unauthenticated_writes: bool
    ) -> None:
        self.app = app
        self._key = api_key.encode("utf-8") if api_key is not None else None
        self._open_writes = allow_unauthenticated_writes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._key is not None:
            if not _authorized(scope, self._key):
                await send_json(
                    send,
                    401,
                    "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                    {"WWW-Authenticate": 'Bearer realm="colmax"'},
                )
                return
        elif not self._open_writes and is_write(scope["method"], scope["path"]):
            await send_json(
                send,
                403,
                "writes are disabled: this server runs without an API key; restart it with "
                "--api-key (or COLMAX_API_KEY), or with --allow-unauthenticated-writes",
            )
            return
        await self.app(scope, receive, send)


def _authorized(scope: Scope, key: bytes) -> bool:
    values = [v for k, v in scope["headers"] if k == b"authorization"]
    if len(values) != 1:
        return False
    scheme, _, token = values[0].strip().partition(b" ")
    # compare_digest takes the same time wherever the first difference is, so response times
    # do not reveal how much of a guessed key was right.
    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, declared or streamed.

    The body is read here (at most ``max_bytes``) and replayed to the app, so a client that
    sends no ``Content-Length`` (chunked encoding) is limited too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope["headers"] if k == b"content-length"]
        if declared:
            try:
                size = int(declared[0])
            except ValueError:
                await send_json(send, 400, "the Content-Length header is not a number")
                return
            if size > self.max_bytes:
                await self._too_large(send)
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nothing to answer
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later calls wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await send_json(
            send,
            413,
            f"request body larger than {self.max_bytes} bytes; send fewer or shorter documents "
            "per request (the server's --max-body-bytes)",
        )
