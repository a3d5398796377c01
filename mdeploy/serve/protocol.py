"""
uvicorn's HTTP protocol with a deadline for each request's headers (slowloris protection).

uvicorn times out idle kept-alive connections, but not a client that opens a connection and
sends nothing, or sends a request's headers a byte at a time: each such client holds a file
handle and a slot for as long as it likes (300 of them were still open after 85 s). This
subclass gives every request `header_timeout` seconds, counted from the connection opening
(first request) or from the request's first byte (later ones on a kept-alive connection), to
complete its header block; past that it answers 408 and closes. The body has its own deadline,
kept by the app (`Request.body`), and the number of connections is capped by uvicorn's
`limit_concurrency` (503 beyond it).

It subclasses whichever protocol uvicorn would pick (httptools when installed, else h11), and
notices "headers complete" the way both do: a new request/response cycle object appears.

It tells the app at once when a client hangs up: each request's scope carries a `Hangup`
under `"mdeploy.hangup"`, fired from `connection_lost`, so the app can cancel the engine
request without a watcher task per request (`proxy.until_disconnect`).

It also corks the client connection: what the app sends within one turn of the event loop
(uvicorn writes a response's head and its body separately; a stream's events may come
several at once) leaves in one socket write at the end of that turn. On loopback each write
is a system call that wakes the peer, so this halves the writes of every small reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["HANGUP", "Hangup", "with_header_deadline"]

HANGUP = "mdeploy.hangup"  # the scope key


class Hangup:
    """
    Set by the protocol when the client's connection is lost mid-request.

    `body_complete` says the whole body came with the headers, so reading it cannot stall
    and the app needs no body deadline (no timer) for this request.
    """

    __slots__ = ("body_complete", "callback", "gone")

    def __init__(self, body_complete: bool = False) -> None:
        self.callback: Callable[[], None] | None = None
        self.gone = False
        self.body_complete = body_complete

    def fire(self) -> None:
        self.gone = True
        callback, self.callback = self.callback, None
        if callback is not None:
            callback()


_BODY = b"request headers not received in time"
_RESPONSE_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _BODY
)


def with_header_deadline(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's automatic HTTP protocol class, with a `seconds` header deadline added."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class HeaderDeadlineProtocol(base):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.transport = _Corked(transport, self.loop)  # type: ignore[arg-type]
            self._arm()

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            super().data_received(data)
            new = self.cycle
            if new is not before:  # a new request's headers are complete
                self._disarm()
                # Read by the app once its task runs (the task was only scheduled).
                new.scope[HANGUP] = Hangup(body_complete=not new.more_body)
            elif self._header_timer is None and (before is None or before.response_complete):
                # Part of the next request's head on a kept-alive connection. A head that
                # arrives whole (the usual case) never costs a timer.
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                hangup = cycle.scope.get(HANGUP)
                if hangup is not None:
                    self.loop.call_soon(hangup.fire)
            super().connection_lost(exc)

        def _arm(self) -> None:
            if not self.transport.is_closing():
                self._header_timer = self.loop.call_later(seconds, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return  # a request is being served: its headers did arrive
            if not self.transport.is_closing():
                self.transport.write(_RESPONSE_408)
                self.transport.close()

    HeaderDeadlineProtocol.__qualname__ = f"HeaderDeadline[{base.__name__}]"
    return HeaderDeadlineProtocol


class _Corked:
    """
    A transport that gathers the writes of one event-loop turn into one.

    Everything but `write`, `writelines` and `close` goes to the real transport; closing
    sends what is gathered first, so a 408 or a `connection: close` reply is not lost.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
