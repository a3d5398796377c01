"""Readiness caching: one engine probe per TTL, shared by concurrent probes."""

from __future__ import annotations

import asyncio

from mdeploy.serve.health import Readiness


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Probe:
    """Counts calls; answers `ready`; optionally takes time, to make probes overlap."""

    def __init__(self, ready: bool = True, delay: float = 0.0) -> None:
        self.ready, self.delay, self.calls = ready, delay, 0

    async def __call__(self) -> bool:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.ready


def test_answers_are_reused_for_the_ttl():
    async def scenario():
        clock, probe = Clock(), Probe(ready=False)
        readiness = Readiness(probe, ttl=1.0, clock=clock)
        assert (await readiness.check())[0] is False
        probe.ready = True
        clock.now = 0.5
        assert (await readiness.check())[0] is False  # cached, engine not asked
        assert probe.calls == 1
        clock.now = 1.01
        assert await readiness.check() == (True, "engine ready")
        assert probe.calls == 2

    asyncio.run(scenario())


def test_concurrent_probes_share_one_engine_call():
    async def scenario():
        probe = Probe(delay=0.05)
        readiness = Readiness(probe, ttl=1.0)
        answers = await asyncio.gather(*(readiness.check() for _ in range(20)))
        assert probe.calls == 1 and all(ok for ok, _ in answers)

    asyncio.run(scenario())


def test_a_failing_probe_means_not_ready():
    async def boom() -> bool:
        raise RuntimeError("engine socket exploded")

    async def scenario():
        return await Readiness(boom, ttl=1.0).check()

    assert asyncio.run(scenario())[0] is False


def test_an_exited_engine_is_never_ready_again():
    async def scenario():
        probe = Probe(ready=True)
        readiness = Readiness(probe, ttl=0.0)
        assert (await readiness.check())[0]
        readiness.mark_engine_exited("engine exited with code 3")
        assert await readiness.check() == (False, "engine exited with code 3")

    asyncio.run(scenario())
