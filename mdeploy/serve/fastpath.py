"""
The adapter's fast path: pass-through routes proxied at the protocol level, bytes as they come.

Most requests need no translation: the OpenAI routes (`/v1/chat/completions`,
`/v1/completions`, `/v1/models`, `/health`, `/metrics`), SageMaker `/invocations` and Azure
`/score` with an OpenAI body that names its model, and Vertex rawPredict of such a body. For
those, uvicorn's protocol, the ASGI call, the asyncio streams of the engine client and the
decode / re-encode of every chunk cost about five times what nginx spends per request (issue
15). This `asyncio.Protocol` does what a plain reverse proxy does instead:

- it parses the request head with httptools and checks auth, size, framing and the connection
  cap;
- it writes the request to a pooled keep-alive engine connection (an `asyncio.Protocol` client
  whose httptools response parser finds the end of the response, chunked or content-length);
- it writes the engine's response bytes to the client as they arrive, head rewritten (hop-by-hop
  headers dropped), body untouched (no per-chunk decode or re-encode), with flow control: when
  the client's send buffer is full, the engine connection stops being read.

Anything else is handed, with the bytes read so far, to uvicorn's protocol (`fallback`), which
then serves that connection for the rest of its life through the ASGI app (`app.py`):
readiness and liveness, Vertex `instances`, a body without `model`, a wrong or missing API key
(401), a declared body over the limit (413), chunked request bodies, `Expect`, HTTP/1.0, a
malformed head, the connection cap (503). Those answers therefore stay exactly as they were.

Behaviour kept on the fast path, as in `proxy.py`: 503 when the engine is unreachable (one
retry on a fresh connection when a reused one was closed by the engine while idle), 504 when
it sends nothing for `engine_timeout` seconds, engine errors passed through, an SSE stream
that breaks at an event boundary ended with an `error` event, any other broken body cut short
by closing the client connection; a client hanging up closes the engine connection (vLLM
then aborts the generation); header, body and keep-alive deadlines (one lazily re-armed timer
per connection, not one per request); on SIGTERM (uvicorn's `shutdown()`) idle connections
close at once and busy ones after their response.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from mdeploy.serve.config import ServeConfig
from mdeploy.serve.contract import LIVENESS_ROUTE, READINESS_ROUTE
from mdeploy.serve.proxy import HOP_BY_HOP
from mdeploy.serve.translate import CHAT_ROUTE, COMPLETIONS_ROUTE, ENGINE_POST_ROUTES

try:
    import httptools
except ImportError:  # pragma: no cover - uvicorn[standard] installs it
    httptools = None

__all__ = ["FastSettings", "fast_protocol", "fast_settings"]

log = logging.getLogger("mdeploy.serve")
access_log = logging.getLogger("mdeploy.serve.access")

_HEAD_MAX = 64 * 1024  # a longer request head goes to uvicorn, which refuses it
_PIPELINE_MAX = 1024 * 1024  # buffered bytes of later requests before reading pauses
_MAX_IDLE = 256
# Request headers not copied as they are: dropped (hop-by-hop, Host) or handled by `_Head`.
_SPECIAL_REQUEST = frozenset(
    {*HOP_BY_HOP, b"host", b"content-length", b"expect", b"authorization", b"content-type"}
)
# The body goes through with its own framing, so transfer-encoding and content-length stay:
# every other hop-by-hop header goes, and Server. (A header name has no space before its
# colon, RFC 9112 §5.1, which llhttp enforces before these run.)
_DROP_RESPONSE_RE = re.compile(
    rb"\r\n(?:%s):[^\r]*(?=\r\n)"
    % b"|".join(re.escape(h) for h in sorted({*HOP_BY_HOP, b"server"} - {b"transfer-encoding"})),
    re.IGNORECASE,
)
# Any hop-by-hop header but Transfer-Encoding, searched in a lowercased head.
_HOP_MARK_RE = re.compile(
    rb"\r\n(?:%s):" % b"|".join(re.escape(h) for h in sorted(HOP_BY_HOP - {b"transfer-encoding"}))
)
_CHUNKED_RE = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked[ \t]*\r\n", re.IGNORECASE)
_SSE_RE = re.compile(rb"\r\ncontent-type:[ \t]*text/event-stream", re.IGNORECASE)
_SSE_BROKEN = (
    b'data: {"error": {"message": "the inference engine stopped mid-stream", '
    b'"type": "engine_unavailable", "code": 503}}\n\n'
)
_HEAD_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 36\r\nconnection: close\r\n\r\nrequest headers not received in time"
)


@dataclass(frozen=True)
class FastSettings:
    """What the fast path needs from the adapter's configuration (paths as bytes)."""

    engine_host: str
    engine_port: int
    engine_prefix: bytes
    get_routes: frozenset[bytes]
    post_routes: frozenset[bytes]
    invoke_route: bytes | None  # SageMaker / Azure: routed by the body's shape
    raw_predict_route: bytes | None  # Vertex: rawPredict bodies only
    open_routes: frozenset[bytes]
    api_key: bytes | None
    forward_authorization: bool
    max_body: int
    header_timeout: float
    body_timeout: float
    engine_timeout: float
    keep_alive: float
    access_log: bool


