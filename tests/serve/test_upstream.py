"""The loopback HTTP/1.1 client against scripted servers: framing, reuse, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from mdeploy.serve.upstream import BodyBroken, EngineTimeout, EngineUnavailable, Pool

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """Reads one request head (and a Content-Length body) at a time; `reply` answers it and
    returns whether to keep the connection open."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.reply(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def run(reply: Reply, scenario: Callable[[Pool, Server], Awaitable[None]]) -> Server:
    """Serve `reply` on a free loopback port and run `scenario` against it."""
    server = Server(reply)

    async def main() -> None:
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        pool = Pool("127.0.0.1", port, connect_timeout=2)
        try:
            await scenario(pool, server)
        finally:
            pool.close()
            listener.close()

    asyncio.run(main())
    return server


def fixed(response: bytes, keep: bool = True) -> Reply:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response)
        await writer.drain()
        return keep

    return reply


OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def test_content_length_body_and_connection_reuse():
    async def scenario(pool: Pool, server: Server) -> None:
        for _ in range(3):
            response = await pool.send("POST", "/v1/x?a=1", [(b"x-k", b"v")], b"body", timeout=2)
            assert (response.status, await response.read()) == (200, b"{}")
            assert response.header(b"content-type") == b"application/json"
            response.close()

    server = run(fixed(OK), scenario)
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/x?a=1 HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"content-length: 4\r\n" in first and b"x-k: v\r\n" in first
    assert first.endswith(b"\r\n\r\nbody")


def test_chunked_body_already_read_is_yielded_in_one_piece():
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ntrailer: x\r\n\r\n"
    response_bytes = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body

    async def scenario(pool: Pool, server: Server) -> None:
        response = await pool.send("GET", "/s", [], b"", timeout=2)
        # Both chunks arrived together: one piece, so the client gets them in one send.
        assert [piece async for piece in response.body()] == [b"hello world"]
        response.close()
        again = await pool.send("GET", "/s", [], b"", timeout=2)  # trailers fully consumed
        assert await again.read() == b"hello world"
        again.close()

    assert run(fixed(response_bytes), scenario).connections == 1


