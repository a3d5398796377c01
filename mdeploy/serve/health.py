"""
Readiness: is the model loaded? Asked of the engine, remembered briefly, shared by probes.

Liveness needs no state (the adapter answering is the proof), so only readiness lives here.
Every platform probes on its own schedule (SageMaker /ping, Vertex's health route, Azure's
readiness probe, Kubernetes), often several at once; one engine `/health` call per TTL answers
them all, and concurrent probes wait on the same call instead of each opening their own.
Once the owned engine process has exited, readiness is false without asking anyone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["Readiness"]

Probe = Callable[[], Awaitable[bool]]


class Readiness:
    """
    Cached readiness of the engine.

    `Readiness(probe, ttl=1.0)`: `probe()` returns True when the engine answers its health
    route with 200; its answer (either way) is reused for `ttl` seconds.
    """

    def __init__(
        self, probe: Probe, *, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._probe = probe
        self._ttl = ttl
        self._clock = clock
        self._value = False
        self._expires = float("-inf")
        self._inflight: asyncio.Future[bool] | None = None
        self.engine_exit: str | None = None

    def mark_engine_exited(self, reason: str) -> None:
        """Record that the engine is gone for good; readiness stays false from now on."""
        self.engine_exit = reason

    async def check(self) -> tuple[bool, str]:
        """Return (ready, reason); the reason is what a person reads in the probe's body."""
        if self.engine_exit is not None:
            return False, self.engine_exit
        if self._clock() >= self._expires:
            if self._inflight is None:
                self._inflight = asyncio.ensure_future(self._refresh())
            # shield: a probe whose client hangs up must not cancel the shared call.
            await asyncio.shield(self._inflight)
        if self.engine_exit is not None:
            return False, self.engine_exit
        return self._value, "engine ready" if self._value else "engine not ready (loading?)"

    async def _refresh(self) -> bool:
        try:
            value = await self._probe()
        except Exception:  # a probe must never fail the caller; unknown means not ready
            value = False
        self._value, self._expires, self._inflight = value, self._clock() + self._ttl, None
        return value
