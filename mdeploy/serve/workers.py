"""
Several adapter processes on one port (MDEPLOY_WORKERS > 1), for hosts with cores to spare.

One adapter process proxies on one core. On a GPU host serving many concurrent streams,
every token of every stream goes through it, so that core, not the GPU, can set the limit
(issue 15). With N workers, each is the whole adapter (fast path and app) on its own listening
socket bound with SO_REUSEPORT: the kernel spreads new connections over them, and no process
hands bytes to another.

The supervisor (the process the container started) owns what must exist once, and the exit:

- the sockets, bound before any worker starts, so a port in use is one clear error;
- the engine it starts (when it owns one), which it watches: when the engine exits, the workers
  are stopped and the supervisor exits 1, so the platform restarts the container (as one
  adapter process does);
- SIGTERM / SIGINT: passed to every worker, which stops accepting and drains its in-flight
  requests for the grace period, as one process does; then the engine is stopped and the
  supervisor ends by that signal;
- a worker that dies unasked is started again on its socket, up to `MAX_RESTARTS` times a
  minute; past that the supervisor stops everything and exits 1.

The connection cap and the Vertex fan-out connections are totals: each worker gets its share
(rounded up). Readiness is each worker's own engine probe (cached for MDEPLOY_READY_TTL).
Workers are forked, so they share the supervisor's imported code; each then runs its own
event loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from mdeploy.serve.config import ServeConfig
from mdeploy.serve.engine import EngineProcess

__all__ = ["MAX_RESTARTS", "listening_sockets", "share", "supervise"]

log = logging.getLogger("mdeploy.serve")

MAX_RESTARTS = 5  # per worker slot, in any 60 s
_RESTART_WINDOW_S = 60.0
_POLL_S = 0.1
_PR_SET_PDEATHSIG = 1
EXIT_FAILED = 1


def share(config: ServeConfig) -> ServeConfig:
    """One worker's settings: the totals divided between `config.workers` processes."""
    n = config.workers
    return replace(
        config,
        max_connections=math.ceil(config.max_connections / n),
        fanout_connections=math.ceil(config.fanout_connections / n),
    )


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets listening on one port with SO_REUSEPORT (port 0: the first one's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(2048)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


# One adapter on given sockets, until it stops: `server.serve` (passed in: no import circle).
Serve = Callable[[ServeConfig, EngineProcess | None, list[socket.socket]], int]


def supervise(config: ServeConfig, command: Sequence[str] | None, serve: Serve) -> int:
    """Start the engine (if owned) and the workers; return the exit code (see module doc)."""
    # Imported once here, shared by every forked worker.
    import uvicorn  # noqa: F401

    import mdeploy.serve.app
    import mdeploy.serve.fastpath  # noqa: F401

    try:
        sockets = listening_sockets(config.host, config.port, config.workers)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc.strerror or exc)
        return EXIT_FAILED
    engine = EngineProcess.start(command) if command else None
    supervisor = _Supervisor(share(config), sockets, engine, serve)
    return supervisor.run()


class _Supervisor:
    def __init__(
        self,
        config: ServeConfig,
        sockets: list[socket.socket],
        engine: EngineProcess | None,
        serve: Serve,
    ) -> None:
        self.config = config
        self.serve = serve
        self.sockets = sockets
        self.engine = engine
        self.pids: dict[int, int] = {}  # pid → worker slot
        self.restarts: list[list[float]] = [[] for _ in sockets]
        self.stop_signal: int | None = None

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        try:
            code = self._start_all() or self._watch()
            self._stop_workers()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.engine is not None and self.engine.poll() is None:
                log.info("engine stopped (exit code %s)", self.engine.stop())
            for sock in self.sockets:
                sock.close()
        if self.stop_signal is not None:
            _end_by(self.stop_signal)
        return code

    def _start_all(self) -> int:
        """Fork every worker; 1 (after logging why) when the system refuses a process."""
        for slot in range(len(self.sockets)):
            try:
                self._start(slot)
            except OSError as exc:
                log.error("cannot start worker %d: %s", slot + 1, exc.strerror or exc)
                return EXIT_FAILED
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_signal = signum

    def _watch(self) -> int:
        """Until a stop signal (0), an engine exit or a worker failing too often (1)."""
        while self.stop_signal is None:
            if self.engine is not None and (code := self.engine.poll()) is not None:
                log.error(
                    "engine exited with code %s; exiting so the platform restarts the container",
                    code,
                )
                return EXIT_FAILED
            for pid, status in _reaped(list(self.pids)):
                slot = self.pids.pop(pid, None)
                if slot is None:
                    continue
                log.warning("worker %d (pid %d) %s", slot + 1, pid, _how_it_ended(status))
                if not self._may_restart(slot):
                    log.error(
                        "worker %d failed %d times within %g s; exiting",
                        slot + 1,
                        MAX_RESTARTS,
                        _RESTART_WINDOW_S,
                    )
                    return EXIT_FAILED
                try:
                    self._start(slot)
                except OSError as exc:
                    log.error("cannot restart worker %d: %s", slot + 1, exc.strerror or exc)
                    return EXIT_FAILED
            time.sleep(_POLL_S)
        return 0

    def _may_restart(self, slot: int) -> bool:
        now = time.monotonic()
        recent = [t for t in self.restarts[slot] if now - t < _RESTART_WINDOW_S]
        recent.append(now)
        self.restarts[slot] = recent
        return len(recent) <= MAX_RESTARTS

    def _start(self, slot: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the worker (tested through processes)
            _worker(self.serve, self.config, self.sockets, slot)
        self.pids[pid] = slot
        log.info("worker %d started (pid %d)", slot + 1, pid)

    def _stop_workers(self) -> None:
        """SIGTERM each worker; wait out their drain (grace + margin), then SIGKILL."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace_seconds + 5
        while self.pids and time.monotonic() < deadline:
            for pid, _ in _reaped(list(self.pids)):
                self.pids.pop(pid, None)
            time.sleep(_POLL_S / 2)
        for pid in list(self.pids):
            log.warning("worker pid %d did not stop in time; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pids.clear()


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _worker(serve: Serve, config: ServeConfig, sockets: list[socket.socket], slot: int) -> None:
    """In the forked worker: serve on this slot's socket, then leave without cleanup."""
    code = EXIT_FAILED
    try:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own when it starts
        _die_with_supervisor()
        mine = sockets[slot]
        for sock in sockets:
            if sock is not mine:
                sock.close()
        code = serve(config, None, [mine])
    except BaseException:  # a worker must never return into the supervisor's code
        log.exception("worker %d failed", slot + 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with_supervisor() -> None:
    """Linux: SIGKILL this worker when the supervisor dies (no orphan holding the port)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _reaped(pids: Sequence[int]) -> list[tuple[int, int]]:
    """
    (pid, wait status) of each of `pids` that has ended, without blocking. Never waitpid(-1):
    that would also reap the engine, whose exit code its Popen must read.
    """
    ended = []
    for pid in list(pids):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done == pid:
            ended.append((pid, status))
    return ended


def _how_it_ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}; starting it again"
    return f"exited with code {os.waitstatus_to_exitcode(status)}; starting it again"


def _end_by(signum: int) -> None:
    """End this process by `signum`, as a container runtime expects after SIGTERM."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
