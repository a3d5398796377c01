"""
The little of ASGI the adapter needs: a request that reads its body under a size limit,
JSON replies, errors as OpenAI-shaped JSON, and a router with 404 / 405.

Raw ASGI on purpose: the adapter sits on every request's path, so it carries no framework
(no starlette, no fastapi) and costs one dict lookup to route. Nothing here logs request
bodies or headers.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeVar

__all__ = [
    "TIMEOUT_ERRORS",
    "BearerKey",
    "ClientDisconnected",
    "HTTPError",
    "Handler",
    "Receive",
    "Request",
    "Router",
    "Scope",
    "Send",
    "error_payload",
    "send_json",
    "unauthorized",
    "within",
]

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


class HTTPError(Exception):
    """An answer the adapter gives itself: status plus a message safe to show the client."""

    def __init__(
        self, status: int, message: str, kind: str, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = list(headers)

    async def answer(self, send: Send) -> None:
        """Send this error as the whole response."""
        await send_json(
            send, self.status, error_payload(self.status, self.message, self.kind), self.headers
        )


class ClientDisconnected(Exception):
    """The client went away before its request body arrived; nothing is left to answer."""


def error_payload(status: int, message: str, kind: str) -> dict[str, Any]:
    """Shape an error like OpenAI's, so SDK clients show the message."""
    return {"error": {"message": message, "type": kind, "code": status}}


async def send_json(
    send: Send, status: int, payload: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send a complete JSON response."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Request:
    """One HTTP request: routing facts from the scope and a size-limited body reader."""

    __slots__ = ("method", "path", "query", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.scope["headers"]

    def header(self, name: bytes) -> bytes | None:
        """First value of a header, by lower-case name."""
        for key, value in self.scope["headers"]:
            if key == name:
                return value
        return None

    async def body(self, limit: int, timeout: float | None = None) -> bytes:
        """
        Read the whole body, refusing with 413 as soon as it is known to exceed `limit`.

        A declared Content-Length over the limit is refused before reading a byte; a chunked
        body is refused as soon as the bytes read pass the limit. A body not complete within
        `timeout` seconds (one deadline for the whole body, so a client dripping bytes is cut
        off too) is answered 408 and the connection closed.
        """
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        if timeout is None:
            return await self._read_body(limit)
        try:
            return await within(timeout, self._read_body(limit))
        except TIMEOUT_ERRORS:
            raise HTTPError(
                408,
                f"request body not received within {timeout:g} s",
                "request_timeout",
                [(b"connection", b"close")],
            ) from None

    async def _read_body(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> HTTPError:
    # Close the connection: the rest of the body is never read, so the stream is unusable.
    return HTTPError(
        413,
        f"request body over the limit of {limit} bytes",
        "request_too_large",
        [(b"connection", b"close")],
    )


if sys.version_info >= (3, 11):

    async def within(seconds: float, awaitable: Awaitable[T]) -> T:
        """Await with a deadline; TimeoutError when it passes."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def within(seconds: float, awaitable: Awaitable[T]) -> T:
        """Await with a deadline; asyncio.TimeoutError when it passes."""
        return await asyncio.wait_for(awaitable, seconds)


TIMEOUT_ERRORS = (TimeoutError, asyncio.TimeoutError)  # distinct types on Python 3.10


class BearerKey:
    """
    The API key check: `Authorization: Bearer <key>`, compared in constant time.

    Why constant time: a byte-by-byte compare that stops early would let a caller find the
    key one byte at a time from response timings.
    """

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def __repr__(self) -> str:
        return "BearerKey(***)"

    def allows(self, request: Request) -> bool:
        value = request.header(b"authorization")
        if value is None or len(value) < 7 or value[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(value[7:].strip(), self._key)


def unauthorized() -> HTTPError:
    """401 with the challenge RFC 9110 §11.6.1 requires."""
    return HTTPError(
        401,
        "missing or wrong API key: send the header `Authorization: Bearer <key>`",
        "unauthorized",
        [(b"www-authenticate", b'Bearer realm="mdeploy"')],
    )


Handler = Callable[[Request, Send], Awaitable[None]]


class Router:
    """Exact-path routing: path → {method: handler}; unknown path 404, wrong method 405."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}

    def add(self, path: str, methods: Iterable[str], handler: Handler) -> None:
        """Register a handler; a later registration of the same path and method wins."""
        table = self._routes.setdefault(path, {})
        for method in methods:
            table[method] = handler

    def paths(self) -> list[str]:
        return sorted(self._routes)

    def resolve(self, method: str, path: str) -> Handler:
        """Find the handler, or raise the 404 / 405 HTTPError the client should get."""
        table = self._routes.get(path)
        if table is None and len(path) > 1 and path.endswith("/"):
            table = self._routes.get(path.rstrip("/"))
        if table is None:
            raise HTTPError(404, f"no route {path}", "not_found")
        handler = table.get(method)
        if handler is None:
            allowed = ", ".join(sorted(table))
            raise HTTPError(
                405,
                f"{method} not allowed on {path}; use {allowed}",
                "method_not_allowed",
                [(b"allow", allowed.encode())],
            )
        return handler
