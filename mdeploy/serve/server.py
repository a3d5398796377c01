"""
Run the adapter: start the engine when we own it, serve with uvicorn, exit with a meaning.

Exit codes: 0 after a normal stop; 1 when the owned engine exited (the platform should restart
the container); on SIGTERM / SIGINT uvicorn drains in-flight requests for the grace period,
the engine is stopped, and the process ends by that signal, as a container runtime expects.
The same holds with several workers (`workers.py`), where the supervisor gives the code; it
also exits 1 when a worker keeps dying or the port cannot be bound.

uvicorn runs on uvloop with the httptools parser when they are installed (`mdeploy[serve]`
pulls `uvicorn[standard]`; the vLLM base image has them through `fastapi[standard]`), which
more than halves the CPU each request costs; without them it falls back to asyncio and h11.
The protocol adds a header deadline and write corking (`protocol.py`); the body deadline, the
API key and the Vertex fan-out bound are the app's (`app.py`); all limits are in `config.py`.
In front of it all sits the fast path (`fastpath.py`): routes that need no translation are
proxied at the protocol level, bytes passed through, at about half the CPU per request;
everything else is handed to uvicorn's protocol and the app (MDEPLOY_FAST_PATH=0: always).
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping, Sequence

from mdeploy.serve.config import ServeConfig
from mdeploy.serve.engine import EngineProcess, engine_command
from mdeploy.serve.protocol import with_header_deadline

__all__ = ["configure_logging", "run", "serve", "summary"]

log = logging.getLogger("mdeploy.serve")

# Longer than the 60 s idle timeout of the load balancers in front of every cloud, so the
# adapter never closes a kept-alive connection the balancer is about to reuse (a 502).
KEEP_ALIVE_S = 75
_SECRET_FLAG = re.compile(r"key|token|secret|password", re.IGNORECASE)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the adapter's log lines, access lines included, to stderr (once)."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     mdeploy %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def summary(config: ServeConfig, engine_cmd: Sequence[str] | None = None) -> list[str]:
    """Say what was detected and what will be served, one fact per line."""
    contract = config.contract
    routes = ", ".join(f"{name} {path}" for name, path in contract.routes().items())
    engine = (
        f"started by the adapter: {' '.join(masked(engine_cmd))}"
        if engine_cmd
        else "already running (not owned)"
    )
    return [
        f"platform: {contract.platform} ({config.detection.reason})",
        f"listening: http://{config.host}:{config.port}",
        f"routes: {routes}; OpenAI routes /v1/chat/completions, /v1/completions, /v1/models",
        f"engine: {config.engine_url}, {engine}",
        f"limits: body {config.max_body_bytes} bytes, engine timeout {config.engine_timeout:g} s, "
        f"drain {config.grace_seconds:g} s on SIGTERM, headers {config.header_timeout:g} s, "
        f"body {config.body_timeout:g} s, {config.max_connections} connections, "
        f"{config.max_instances} instances over {config.fanout_connections} engine connections",
        "auth: "
        + (
            "Authorization: Bearer key required (MDEPLOY_API_KEY) except liveness/readiness"
            if config.api_key
            else "none in the adapter (MDEPLOY_API_KEY unset)"
        ),
        f"http: {_http_stack()}",
        _workers_line(config),
    ]


def _workers_line(config: ServeConfig) -> str:
    if config.workers == 1:
        return "workers: 1 process (MDEPLOY_WORKERS)"
    return (
        f"workers: {config.workers} processes on one port (SO_REUSEPORT); limits above are "
        "totals, split between them"
    )


def _http_stack() -> str:
    """Which event loop and HTTP parser uvicorn will use (uvloop/httptools when installed)."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} loop, {parser} parser"


def _protocol(config: ServeConfig) -> type:
    """
    The HTTP protocol: the fast path (`fastpath.py`) in front of uvicorn's protocol with the
    header deadline, or that protocol alone with MDEPLOY_FAST_PATH=0 or without httptools.
    """
    slow = with_header_deadline(config.header_timeout)
    if not config.fast_path:
        return slow
    from mdeploy.serve.fastpath import fast_protocol, fast_settings

    return fast_protocol(fast_settings(config, KEEP_ALIVE_S), slow)


def _log_lines(lines: list[str]) -> None:
    for line in lines:
        log.info("%s", line)


def masked(command: Sequence[str]) -> list[str]:
    """Hide the values of flags that look secret (e.g. `--api-key`), for printing."""
    out: list[str] = []
    hide_next = False
    for arg in command:
        flag, eq, _ = arg.partition("=")
        if hide_next:
            out.append("***")
        elif eq and flag.startswith("--") and _SECRET_FLAG.search(flag):
            out.append(f"{flag}=***")
        else:
            out.append(arg)
        hide_next = not eq and arg.startswith("--") and bool(_SECRET_FLAG.search(arg))
    return out


def run(
    config: ServeConfig,
    *,
    environ: Mapping[str, str] | None = None,
    announce: Callable[[list[str]], None] | None = None,
) -> int:
    """
    Serve until stopped; return the process exit code.

    `announce` receives the startup summary (default: logged to stderr). Raises
    EngineConfigError when the engine cannot be started as configured. With more than one
    worker (MDEPLOY_WORKERS) the processes are supervised by `workers.py`.
    """
    configure_logging()
    environ = os.environ if environ is None else environ
    command = (
        engine_command(config.platform, environ, port=config.engine_port)
        if config.owns_engine
        else None
    )
    (announce or _log_lines)(summary(config, command))
    if config.workers > 1:
        from mdeploy.serve.workers import supervise

        return supervise(config, command, serve)
    process = EngineProcess.start(command) if command else None
    try:
        return serve(config, process)
    finally:
        if process is not None and process.poll() is None:
            process.stop()


def serve(
    config: ServeConfig, process: EngineProcess | None, sockets: list[socket.socket] | None = None
) -> int:
    """
    Run one adapter (fast path + app) on uvicorn until it stops; return its exit code.

    `process`: the engine this adapter watches and stops (None when it owns none, or when a
    supervisor does); `sockets`: already listening sockets to serve instead of binding.
    """
    import uvicorn  # the heavy import happens only when serving

    from mdeploy.serve.app import Adapter

    adapter = Adapter(config, engine=process)
    server = uvicorn.Server(
        uvicorn.Config(
            adapter,
            host=config.host,
            port=config.port,
            lifespan="on",
            # uvloop when installed (uvicorn's "auto"); the protocol is uvicorn's automatic
            # choice (httptools when installed, else h11) with a header deadline added.
            loop="auto",
            http=_protocol(config),
            limit_concurrency=config.max_connections,
            proxy_headers=False,  # nothing reads the client address: skip the middleware
            ws="none",  # no WebSocket route: uvicorn[standard] brings websockets, keep it off
            access_log=False,  # the adapter writes its own, without query strings
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=math.ceil(config.grace_seconds),
        )
    )

    def stop(code: int) -> None:
        del code  # Unused: the adapter keeps its exit code; the server only needs to stop.
        server.should_exit = True

    adapter.on_fatal = stop
    server.run(sockets=sockets)
    return adapter.exit_code
