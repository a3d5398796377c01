"""
A small HTTP/1.1 client for one peer on loopback: the engine (vLLM's uvicorn server).

Why not httpx: every proxied request pays for the client, and on the adapter's hot path
httpx (httpcore, anyio, h11) cost 450-550 µs of CPU per request, about five times the whole
uvicorn server side, which capped the adapter at a few hundred requests per second. This
client does only what a keep-alive hop to a trusted HTTP/1.1 server needs, on asyncio
streams, for about 70 µs:

- one connection per in-flight request, kept alive and reused (idle ones up to `max_idle`);
- a request written in one piece, with Host and Content-Length set here;
- responses framed by Content-Length, chunked transfer coding or connection close, with
  1xx answers skipped and bodies yielded as they are read (so streams stay streams);
- a reused connection the peer closed while idle is noticed and replaced; a request that
  failed on one before any byte came back is sent once more on a fresh connection;
- a deadline on connecting and on each read: one timer per exchange, not one per read (a
  timer per read cost 12-14 % of the adapter's CPU), re-armed only when it fires while a
  read has been waiting less than the timeout.

Failures are `EngineUnavailable` (refused, reset, closed before answering), `EngineTimeout`
(no byte within the read timeout) or `BodyBroken` (the answer started, then broke).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any, TypeVar

__all__ = [
    "BodyBroken",
    "EngineTimeout",
    "EngineUnavailable",
    "Pool",
    "Response",
    "UpstreamError",
]

T = TypeVar("T")
Headers = list[tuple[bytes, bytes]]
_HEAD_LIMIT = 64 * 1024  # response head size the peer may send; uvicorn's are ~200 bytes
_NO_BODY = frozenset({204, 304})
_TIMEOUT = (TimeoutError, asyncio.TimeoutError)  # distinct types on Python 3.10
_BROKEN = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


class UpstreamError(Exception):
    """Base of the failures the proxy maps to HTTP answers."""


class EngineUnavailable(UpstreamError):
    """No answer: connection refused or reset, or closed before the response head."""


class EngineTimeout(UpstreamError):
    """The engine sent nothing within the read timeout."""


class BodyBroken(UpstreamError):
    """The response started but its body could not be read to the end."""


if sys.version_info >= (3, 11):

    async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
        return await asyncio.wait_for(awaitable, seconds)


class _Deadline:
    """
    "No byte within `seconds`" for every read of one exchange, with one timer.

    A read records when it started waiting; the timer, when it fires, cancels the reading
    task only if the current read has waited the full time, and otherwise re-arms itself for
    that read's own deadline. The cancellation is turned into EngineTimeout by `read`.
    """

    __slots__ = ("_handle", "_loop", "_task", "_waiting_since", "expired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._waiting_since: float | None = None
        self.expired = False

    async def read(self, awaitable: Awaitable[T]) -> T:
        now = self._loop.time()
        self._waiting_since = now
        self._task = asyncio.current_task()
        if self._handle is None:
            self._handle = self._loop.call_at(now + self.seconds, self._check)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if not self.expired:
                raise
            self.expired = False
            uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            raise EngineTimeout(f"no byte from the engine within {self.seconds:g} s") from None
        finally:
            self._waiting_since = None

    def _check(self) -> None:
        self._handle = None
        since = self._waiting_since
        if since is None or self._task is None:
            return  # not reading now: the next read arms a new timer
        due = since + self.seconds
        if self._loop.time() >= due:
            self.expired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(due, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        """False once the peer closed it (the loop reads the EOF even while idle)."""
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class Response:
    """
    One answer from the engine: status and headers at once, the body as it arrives.

    Iterate `body()` (or await `read()`) and then `close()`; closing early, or after a
    failure, drops the connection instead of returning it to the pool.
    """

    def __init__(
        self,
        pool: Pool,
        conn: _Connection,
        status: int,
        headers: Headers,
        method: str,
        deadline: _Deadline,
    ) -> None:
        self.status = status
        self.headers = headers
        self._pool, self._conn, self._deadline = pool, conn, deadline
        self._keep_alive = (self.header(b"connection") or b"").lower() != b"close"
        self._length: int | None = None
        self._chunked = False
        self._done = method == "HEAD" or status in _NO_BODY
        if not self._done:
            self._frame()

    def header(self, name: bytes) -> bytes | None:
        """First value of a header, by lower-case name."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def _frame(self) -> None:
        encoding = self.header(b"transfer-encoding")
        if encoding is not None and encoding.lower().endswith(b"chunked"):
            self._chunked = True
            return
        length = self.header(b"content-length")
        if length is not None and length.strip().isdigit():
            self._length = int(length)
            self._done = self._length == 0
        else:
            self._keep_alive = False  # the body ends when the peer closes

    async def body(self) -> AsyncIterator[bytes]:
        """Yield the body's bytes as they are read (transfer coding removed)."""
        try:
            if self._done:
                return
            if self._chunked:
                async for piece in self._chunks():
                    yield piece
            elif self._length is not None:
                remaining = self._length
                while remaining:
                    piece = await self._read(self._conn.reader.read(min(remaining, 65536)))
                    if not piece:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    remaining -= len(piece)
                    yield piece
            else:
                while piece := await self._read(self._conn.reader.read(65536)):
                    yield piece
            self._done = True
        except _BROKEN as exc:
            self._keep_alive = False
            raise BodyBroken(f"engine response body broken: {type(exc).__name__}") from None

    async def _chunks(self) -> AsyncIterator[bytes]:
        """
        Decode chunked transfer coding from bulk reads.

        Every chunk complete in what has been read is yielded at once, joined: when an engine
        sends several stream events back to back, the client gets them in one send, and a
        read costs one await however many chunks it holds.
        """
        reader = self._conn.reader
        buf = bytearray()
        while True:
            pieces: list[bytes] = []
            while True:
                line_end = buf.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(bytes(buf[:line_end]).split(b";", 1)[0].strip(), 16)
                start = line_end + 2
                if size == 0:  # the last chunk, then trailers (ignored) up to an empty line
                    message_end = buf.find(b"\r\n\r\n", line_end)
                    if message_end < 0:
                        break
                    if len(buf) > message_end + 4:
                        self._keep_alive = False  # bytes after the message: do not reuse
                    if pieces:
                        yield b"".join(pieces)
                    return
                end = start + size
                if len(buf) < end + 2:
                    break
                if buf[end : end + 2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                pieces.append(bytes(buf[start:end]))
                del buf[: end + 2]
            if pieces:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
            data = await self._read(reader.read(65536))
            if not data:
                raise asyncio.IncompleteReadError(bytes(buf), None)
            buf += data

    async def _read(self, awaitable: Awaitable[T]) -> T:
        try:
            return await self._deadline.read(awaitable)
        except EngineTimeout:
            self._keep_alive = False
            raise

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([piece async for piece in self.body()])

    def close(self) -> None:
        """Give the connection back if the exchange ended cleanly, else drop it."""
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is None:
            return
        self._deadline.cancel()
        if self._done and self._keep_alive:
            self._pool._release(conn)
        else:
            conn.close()


class Pool:
    """
    Keep-alive connections to one `host:port`.

    `Pool("127.0.0.1", 8000, connect_timeout=5)`; `await pool.send("GET", "/health", [], b"",
    timeout=1)` returns a `Response`; `pool.close()` drops the idle connections.
    """

    def __init__(self, host: str, port: int, *, connect_timeout: float, max_idle: int = 256):
        self.host, self.port = host, port
        self._authority = f"{host}:{port}".encode()
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._idle: list[_Connection] = []

    async def send(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        *,
        timeout: float,
    ) -> Response:
        """Send a request; return once the response head has arrived."""
        head = self._head(method, target, headers, body)
        conn, reused = await self._acquire()
        try:
            return await self._exchange(conn, head, body, method, timeout)
        except EngineUnavailable:
            if not reused:
                raise
        # The peer closed a kept-alive connection just as it was reused: nothing was
        # processed, so one fresh try is safe (what browsers and httpcore do too).
        conn, _ = await self._acquire(fresh=True)
        return await self._exchange(conn, head, body, method, timeout)

    def close(self) -> None:
        """Close the idle connections (in-flight ones close when their response does)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _head(
        self, method: str, target: str, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\n".encode(), b"host: ", self._authority, b"\r\n"]
        if body or method in ("POST", "PUT", "PATCH"):
            lines += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        return b"".join(lines)

    async def _acquire(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        try:
            reader, writer = await _within(
                self._connect_timeout,
                asyncio.open_connection(self.host, self.port, limit=_HEAD_LIMIT),
            )
        except (OSError, *_TIMEOUT) as exc:
            raise EngineUnavailable(f"cannot connect to the engine: {type(exc).__name__}") from None
        return _Connection(reader, writer), False

    async def _exchange(
        self, conn: _Connection, head: bytes, body: bytes, method: str, timeout: float
    ) -> Response:
        deadline = _Deadline(timeout)
        try:
            conn.writer.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                conn.writer.write(body)
                await conn.writer.drain()  # small requests fit the buffer: no wait needed
            while True:
                raw = await deadline.read(conn.reader.readuntil(b"\r\n\r\n"))
                status, headers = _parse_head(raw)
                if not 100 <= status < 200:
                    return Response(self, conn, status, headers, method, deadline)
        except EngineTimeout:
            deadline.cancel()
            conn.close()
            raise EngineTimeout(f"no answer from the engine within {timeout:g} s") from None
        except _BROKEN as exc:
            deadline.cancel()
            conn.close()
            raise EngineUnavailable(f"engine connection failed: {type(exc).__name__}") from None
        except BaseException:  # cancelled (the client left): closing tells the engine to abort
            deadline.cancel()
            conn.close()
            raise

    def _release(self, conn: _Connection) -> None:
        if len(self._idle) < self._max_idle and conn.usable():
            self._idle.append(conn)
        else:
            conn.close()


def _parse_head(raw: bytes) -> tuple[int, Headers]:
    """Parse a status line and header block; ValueError when it is not HTTP/1.x."""
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise ValueError("not an HTTP/1.x response")
    status = int(rest[:3])
    headers: Headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError("malformed header line")
        headers.append((name.strip().lower(), value.strip()))
    return status, headers