def fast_settings(config: ServeConfig, keep_alive: float) -> FastSettings:
    """
    The fast path's view of `config`, mirroring `Adapter._routes`.

    A path a platform claims for itself (Vertex may point its health or predict route at
    `/health` or `/v1/completions`) is left to the app, which routes it as today.
    """
    from urllib.parse import urlsplit

    contract = config.contract
    claimed = {LIVENESS_ROUTE, READINESS_ROUTE, contract.liveness, contract.readiness}
    claimed.add(contract.inference or "")
    open_platform = (contract.liveness, contract.readiness)
    parts = urlsplit(config.engine_url)
    invoke = raw = None
    if contract.inference and contract.platform == "vertex":
        raw = contract.inference.encode()
    elif contract.inference:
        invoke = contract.inference.encode()
    return FastSettings(
        engine_host=parts.hostname or "127.0.0.1",
        engine_port=parts.port or 80,
        engine_prefix=parts.path.rstrip("/").encode(),
        get_routes=frozenset(p.encode() for p in {"/v1/models", "/health", "/metrics"} - claimed),
        post_routes=frozenset(p.encode() for p in ENGINE_POST_ROUTES - claimed),
        invoke_route=invoke,
        raw_predict_route=raw,
        open_routes=frozenset(
            p.encode() for p in (LIVENESS_ROUTE, READINESS_ROUTE, "/health", *open_platform) if p
        ),
        api_key=config.api_key.encode() if config.api_key else None,
        forward_authorization=config.platform == "plain",
        max_body=config.max_body_bytes,
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        engine_timeout=config.engine_timeout,
        keep_alive=keep_alive,
        access_log=config.access_log,
    )


