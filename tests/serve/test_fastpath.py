"""
The fast path (`mdeploy.serve.fastpath`) in one event loop: a scripted engine on 127.0.0.1,
the fast protocol in front of it, and raw sockets as clients, so each test controls every byte
and sees what the protocol handed to uvicorn (the fallback) instead of serving it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from mdeploy.serve.fastpath import FastSettings, fast_protocol

pytest.importorskip("httptools")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Engine"], Awaitable[None]]
KEY = "k-123456"


class Engine:
    """A scripted engine: `handler` answers each request; requests and closes are recorded."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.connections = 0
        self.closed = asyncio.Event()
        self.sent = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append((head, await reader.readexactly(length)))
                await self.handler(reader, writer, self)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
        finally:
            writer.close()


class Fallback(asyncio.Protocol):
    """Stands in for uvicorn's protocol: records the bytes it was handed, answers 418."""

    handed: ClassVar[list[bytes]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.state = kwargs["server_state"]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.state.connections.add(self)
        Fallback.handed.append(b"")

    def data_received(self, data: bytes) -> None:
        Fallback.handed[-1] += data
        if b"\r\n\r\n" in Fallback.handed[-1]:
            self.transport.write(b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)


def settings(port: int, **changes: Any) -> FastSettings:
    base = FastSettings(
        engine_host="127.0.0.1",
        engine_port=port,
        engine_prefix=b"",
        get_routes=frozenset({b"/v1/models", b"/health", b"/metrics"}),
        post_routes=frozenset({b"/v1/chat/completions", b"/v1/completions"}),
        invoke_route=b"/invocations",
        raw_predict_route=None,
        open_routes=frozenset({b"/live", b"/ready", b"/health"}),
        api_key=None,
        forward_authorization=False,
        max_body=1000,
        header_timeout=5.0,
        body_timeout=5.0,
        engine_timeout=5.0,
        keep_alive=75.0,
        access_log=False,
    )
    return replace(base, **changes)


class Adapter:
    """The fast protocol served on 127.0.0.1, as uvicorn would create it."""

    def __init__(self, fast: FastSettings, limit: int | None = None) -> None:
        Fallback.handed = []
        self.state = SimpleNamespace(connections=set())
        self.config = SimpleNamespace(limit_concurrency=limit)
        self.cls = fast_protocol(fast, Fallback)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        factory = lambda: self.cls(  # noqa: E731
            config=self.config, server_state=self.state, app_state={}, _loop=loop
        )
        self.server = await loop.create_server(factory, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]


async def setup(handler: Handler, **changes: Any) -> tuple[Engine, Adapter, int]:
    engine = Engine(handler)
    engine_port = await engine.start()
    adapter = Adapter(settings(engine_port, **changes))
    return engine, adapter, await adapter.start()


def post(path: str, body: dict, extra: bytes = b"") -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n".encode()
        + extra
        + b"\r\n"
        + data
    )


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response with a content-length body: (head, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await asyncio.wait_for(reader.readexactly(length), 5)


def answer(body: bytes, *extra: bytes) -> bytes:
    lines = [b"HTTP/1.1 200 OK", b"server: uvicorn", b"connection: keep-alive", *extra]
    lines += [b"content-type: application/json", b"content-length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


# Pass-through -----------------------------------------------------------------------------


def test_content_length_answers_pass_through_over_one_pooled_engine_connection():
    async def handler(reader, writer, engine):
        writer.write(answer(b'{"n": %d}' % len(engine.requests)))

    async def main():
        engine, _adapter, port = await setup(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(post("/v1/completions", {"prompt": "hi", "model": "m"}, b"x-a: 1\r\n"))
        heads_bodies = [await read_response(reader) for _ in range(3)]  # pipelined too
        assert [b for _, b in heads_bodies] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
        head = heads_bodies[0][0].lower()
        assert b"server:" not in head and b"connection:" not in head  # hop-by-hop dropped
        assert engine.connections == 1  # kept alive and reused
        seen_head, seen_body = engine.requests[0]
        assert seen_head.startswith(b"POST /v1/completions HTTP/1.1\r\n")
        assert b"x-a: 1" in seen_head and json.loads(seen_body)["prompt"] == "hi"
        assert Fallback.handed == []
        writer.close()

    run(main())


def test_chunked_stream_passes_through_byte_for_byte_as_it_comes():
    release = asyncio.Event()

    async def handler(reader, writer, engine):
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n8\r\ndata: 1\n\r\n"
        )
        await writer.drain()
        await release.wait()
        writer.write(b"8\r\ndata: 2\n\r\n0\r\n\r\n")

    async def main():
        _engine, _adapter, port = await setup(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/v1/chat/completions", {"messages": [], "model": "m"}))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"transfer-encoding: chunked" in head.lower()
        # The first event arrives while the engine is still holding the second.
        assert await asyncio.wait_for(reader.readexactly(13), 5) == b"8\r\ndata: 1\n\r\n"
        release.set()
        rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        assert rest == b"8\r\ndata: 2\n\r\n0\r\n\r\n"
        writer.close()

    run(main())


def test_invocations_body_with_a_model_is_routed_by_its_shape_on_the_fast_path():
    async def handler(reader, writer, engine):
        writer.write(answer(b"{}"))

    async def main():
        engine, _adapter, port = await setup(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/invocations", {"messages": [], "model": "m"}))
        await read_response(reader)
        head = engine.requests[0][0]
        assert head.startswith(b"POST /v1/chat/completions HTTP/1.1")
        assert b"content-type: application/json" in head and Fallback.handed == []
        writer.close()

    run(main())


# What goes to uvicorn ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /ready HTTP/1.1\r\nhost: x\r\n\r\n",  # readiness: the app's
        post("/invocations", {"prompt": "p"}),  # no model to fill in: the app's
        post("/invocations", {"instances": [1], "model": "m"}),
        post("/v1/completions", {"prompt": "x" * 2000, "model": "m"}),  # over max_body: 413
        b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /v1/models HTTP/1.0\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong\r\n\r\n",
    ],
)
def test_requests_needing_the_app_are_handed_over_with_every_byte(request_bytes):
    async def handler(reader, writer, engine):
        writer.write(answer(b"{}"))

    async def main():
        engine, _adapter, port = await setup(handler, api_key=KEY.encode())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 418")
        assert Fallback.handed == [request_bytes] and engine.requests == []
        writer.close()

    run(main())


def test_the_right_key_is_served_fast_and_not_forwarded_on_a_cloud():
    async def handler(reader, writer, engine):
        writer.write(answer(b"{}"))

    async def main():
        engine, _adapter, port = await setup(handler, api_key=KEY.encode())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /v1/models HTTP/1.1\r\nauthorization: Bearer {KEY}\r\n\r\n".encode())
        head, _ = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200") and Fallback.handed == []
        assert b"authorization" not in engine.requests[0][0].lower()
        writer.close()

    run(main())


def test_over_the_connection_cap_the_request_goes_to_uvicorn_for_its_503():
    async def handler(reader, writer, engine):
        writer.write(answer(b"{}"))

    async def main():
        engine = Engine(handler)
        adapter = Adapter(settings(await engine.start()), limit=1)
        port = await adapter.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/models HTTP/1.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 418") and engine.requests == []
        writer.close()

    run(main())


# Failures ---------------------------------------------------------------------------------


def test_client_hang_up_mid_response_closes_the_engine_connection():
    async def handler(reader, writer, engine):
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await reader.read()  # until the adapter hangs up too
        engine.closed.set()

    async def main():
        engine, _adapter, port = await setup(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/v1/completions", {"prompt": "p", "model": "m"}))
        await asyncio.wait_for(reader.readuntil(b"abc\r\n"), 5)
        writer.close()
        await asyncio.wait_for(engine.closed.wait(), 5)  # vLLM would abort the generation

    run(main())


def test_engine_closing_mid_response_closes_the_client_connection():
    async def handler(reader, writer, engine):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
        await writer.drain()
        raise ConnectionResetError  # the engine dies

    async def main():
        _engine, _adapter, port = await setup(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/v1/completions", {"prompt": "p", "model": "m"}))
        received = await asyncio.wait_for(reader.read(-1), 5)  # returns at EOF only
        assert received.endswith(b"\r\n\r\n0123456789")  # cut short, never "complete"
        writer.close()

    run(main())


def test_an_sse_stream_broken_between_events_ends_with_an_error_event():
    async def handler(reader, writer, engine):
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n8\r\ndata: 1\n\r\n"
        )
        await writer.drain()
        raise ConnectionResetError

    async def main():
        _engine, _adapter, port = await setup(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/v1/completions", {"prompt": "p", "model": "m", "stream": True}))
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5)
        assert b"engine_unavailable" in body and body.startswith(b"8\r\ndata: 1\n\r\n")
        writer.close()

    run(main())


def test_engine_unreachable_is_503_and_silent_engine_is_504():
    async def silent(reader, writer, engine):
        await reader.read()

    async def main():
        engine, _adapter, port = await setup(silent, engine_timeout=0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/models HTTP/1.1\r\n\r\n")
        head, body = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 504") and b"engine_timeout" in body
        engine.server.close()  # nothing listens there any more
        await engine.server.wait_closed()
        writer.write(b"GET /v1/models HTTP/1.1\r\n\r\n")  # same client connection: kept
        head, body = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 503") and b"engine_unavailable" in body
        writer.close()

    run(main())


def test_a_slow_reader_holds_the_engine_back_instead_of_filling_memory():
    total, piece = 64 * 1024 * 1024, 256 * 1024

    async def handler(reader, writer, engine):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        block = b"x" * piece
        for _ in range(total // piece):
            writer.write(block)
            await writer.drain()
            engine.sent += piece

    async def main():
        engine, adapter, port = await setup(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=piece)
        writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
        last = -1
        for _ in range(100):  # until the engine stops making progress (bounded)
            await asyncio.sleep(0.05)
            if engine.sent == last:
                break
            last = engine.sent
        assert engine.sent < total // 2, "the adapter kept reading from the engine"
        (client,) = adapter.state.connections
        assert client.transport.get_write_buffer_size() < 4 * 1024 * 1024
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        received = 0  # reading again lets the rest through
        while received < total and (chunk := await asyncio.wait_for(reader.read(piece), 5)):
            received += len(chunk)
        assert received == total and engine.sent == total
        writer.close()

    run(main())


# Deadlines and shutdown -------------------------------------------------------------------


def test_a_head_not_received_in_time_is_408_and_an_idle_shutdown_closes_at_once():
    async def handler(reader, writer, engine):
        writer.write(answer(b"{}"))

    async def main():
        _engine, adapter, port = await setup(handler, header_timeout=0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/mod")  # and nothing more
        assert (await asyncio.wait_for(reader.read(-1), 5)).startswith(b"HTTP/1.1 408")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/models HTTP/1.1\r\n\r\n")
        await read_response(reader)
        for connection in list(adapter.state.connections):
            connection.shutdown()
        assert await asyncio.wait_for(reader.read(-1), 5) == b""

    run(main())


def test_shutdown_while_busy_finishes_the_response_then_closes():
    release = asyncio.Event()

    async def handler(reader, writer, engine):
        await release.wait()
        writer.write(answer(b"{}"))

    async def main():
        engine, adapter, port = await setup(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/models HTTP/1.1\r\n\r\n")
        while not engine.requests:
            await asyncio.sleep(0.01)
        for connection in list(adapter.state.connections):
            connection.shutdown()
        release.set()
        head, body = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200") and body == b"{}"
        assert await asyncio.wait_for(reader.read(-1), 5) == b""

    run(main())


# Wiring -----------------------------------------------------------------------------------


def test_routes_a_platform_claims_stay_with_the_app():
    from mdeploy.serve.config import load_config
    from mdeploy.serve.fastpath import fast_settings

    env = {"AIP_HEALTH_ROUTE": "/health", "AIP_PREDICT_ROUTE": "/v1/completions"}
    vertex = fast_settings(load_config({**env, "AIP_HTTP_PORT": "8080"}), 75)
    assert b"/health" not in vertex.get_routes  # Vertex's readiness, answered by the app
    assert b"/v1/completions" not in vertex.post_routes
    assert vertex.raw_predict_route == b"/v1/completions" and vertex.invoke_route is None
    sagemaker = fast_settings(load_config({}, ["serve"], platform="sagemaker"), 75)
    assert sagemaker.invoke_route == b"/invocations" and b"/health" in sagemaker.get_routes
    assert not sagemaker.forward_authorization


def test_the_server_uses_the_fast_path_unless_switched_off():
    from mdeploy.serve.config import load_config
    from mdeploy.serve.server import _protocol

    assert _protocol(load_config({})).__name__ == "FastProtocol"
    assert _protocol(load_config({"MDEPLOY_FAST_PATH": "0"})).__name__.startswith("HeaderDeadline")


def test_shutdown_while_a_body_arrives_serves_that_request_then_closes():
    async def handler(reader, writer, engine):
        writer.write(answer(b"{}"))

    async def main():
        _engine, adapter, port = await setup(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = post("/v1/completions", {"prompt": "p", "model": "m"})
        writer.write(request[:-5])
        while not any(c.pending for c in adapter.state.connections):
            await asyncio.sleep(0.01)
        for connection in list(adapter.state.connections):
            connection.shutdown()
        writer.write(request[-5:])
        head, _ = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.read(-1), 5) == b""

    run(main())


def test_a_pooled_connection_the_engine_drops_unanswered_is_retried_once_on_a_fresh_one():
    async def handler(reader, writer, engine):
        if len(engine.requests) == 2 and engine.connections == 1:
            raise ConnectionResetError  # closed as the reused connection was written to
        writer.write(answer(b"{}"))

    async def main():
        engine, _adapter, port = await setup(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):
            writer.write(b"GET /v1/models HTTP/1.1\r\n\r\n")
            head, _ = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200")
        assert engine.connections == 2 and len(engine.requests) == 3
        writer.close()

    run(main())
