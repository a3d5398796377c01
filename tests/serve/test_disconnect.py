"""`until_disconnect`: a hang-up cancels the engine work, through the protocol's Hangup or,
under another server, a watcher reading the ASGI `http.disconnect`."""

from __future__ import annotations

import asyncio

import pytest

from mdeploy.serve.asgi import ClientDisconnected
from mdeploy.serve.protocol import Hangup
from mdeploy.serve.proxy import until_disconnect


def receive_then_disconnect(after: float):
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.sleep(after)
        return {"type": "http.disconnect"}

    return receive


async def never_disconnect():
    await asyncio.sleep(3600)


def test_the_watcher_cancels_work_when_the_client_leaves():
    async def main() -> None:
        cancelled = asyncio.Event()

        async def work() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with pytest.raises(ClientDisconnected):
            await asyncio.wait_for(until_disconnect(receive_then_disconnect(0.05), work()), 5)
        assert cancelled.is_set()

    asyncio.run(main())


def test_the_hangup_cancels_work_without_a_watcher():
    async def main() -> None:
        hangup = Hangup()

        async def fire_soon() -> None:
            await asyncio.sleep(0.05)
            hangup.fire()

        firing = asyncio.ensure_future(fire_soon())
        with pytest.raises(ClientDisconnected):
            await asyncio.wait_for(until_disconnect(never_disconnect, asyncio.sleep(10), hangup), 5)
        await firing
        assert hangup.callback is None

    asyncio.run(main())


def test_a_client_already_gone_never_starts_the_work():
    async def main() -> None:
        hangup = Hangup()
        hangup.fire()
        started = []

        async def work() -> None:
            started.append(True)

        with pytest.raises(ClientDisconnected):
            await until_disconnect(never_disconnect, work(), hangup)
        assert not started

    asyncio.run(main())


@pytest.mark.parametrize("with_hangup", [True, False])
def test_finished_work_returns_and_leaves_nothing_behind(with_hangup):
    async def main() -> None:
        hangup = Hangup() if with_hangup else None

        async def work() -> int:
            await asyncio.sleep(0)
            return 42

        assert await until_disconnect(never_disconnect, work(), hangup) == 42
        await asyncio.sleep(0.01)
        if hangup is not None:
            assert hangup.callback is None
            hangup.fire()  # a late hang-up after the answer cancels nothing
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not [t for t in others if not t.done()]

    asyncio.run(main())


def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def main() -> None:
        task = asyncio.ensure_future(
            until_disconnect(never_disconnect, asyncio.sleep(10), Hangup())
        )
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
