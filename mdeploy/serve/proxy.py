"""
The engine as the adapter sees it: requests through one keep-alive pool, answers copied back.

Bytes go through as they come: the response starts as soon as the engine's head arrives
and each body chunk is sent on as soon as it is read, so a token stream is never held back.
Engine failures become the answers a cloud understands:

- engine unreachable (refused, reset, closed before answering) → 503 JSON
- no byte from the engine within the timeout → 504 JSON
- engine 4xx / 5xx → passed through with the engine's own status and body
- a stream that breaks after it started → an SSE `error` event ends it (non-SSE bodies are
  cut short, so the client sees a truncated body rather than a false success)

Request bodies and Authorization headers are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Coroutine, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mdeploy.serve.asgi import ClientDisconnected, HTTPError, Receive, Send
from mdeploy.serve.protocol import Hangup
from mdeploy.serve.upstream import EngineTimeout, Pool, Response, UpstreamError

__all__ = ["HOP_BY_HOP", "Answer", "EngineClient", "until_disconnect"]

T = TypeVar("T")

log = logging.getLogger("mdeploy.serve")

Headers = list[tuple[bytes, bytes]]

# Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones the pool writes itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_DROP_REQUEST = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
# uvicorn writes its own Date; the engine's Server header says nothing the client needs.
_DROP_RESPONSE = HOP_BY_HOP | {b"date", b"server"}
# Small answers are sent in one piece: one send instead of two for every non-streamed reply.
_ONE_PIECE_MAX = 256 * 1024
_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True)
class Answer:
    """A whole engine answer (for the calls whose answer the adapter reads itself)."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class EngineClient:
    """
    The engine behind `base_url` (http://host:port, loopback in practice), for the adapter's
    whole life.

    `forward_authorization=False` drops the client's Authorization header: on a cloud the
    token was meant for the cloud, which already checked it, and must not reach the engine.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        probe_timeout: float,
        forward_authorization: bool,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"engine URL {base_url!r}: expected http://host:port")
        self.base_url = base_url
        self._prefix = parts.path.rstrip("/")
        self._pool = Pool(parts.hostname, parts.port or 80, connect_timeout=min(timeout, 5.0))
        self._timeout = timeout
        self._probe_timeout = probe_timeout
        self._drop = _DROP_REQUEST if forward_authorization else _DROP_REQUEST | {b"authorization"}
        self._model: str | None = None

    def close(self) -> None:
        """Close the idle connections."""
        self._pool.close()

    def headers(self, incoming: Iterable[tuple[bytes, bytes]]) -> Headers:
        """The client's headers minus hop-by-hop ones (and Authorization on a cloud)."""
        drop = self._drop
        return [(k, v) for k, v in incoming if k not in drop]

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Headers,
        *,
        query: bytes = b"",
        timeout: float | None = None,
    ) -> Response:
        target = self._prefix + path + ("?" + query.decode("latin-1") if query else "")
        with _engine_errors(self.base_url):
            return await self._pool.send(
                method, target, headers, body, timeout=timeout or self._timeout
            )

    async def stream(
        self,
        method: str,
        path: str,
        *,
        body: bytes,
        headers: Headers,
        send: Send,
        query: bytes = b"",
    ) -> None:
        """
        Send one request to the engine and copy its response to the client as it comes.

        Run it under `until_disconnect` so a client hanging up cancels it: cancelling drops
        the engine connection, which is how vLLM learns to abort the generation.
        """
        response = await self._send(method, path, body, headers, query=query)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [(k, v) for k, v in response.headers if k not in _DROP_RESPONSE],
                }
            )
            content_type = response.header(b"content-type") or b""
            await _copy(response, send, sse=content_type.startswith(b"text/event-stream"))
        finally:
            response.close()

    async def call(self, path: str, payload: dict[str, Any], headers: Headers) -> Answer:
        """POST one JSON body and read the whole answer (Vertex's per-instance calls)."""
        body = json.dumps(payload).encode()
        return await self._whole("POST", path, body, [*headers, _JSON], self._timeout)

    async def _whole(
        self, method: str, path: str, body: bytes, headers: Headers, timeout: float
    ) -> Answer:
        response = await self._send(method, path, body, headers, timeout=timeout)
        try:
            with _engine_errors(self.base_url):
                content = await response.read()
        finally:
            response.close()
        content_type = (response.header(b"content-type") or b"application/json").decode("latin-1")
        return Answer(response.status, content_type, content)

    async def healthy(self) -> bool:
        """Whether the engine's /health answers 200 within the probe timeout."""
        try:
            answer = await self._whole("GET", "/health", b"", [], self._probe_timeout)
        except HTTPError:
            return False
        return answer.status == 200

    async def served_model(self) -> str | None:
        """The engine's first served model name (cached once known), or None."""
        if self._model is None:
            try:
                answer = await self._whole("GET", "/v1/models", b"", [], self._probe_timeout)
                self._model = answer.json()["data"][0]["id"]
            except (HTTPError, ValueError, LookupError, TypeError):
                return None
        return self._model


@contextmanager
def _engine_errors(base_url: str) -> Iterator[None]:
    """Map failures before the response started to 503 / 504 HTTPErrors."""
    try:
        yield
    except EngineTimeout as exc:
        raise HTTPError(
            504, f"the engine did not answer in time: {exc}", "engine_timeout"
        ) from None
    except UpstreamError as exc:
        log.warning("engine unreachable at %s: %s", base_url, exc)
        raise HTTPError(
            503,
            "the inference engine is unavailable (starting, restarting or down)",
            "engine_unavailable",
        ) from None


async def _copy(response: Response, send: Send, *, sse: bool) -> None:
    """Copy the engine's body chunk by chunk; end an SSE stream with an error event on failure."""
    length = response.header(b"content-length")
    try:
        if length is not None and length.isdigit() and int(length) <= _ONE_PIECE_MAX:
            await send({"type": "http.response.body", "body": await response.read()})
            return
        async for chunk in response.body():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        log.warning("engine stream broke after the response started: %s", exc)
        if sse:
            await send({"type": "http.response.body", "body": _SSE_BROKEN})
        # Otherwise leave the response unfinished: the server closes the connection.
        return
    await send({"type": "http.response.body", "body": b""})


_SSE_BROKEN = (
    b'data: {"error": {"message": "the inference engine stopped mid-stream", '
    b'"type": "engine_unavailable", "code": 503}}\n\n'
)


async def until_disconnect(
    receive: Receive, work: Coroutine[Any, Any, T], hangup: Hangup | None = None
) -> T:
    """
    Await `work`, cancelling it as soon as the client disconnects (ClientDisconnected then).

    Under the adapter's own protocol the request carries a `Hangup` the protocol fires when
    the connection is lost, which cancels the request's task directly: no extra task. Under
    any other server a watcher task reads the client's side instead: once the body has been
    read, the server's next message is `http.disconnect`, and only when the client has gone.
    Either way the request's own task is cancelled rather than `work` run in a second task.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    def hung_up() -> None:
        nonlocal gone
        gone = True
        task.cancel()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        hung_up()

    watcher: asyncio.Future[None] | None = None
    if hangup is None:
        watcher = asyncio.ensure_future(watch())
    elif hangup.gone:
        work.close()
        raise ClientDisconnected
    else:
        hangup.callback = hung_up
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        if sys.version_info >= (3, 11):
            task.uncancel()
        log.info("client disconnected; engine request aborted")
        raise ClientDisconnected from None
    finally:
        if watcher is not None:
            watcher.cancel()
        elif hangup is not None:
            hangup.callback = None