def fast_protocol(settings: FastSettings, fallback: type[asyncio.Protocol]) -> type[Any]:
    """
    A uvicorn protocol class: the fast path, handing other requests to `fallback`.

    Without httptools there is no fast path: `fallback` itself is returned.
    """
    if httptools is None:
        return fallback
    shared: dict[str, _Pool] = {}

    class FastProtocol(_Client):
        def __init__(
            self,
            config: Any,
            server_state: Any,
            app_state: Any,
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            loop = _loop or asyncio.get_event_loop()
            pool = shared.get("pool")
            if pool is None:
                pool = shared["pool"] = _Pool(loop, settings)

            def handoff() -> asyncio.Protocol:
                return fallback(  # type: ignore[call-arg]
                    config=config, server_state=server_state, app_state=app_state, _loop=loop
                )

            super().__init__(
                loop, settings, pool, server_state.connections, config.limit_concurrency, handoff
            )

    return FastProtocol


# The client side ------------------------------------------------------------------------


class _Head:
    """
    httptools callbacks collecting one request head, already filtered for the engine.

    Each header is sorted as it is parsed: framing and auth noted, hop-by-hop ones and Host
    dropped, the rest kept as lines of the engine's head (in the client's order), so the
    head is walked once.
    """

    __slots__ = (
        "auth",
        "complete",
        "content_type",
        "forward_auth",
        "keep_alive",
        "length",
        "lengths",
        "lines",
        "parser",
        "plain",
        "url",
    )

    def __init__(self, forward_auth: bool) -> None:
        self.forward_auth = forward_auth
        self.parser: Any = None
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.lines: list[bytes] = []
        self.length = 0
        self.lengths = 0
        self.plain = True  # framing the fast path handles: one Content-Length or none
        self.auth: bytes | None = None
        self.content_type: bytes | None = None
        self.complete = False
        self.keep_alive = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname not in _SPECIAL_REQUEST:
            self.lines += (name, b": ", value, b"\r\n")
        elif lname == b"content-length":
            self.lengths += 1
            if value.isdigit():
                self.length = int(value)
            else:
                self.plain = False
        elif lname == b"authorization":
            self.auth = value
        elif lname == b"content-type":
            self.content_type = value
        elif lname == b"transfer-encoding" or lname == b"expect":
            self.plain = False

    def on_headers_complete(self) -> None:
        # llhttp answers should_keep_alive only from within a callback.
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    def extra(self, by_body: bool) -> bytes:
        """The headers held back: Content-Type (JSON when routed by body), Authorization."""
        out = b""
        if by_body:
            out = b"content-type: application/json\r\n"
        elif self.content_type is not None:
            out = b"content-type: " + self.content_type + b"\r\n"
        if self.forward_auth and self.auth is not None:
            out += b"authorization: " + self.auth + b"\r\n"
        return out


class _Client(asyncio.Protocol):
    """One client connection on the fast path (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        settings: FastSettings,
        pool: _Pool,
        connections: set[Any],
        limit: int | None,
        fallback: Callable[[], asyncio.Protocol],
    ) -> None:
        self.loop = loop
        self.s = settings
        self.pool = pool
        self.connections = connections
        self.limit = limit
        self.fallback = fallback
        self.transport: asyncio.Transport | None = None
        # What the client sent and was not served yet: the bytes of one read as they came
        # (usually one whole request: no copy), a bytearray once reads are joined.
        self.buf: bytes | bytearray = b""
        # The request parser, reused by every request of the connection.
        self.head = _Head(settings.forward_authorization)
        self.parser: Any = None
        # A request whose body is still coming: the bytes needed, and whether its engine path
        # is decided by its body.
        self.pending: tuple[int, bool] | None = None
        self.requests = 0
        self.busy = False  # a request is with the engine
        self.keep_alive = True
        self.closing = False
        self.handed_off = False
        self.engine: _Engine | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.write_paused = False
        self.read_paused = False
        # Deadlines: one timer, re-armed lazily (a request costs no timer of its own).
        self.timer: asyncio.TimerHandle | None = None
        self.waiting_since = loop.time()  # head, body or idle wait started
        self.started = 0.0
        self.method = b""
        self.path = b""
        self.query = b""
        self.status = 0

    # asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.parser = self.head.parser = httptools.HttpRequestParser(self.head)
        self._arm(self.s.header_timeout)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        if not buf:
            self.buf = data
            if self.pending is None and self.requests and not self.busy:
                self.waiting_since = self.loop.time()  # a later request's head starts now
        elif type(buf) is bytes:
            self.buf = bytearray(buf) + data
        else:
            buf += data
        if self.busy:
            if len(self.buf) > _PIPELINE_MAX and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()  # type: ignore[union-attr]
            return
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.connect_task is not None:
            self.connect_task.cancel()
        engine, self.engine = self.engine, None
        if engine is not None:  # closing it is how vLLM learns to abort the generation
            engine.abandon()
            log.info("client disconnected; engine request aborted")
            self.status = 499
            self._log()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.engine is not None:
            self.engine.pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.engine is not None:
            self.engine.resume()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close now when idle, else after this response."""
        self.closing = True
        if not self.busy and self.pending is None:  # a body on its way is served first
            self.transport.close()  # type: ignore[union-attr]

    # Requests ---------------------------------------------------------------------------

    def _next(self) -> None:
        """Serve the next request in the buffer, or wait for it."""
        buf = self.buf
        if self.pending is not None:
            need, by_body = self.pending
            if len(buf) >= need:
                self.pending = None
                self._send(need, by_body)
            return
        if self.closing:
            return
        if not buf:
            self.waiting_since = self.loop.time()
            self._arm(self.s.keep_alive)
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _HEAD_MAX:
                self._handoff()
            else:
                self._arm(self.s.header_timeout)
            return
        self._request(end + 4)

    def _request(self, head_end: int) -> None:
        parsed, parser, s = self.head, self.parser, self.s
        parsed.reset()
        try:
            parser.feed_data(self.buf[:head_end])
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._handoff()
            return
        if (
            not parsed.complete
            or not parsed.plain
            or parsed.lengths > 1
            or parsed.length > s.max_body  # the app answers 413 before reading
            or parser.get_http_version() != "1.1"
            or parser.should_upgrade()
            or (self.limit is not None and len(self.connections) >= self.limit)  # app: 503
        ):
            self._handoff()
            return
        method = parser.get_method()
        path, _, query = parsed.url.partition(b"?")
        if method == b"POST" and path in s.post_routes:
            by_body = False
        elif method == b"POST" and (path == s.invoke_route or path == s.raw_predict_route):
            by_body = True
        elif method == b"GET" and path in s.get_routes:
            by_body = False
        else:
            self._handoff()
            return
        key = s.api_key
        if key is not None and path not in s.open_routes and not _allowed(parsed.auth, key):
            self._handoff()  # the app answers the 401
            return
        self.method, self.path, self.query = method, path, query
        self.started = time.perf_counter()
        need = head_end + parsed.length
        if len(self.buf) < need:
            self.pending = (need, by_body)
            self.waiting_since = self.loop.time()
            self._arm(s.body_timeout)
            return
        self._send(need, by_body, head_end)

    def _send(self, need: int, by_body: bool, head_end: int | None = None) -> None:
        """The request is whole in the buffer: route it by its body if needed, then send."""
        buf, parsed = self.buf, self.head
        if head_end is None:
            head_end = need - parsed.length
        body = buf[head_end:need]
        if type(body) is not bytes:
            body = bytes(body)
        route = self.path
        if by_body and (route := _body_route(body, self)) is None:  # type: ignore[assignment]
            self._handoff()
            return
        if body:
            # Keeps the parser in step for the next request; should this fail, that request's
            # head fails to parse too and goes to uvicorn.
            with contextlib.suppress(httptools.HttpParserError):
                self.parser.feed_data(body)
        self.requests += 1
        if type(buf) is bytearray:
            del buf[:need]
        else:
            self.buf = buf[need:]
        self.keep_alive = parsed.keep_alive
        self.busy = True
        self.status = 0
        method, query = self.method, self.query
        self._dispatch(
            b"%s %s%s%s HTTP/1.1\r\nhost: %s\r\n%s%s%s\r\n%s"
            % (
                method,
                self.s.engine_prefix,
                route,
                b"?" + query if query else b"",
                self.pool.authority,
                b"content-length: %d\r\n" % len(body) if body or method == b"POST" else b"",
                b"".join(parsed.lines),
                parsed.extra(by_body),
                body,
            ),
            retry=True,
        )

    def _dispatch(self, payload: bytes, *, retry: bool) -> None:
        """Send on an idle pooled connection (`retry`: once more if it was stale) or a new one."""
        engine = self.pool.take() if retry else None
        if engine is not None:
            engine.start(self, payload, retry=retry)
        else:
            self.connect_task = self.loop.create_task(self._connect(payload))

    async def _connect(self, payload: bytes) -> None:
        try:
            engine = await self.pool.connect()
        except asyncio.CancelledError:
            return
        except (OSError, TimeoutError, asyncio.TimeoutError) as exc:
            self.connect_task = None
            self.unavailable(f"cannot connect to the engine: {type(exc).__name__}")
            return
        self.connect_task = None
        if self.closing and self.transport is not None and self.transport.is_closing():
            engine.close()
            return
        engine.start(self, payload, retry=False)

    # Called by the engine connection ----------------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def unavailable(self, reason: str) -> None:
        log.warning("engine unreachable at %s: %s", self.pool.url, reason)
        self._error(
            503,
            "the inference engine is unavailable (starting, restarting or down)",
            "engine_unavailable",
        )

    def timed_out(self) -> None:
        self._error(
            504,
            f"the engine did not answer in time: no answer from the engine within "
            f"{self.s.engine_timeout:g} s",
            "engine_timeout",
        )

    def _error(self, status: int, message: str, kind: str, *, close: bool = False) -> None:
        self.engine = None
        if self.transport is None or self.transport.is_closing():
            return
        self.status = status
        self.write(_json_response(status, message, kind, close=close))
        if close:
            self.keep_alive = False
        self.finished()

    def finished(self) -> None:
        """The response is complete: log, then close or serve the next request."""
        self.engine = None
        self.busy = False
        self._log()
        if not self.keep_alive or self.closing:
            self.transport.close()  # type: ignore[union-attr]
            return
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        if self.buf:  # a pipelined request: its head's deadline counts from now
            self.waiting_since = self.loop.time()
        self._next()

    def broken(self) -> None:
        """The response started and cannot be finished: cut it short."""
        self.engine = None
        self.busy = False
        self._log()
        self.transport.close()  # type: ignore[union-attr]

    # Helpers ----------------------------------------------------------------------------

    def _log(self) -> None:
        if self.status >= 500 or self.s.access_log:
            elapsed = (time.perf_counter() - self.started) * 1000
            level = logging.WARNING if self.status >= 500 else logging.INFO
            method, path = self.method.decode("latin-1"), self.path.decode("latin-1")
            path = path if path.isprintable() else repr(path)
            access_log.log(level, "%s %s %d %.1fms", method, path, self.status, elapsed)

    def _arm(self, seconds: float) -> None:
        """Make sure the timer fires by `waiting_since + seconds` (it re-arms itself lazily)."""
        due = self.waiting_since + seconds
        if self.timer is not None:
            if self.timer.when() <= due:
                return
            self.timer.cancel()
        self.timer = self.loop.call_at(due, self._deadline)

    def _deadline(self) -> None:
        self.timer = None
        transport = self.transport
        if transport is None or transport.is_closing() or self.handed_off:
            return
        s, now = self.s, self.loop.time()
        if self.busy:
            self.timer = self.loop.call_at(now + s.keep_alive, self._deadline)
            return
        if self.pending is not None:
            seconds = s.body_timeout
        elif self.buf or not self.requests:  # a head on its way (or the first one awaited)
            seconds = s.header_timeout
        else:
            seconds = s.keep_alive
        due = self.waiting_since + seconds
        if now < due:
            self.timer = self.loop.call_at(due, self._deadline)
        elif self.pending is not None:
            message = f"request body not received within {s.body_timeout:g} s"
            self.busy = True
            self._error(408, message, "request_timeout", close=True)
        elif self.buf or not self.requests:
            transport.write(_HEAD_408)
            transport.close()
        else:
            transport.close()

    def _handoff(self) -> None:
        """Give the connection, and what it has sent so far, to uvicorn's protocol."""
        transport = self.transport
        assert transport is not None
        self.handed_off = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.connections.discard(self)
        protocol = self.fallback()
        protocol.connection_made(transport)
        transport.set_protocol(protocol)
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        data, self.buf = bytes(self.buf), b""
        if data:
            protocol.data_received(data)
        if self.closing:  # shutdown began while this request's body was arriving
            protocol.shutdown()  # type: ignore[attr-defined]


def _allowed(value: bytes | None, key: bytes) -> bool:
    """`Authorization: Bearer <key>`, compared in constant time (as asgi.BearerKey)."""
    if value is None or len(value) < 7 or value[:7].lower() != b"bearer ":
        return False
    return hmac.compare_digest(value[7:].strip(), key)


def _body_route(body: bytes, client: _Client) -> bytes | None:
    """
    The engine path of an /invocations, /score or rawPredict request, from its body.

    Only a JSON object that names its model and is a chat or completion body goes fast;
    anything else (no model to fill in, Vertex instances, not JSON) is None: the app's.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict) or "model" not in payload or "instances" in payload:
        return None
    path = client.path
    if path == client.s.raw_predict_route and path.decode() in ENGINE_POST_ROUTES:
        return path
    if "messages" in payload:
        return CHAT_ROUTE.encode()
    if "prompt" in payload:
        return COMPLETIONS_ROUTE.encode()
    return None


def _json_response(status: int, message: str, kind: str, *, close: bool = False) -> bytes:
    body = json.dumps(
        {"error": {"message": message, "type": kind, "code": status}}, separators=(",", ":")
    ).encode()
    phrase = HTTPStatus(status).phrase.encode()
    extra = b"connection: close\r\n" if close else b""
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status,
        phrase,
        len(body),
        extra,
        body,
    )


# The engine side ------------------------------------------------------------------------


class _Pool:
    """Keep-alive `_Engine` connections to the engine, shared by every client connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: FastSettings) -> None:
        self.loop = loop
        self.s = settings
        self.host, self.port = settings.engine_host, settings.engine_port
        self.authority = f"{self.host}:{self.port}".encode()
        self.url = f"http://{self.host}:{self.port}"
        self.idle: list[_Engine] = []

    def take(self) -> _Engine | None:
        idle = self.idle
        while idle:
            engine = idle.pop()
            if engine.usable():
                return engine
        return None

    async def connect(self) -> _Engine:
        connecting = self.loop.create_connection(lambda: _Engine(self), self.host, self.port)
        _, engine = await asyncio.wait_for(connecting, min(self.s.engine_timeout, 5.0))
        return engine

    def release(self, engine: _Engine) -> None:
        if len(self.idle) < _MAX_IDLE and engine.usable():
            self.idle.append(engine)
        else:
            engine.close()