def test_close_delimited_body_and_connection_close_are_not_reused():
    async def scenario(pool: Pool, server: Server) -> None:
        for _ in range(2):
            response = await pool.send("GET", "/", [], b"", timeout=2)
            assert await response.read() == b"until the end"
            response.close()

    server = run(fixed(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", keep=False), scenario)
    assert server.connections == 2
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"

    async def twice(pool: Pool, server: Server) -> None:
        for _ in range(2):
            response = await pool.send("GET", "/", [], b"", timeout=2)
            assert await response.read() == b"{}"
            response.close()

    assert run(fixed(closing, keep=False), twice).connections == 2


def test_informational_answers_are_skipped_and_bodiless_statuses_read_nothing():
    preface = b"HTTP/1.1 100 Continue\r\n\r\n"

    async def scenario(pool: Pool, server: Server) -> None:
        response = await pool.send("POST", "/", [], b"{}", timeout=2)
        assert response.status == 204 and await response.read() == b""
        response.close()
        head = await pool.send("HEAD", "/", [], b"", timeout=2)
        assert head.status == 204
        head.close()

    server = run(fixed(preface + b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"), scenario)
    assert server.connections == 1


def test_an_idle_connection_closed_by_the_peer_is_replaced():
    async def scenario(pool: Pool, server: Server) -> None:
        for _ in range(3):
            response = await pool.send("GET", "/", [], b"", timeout=2)
            assert await response.read() == b"{}"
            response.close()
            await asyncio.sleep(0.05)  # the close reaches the pool while the connection idles

    server = run(fixed(OK, keep=False), scenario)
    assert server.connections == 3 and len(server.requests) == 3


def test_a_reused_connection_that_dies_unanswered_is_retried_once():
    answered = []

    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        if len(answered) == 1:  # second request: hang up without a word, like a stale socket
            answered.append("dropped")
            return False
        answered.append("ok")
        writer.write(OK)
        await writer.drain()
        return True

    async def scenario(pool: Pool, server: Server) -> None:
        for _ in range(2):
            response = await pool.send("POST", "/", [], b"{}", timeout=2)
            assert await response.read() == b"{}"
            response.close()

    server = run(reply, scenario)
    assert answered == ["ok", "dropped", "ok"] and server.connections == 2


def test_refused_connection_is_unavailable():
    async def scenario() -> None:
        pool = Pool("127.0.0.1", 1, connect_timeout=1)
        with pytest.raises(EngineUnavailable):
            await pool.send("GET", "/", [], b"", timeout=1)

    asyncio.run(scenario())


def test_silence_is_a_timeout():
    async def mute(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async def scenario(pool: Pool, server: Server) -> None:
        with pytest.raises(EngineTimeout):
            await pool.send("GET", "/", [], b"", timeout=0.2)

    run(mute, scenario)


def test_garbage_instead_of_http_is_unavailable():
    async def scenario(pool: Pool, server: Server) -> None:
        with pytest.raises(EngineUnavailable):
            await pool.send("GET", "/", [], b"", timeout=1)

    run(fixed(b"SSH-2.0-OpenSSH\r\n\r\n", keep=False), scenario)


def test_a_body_cut_short_is_broken_and_not_reused():
    async def scenario(pool: Pool, server: Server) -> None:
        response = await pool.send("GET", "/", [], b"", timeout=1)
        with pytest.raises(BodyBroken):
            await response.read()
        response.close()
        response = await pool.send("GET", "/", [], b"", timeout=1)
        with pytest.raises(BodyBroken):
            [piece async for piece in response.body()]
        response.close()

    cut = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this"
    assert run(fixed(cut, keep=False), scenario).connections == 2


def test_a_stalled_stream_times_out_between_chunks():
    async def stall(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\none\r\n")
        await writer.drain()
        await asyncio.sleep(5)
        return False

    async def scenario(pool: Pool, server: Server) -> None:
        response = await pool.send("GET", "/", [], b"", timeout=0.3)
        pieces = []
        with pytest.raises(EngineTimeout):
            async for piece in response.body():
                pieces.append(piece)
        assert pieces == [b"one"]
        response.close()

    run(stall, scenario)


def test_a_slow_but_steady_stream_is_not_a_timeout():
    # Each chunk comes well within the timeout; the whole stream takes several timeouts.
    # The read deadline is per read, even though the client keeps one timer per exchange.
    async def steady(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(8):
            writer.write(b"1\r\n" + str(i).encode() + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def scenario(pool: Pool, server: Server) -> None:
        response = await pool.send("GET", "/", [], b"", timeout=0.3)
        assert await response.read() == b"01234567"
        response.close()

    run(steady, scenario)


def test_time_spent_away_from_the_engine_is_not_a_timeout():
    # A slow client (the adapter waiting to send a chunk on) is not the engine's silence.
    async def scenario(pool: Pool, server: Server) -> None:
        response = await pool.send("GET", "/", [], b"", timeout=0.2)
        await asyncio.sleep(0.5)  # longer than the timeout, between two reads
        assert await response.read() == b"hello"
        response.close()

    run(fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"), scenario)


def test_a_cancelled_read_is_a_cancellation_not_a_timeout():
    async def mute(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async def scenario(pool: Pool, server: Server) -> None:
        task = asyncio.ensure_future(pool.send("GET", "/", [], b"", timeout=10))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(mute, scenario)


@pytest.mark.parametrize(
    "splits",
    [1, 2, 3, 7],
    ids=lambda n: f"every {n} bytes",
)
def test_chunks_split_anywhere_decode_the_same(splits):
    # Chunk sizes, data, CRLFs and trailers cut at every position across reads.
    body = b"3\r\none\r\na;x=y\r\n0123456789\r\n0\r\nt: 1\r\nu: 2\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"

    async def trickle(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(head)
        for i in range(0, len(body), splits):
            writer.write(body[i : i + splits])
            await writer.drain()
            await asyncio.sleep(0.001)
        return True

    async def scenario(pool: Pool, server: Server) -> None:
        for _ in range(2):  # the connection is reused: the message was consumed exactly
            response = await pool.send("GET", "/", [], b"", timeout=2)
            assert await response.read() == b"one0123456789"
            response.close()
        assert server.connections == 1

    run(trickle, scenario)


def test_a_chunk_without_its_crlf_is_broken():
    bad = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\noneXX0\r\n\r\n"

    async def scenario(pool: Pool, server: Server) -> None:
        response = await pool.send("GET", "/", [], b"", timeout=1)
        with pytest.raises(BodyBroken):
            await response.read()
        response.close()

    run(fixed(bad, keep=False), scenario)