class _Engine(asyncio.Protocol):
    """One keep-alive connection to the engine; one exchange at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.client: _Client | None = None
        self.parser: Any = None
        self.payload = b""
        self.retry = False
        self.head: bytes | None = None  # the response head while it is incomplete
        self.head_done = False
        self.complete = False
        self.chunked = False
        self.sse = False
        self.in_chunk = False
        self.tail = b""
        self.last = 0.0  # when the engine last sent a byte (or the exchange started)
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.status = 0
        self.keep_alive = False
        self.until_close = False  # the body ends when the engine closes the connection

    # Exchange ---------------------------------------------------------------------------

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def start(self, client: _Client, payload: bytes, *, retry: bool) -> None:
        self.client = client
        client.engine = self
        if self.parser is None:  # reused while exchanges end cleanly
            self.parser = httptools.HttpResponseParser(self)
        self.payload, self.retry = payload, retry
        self.head = b""
        self.head_done = self.complete = self.chunked = self.sse = self.in_chunk = False
        self.until_close = False
        self.last = now = self.loop.time()
        if self.timer is None:
            self.timer = self.loop.call_at(now + self.pool.s.engine_timeout, self._check)
        if client.write_paused:
            self.pause()
        self.transport.write(payload)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:  # bytes while idle: the connection is out of step
            self.close()
            return
        self.last = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail()
            return
        head = self.head
        if head is None:  # the head is sent: the body, as it comes
            client.transport.write(data)  # type: ignore[union-attr]
            self.tail = data
        else:
            head = head + data if head else data  # usually the whole head in one read
            if not self.head_done:
                self.head = head
                return
            self.head = None
            end = head.find(b"\r\n\r\n") + 4
            self.payload = b""
            client.status = self.status
            client.transport.write(self._client_head(head[:end]) + head[end:])  # type: ignore[union-attr]
            self.tail = head
        if self.complete:
            self._done()

    def _client_head(self, raw: bytes) -> bytes:
        """
        The engine's head minus hop-by-hop headers and Server; framing headers kept.

        vLLM's uvicorn sends no hop-by-hop header on a kept-alive answer, only Server to drop:
        that common head is rewritten with a few substring searches of its lowercased copy
        (a case-insensitive regex pass costs several times more); any other goes through
        the regex.
        """
        lower = raw.lower()
        if _HOP_MARK_RE.search(lower) is None:
            server = lower.find(b"\r\nserver:")
            head = raw if server < 0 else raw[:server] + raw[lower.index(b"\r\n", server + 2) :]
        else:
            head = _DROP_RESPONSE_RE.sub(b"", raw)
        # find(), not `in`: CPython's bytes `in` first tries the operand as an int and builds
        # (then drops) a TypeError, which costs more than the search itself.
        self.chunked = lower.find(b"chunked") >= 0 and _CHUNKED_RE.search(head) is not None
        self.sse = lower.find(b"text/event-stream") >= 0 and _SSE_RE.search(head) is not None
        status = self.status
        if (
            not self.chunked
            and lower.find(b"\r\ncontent-length:") < 0
            and status not in (204, 304)
            and not 100 <= status < 200
        ):
            self.until_close = True  # the body ends when the connection does
            if self.client is not None:
                self.client.keep_alive = False
            head = head[:-2] + b"connection: close\r\n\r\n"
        return head

    # httptools callbacks ------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.status = self.parser.get_status_code()

    def on_chunk_header(self) -> None:
        self.in_chunk = True

    def on_chunk_complete(self) -> None:
        self.in_chunk = False

    def on_message_complete(self) -> None:
        # llhttp answers should_keep_alive only from within a callback.
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # Endings ------------------------------------------------------------------------------

    def _done(self) -> None:
        client, self.client = self.client, None
        if self.keep_alive:
            self.pool.release(self)
        else:
            self.close()
        if client is not None:
            client.finished()

    def _fail(self, timeout: bool = False) -> None:
        """The exchange broke (engine closed, garbage, or silent past the timeout)."""
        client, self.client = self.client, None
        self.parser = None
        self.close()
        if client is None:
            return
        if not self.head_done or self.head is not None:
            if timeout:
                client.timed_out()
            elif self.retry and not self.head:  # a reused connection died while idle
                client.engine = None
                client._dispatch(self.payload, retry=False)
            else:
                client.unavailable("engine connection failed before the response")
            return
        log.warning("engine stream broke after the response started")
        boundary = self.chunked and not self.in_chunk and self.tail.endswith(b"\r\n")
        if self.sse and boundary:
            client.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(_SSE_BROKEN), _SSE_BROKEN))
            client.finished()
        else:
            client.broken()

    def abandon(self) -> None:
        """The client left: drop the exchange and the connection."""
        self.client = None
        self.close()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()

    def _check(self) -> None:
        self.timer = None
        seconds = self.pool.s.engine_timeout
        now = self.loop.time()
        if self.client is not None and now >= self.last + seconds:
            self._fail(timeout=True)
            return
        if self.usable():
            base = self.last if self.client is not None else now
            self.timer = self.loop.call_at(base + seconds, self._check)

    def pause(self) -> None:
        if self.usable():
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume(self) -> None:
        if self.usable():
            self.transport.resume_reading()  # type: ignore[union-attr]

    # asyncio callbacks --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.client is None:
            return
        if self.until_close and self.head is None:
            client, self.client = self.client, None
            client.broken()  # a body framed by the connection's end: complete, and closed
            return
        self._fail()
