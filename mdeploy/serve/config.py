"""
The adapter's settings: flags win over `MDEPLOY_*` variables, which win over defaults.

Built once at startup from an environment mapping and explicit overrides, then frozen. Does no
I/O. The one secret it may hold, the API key, is kept out of its repr and never printed.

Variables read here (all optional):

==========================  ======================================================
MDEPLOY_PLATFORM            auto | sagemaker | vertex | azureml | plain
MDEPLOY_ENGINE_URL          an engine already running; the adapter then owns none
MDEPLOY_ENGINE_PORT         loopback port of the engine the adapter starts (8000)
MDEPLOY_MAX_BODY_BYTES      request size limit (6 MiB)
MDEPLOY_ENGINE_TIMEOUT      seconds to wait for engine bytes before a 504 (300)
MDEPLOY_READY_TTL           seconds a readiness answer is reused (1)
MDEPLOY_PROBE_TIMEOUT       seconds one engine /health probe may take (1)
MDEPLOY_GRACE_SECONDS       drain time for in-flight requests on SIGTERM (25)
MDEPLOY_API_KEY             when set, every route but liveness/readiness needs
                            `Authorization: Bearer <key>` (else 401); default:
                            VLLM_API_KEY, the engine's own key, when that is set
MDEPLOY_MAX_INSTANCES       most Vertex `instances` in one predict request (1024);
                            more is answered 413 before any engine call
MDEPLOY_FANOUT_CONNECTIONS  engine connections all Vertex fan-outs share (64)
MDEPLOY_HEADER_TIMEOUT      seconds a client has to send a request's headers (10)
MDEPLOY_BODY_TIMEOUT        seconds a client has to send a request's body (60)
MDEPLOY_MAX_CONNECTIONS     open client connections before new requests get 503 (1024)
MDEPLOY_ACCESS_LOG          1: one access line per request at INFO (default: only 5xx)
MDEPLOY_FAST_PATH           0: every request through the ASGI app (default 1: routes
                            needing no translation are proxied by `fastpath.py`)
MDEPLOY_WORKERS             adapter processes sharing the port (`workers.py`): a
                            number, or auto (default): one per 4 usable cores,
                            1 to 4; the connection and fan-out limits above are
                            totals, split between them
==========================  ======================================================

The grace default stays under SageMaker's 30 s between SIGTERM and SIGKILL. The API key is
for Kubernetes and plain hosts (the target passes its generated Secret); on SageMaker, Vertex
and Azure ML the platform authenticates callers before the container sees them.

The header and body timeouts are deadlines for the whole header block and the whole body, not
for each read, so a client dripping a byte at a time (slowloris) is cut off all the same; the
connection cap bounds the file handles idle or slow clients can hold (probes count against it
too: keep it well above the platform's concurrency, the header timeout clears slow clients).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mdeploy.serve.contract import (
    DEFAULT_MAX_BODY_BYTES,
    PLATFORMS,
    Contract,
    Detection,
    contract_for,
    detect,
)

__all__ = ["ServeConfig", "ServeConfigError", "load_config"]

DEFAULT_ENGINE_PORT = 8000
DEFAULT_HOST = "0.0.0.0"  # Vertex and Azure reach the container on its pod IP, not loopback.


class ServeConfigError(ValueError):
    """A flag or variable has a value the adapter cannot use; the message names it."""


@dataclass(frozen=True)
class ServeConfig:
    """Everything the adapter needs to start; see the module docstring for the variables."""

    detection: Detection
    contract: Contract
    host: str
    port: int
    engine_url: str
    owns_engine: bool
    engine_port: int
    max_body_bytes: int
    engine_timeout: float
    ready_ttl: float
    probe_timeout: float
    grace_seconds: float
    deployed_model_id: str | None
    api_key: str | None = field(default=None, repr=False)
    max_instances: int = 1024
    fanout_connections: int = 64
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 1024
    access_log: bool = False
    fast_path: bool = True
    workers: int = 1

    @property
    def platform(self) -> str:
        return self.contract.platform


def load_config(
    environ: Mapping[str, str],
    argv: Sequence[str] = (),
    *,
    platform: str | None = None,
    host: str | None = None,
    port: int | None = None,
    engine_url: str | None = None,
    max_body_bytes: int | None = None,
    grace_seconds: float | None = None,
) -> ServeConfig:
    """
    Resolve the settings; keyword arguments are the command-line flags (None = not given).

    Raises ServeConfigError naming the flag or variable at fault.
    """
    detection = _detection(platform or environ.get("MDEPLOY_PLATFORM") or "auto", environ, argv)
    try:
        contract = contract_for(detection.platform, environ)
    except ValueError as exc:
        raise ServeConfigError(str(exc)) from None
    engine_port = _int(environ, "MDEPLOY_ENGINE_PORT", DEFAULT_ENGINE_PORT, low=1, high=65535)
    url = engine_url or environ.get("MDEPLOY_ENGINE_URL") or None
    if url is not None:
        _check_engine_url(url)
    if max_body_bytes is not None and max_body_bytes < 1:
        raise ServeConfigError(f"--max-body-bytes {max_body_bytes}: must be at least 1")
    if grace_seconds is not None and grace_seconds < 0:
        raise ServeConfigError(f"--grace {grace_seconds}: must not be negative")
    return ServeConfig(
        detection=detection,
        contract=contract,
        host=host or DEFAULT_HOST,
        port=_checked_port(port) if port is not None else contract.port,
        engine_url=(url or f"http://127.0.0.1:{engine_port}").rstrip("/"),
        owns_engine=url is None,
        engine_port=engine_port,
        max_body_bytes=max_body_bytes
        if max_body_bytes is not None
        else _int(environ, "MDEPLOY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, low=1),
        engine_timeout=_float(environ, "MDEPLOY_ENGINE_TIMEOUT", 300.0),
        ready_ttl=_float(environ, "MDEPLOY_READY_TTL", 1.0, low=0.0),
        probe_timeout=_float(environ, "MDEPLOY_PROBE_TIMEOUT", 1.0),
        grace_seconds=grace_seconds
        if grace_seconds is not None
        else _float(environ, "MDEPLOY_GRACE_SECONDS", 25.0, low=0.0),
        deployed_model_id=environ.get("AIP_DEPLOYED_MODEL_ID") or None,
        api_key=_api_key(environ),
        max_instances=_int(environ, "MDEPLOY_MAX_INSTANCES", 1024, low=1),
        fanout_connections=_int(environ, "MDEPLOY_FANOUT_CONNECTIONS", 64, low=1, high=4096),
        header_timeout=_float(environ, "MDEPLOY_HEADER_TIMEOUT", 10.0),
        body_timeout=_float(environ, "MDEPLOY_BODY_TIMEOUT", 60.0),
        max_connections=_int(environ, "MDEPLOY_MAX_CONNECTIONS", 1024, low=1),
        access_log=_flag(environ, "MDEPLOY_ACCESS_LOG"),
        fast_path=_flag(environ, "MDEPLOY_FAST_PATH", default=True),
        workers=_workers(environ),
    )


MAX_WORKERS = 64
_CORES_PER_AUTO_WORKER = 4  # leave vLLM's own processes (API server, engine core) their cores
_MAX_AUTO_WORKERS = 4


def _workers(environ: Mapping[str, str]) -> int:
    """MDEPLOY_WORKERS: a count, or `auto` (default) from the cores this process may use."""
    raw = environ.get("MDEPLOY_WORKERS", "").strip().lower()
    if raw in ("", "auto"):
        return max(1, min(_MAX_AUTO_WORKERS, usable_cores() // _CORES_PER_AUTO_WORKER))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise ServeConfigError(f"MDEPLOY_WORKERS={raw!r}: expected auto or 1 to {MAX_WORKERS}")
    return int(raw)


def usable_cores() -> int:
    """
    Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota
    (`/sys/fs/cgroup/cpu.max`, how Kubernetes limits and `docker run --cpus` show inside).
    """
    import math
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as limits:
            quota, period = limits.read().split()[:2]
        if quota != "max":
            cores = min(cores or 1, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores or 1


def _api_key(environ: Mapping[str, str]) -> str | None:
    """
    The key, or None when unset or blank; its value never appears in an error.

    VLLM_API_KEY is the fallback: the Kubernetes target puts its generated key there for the
    engine, which then guards only `/v1/*`; reading it here guards every other route too.
    """
    for name in ("MDEPLOY_API_KEY", "VLLM_API_KEY"):
        key = environ.get(name, "").strip()
        if not key:
            continue
        if not key.isascii() or not key.isprintable() or " " in key:
            raise ServeConfigError(
                f"{name} must be printable ASCII without spaces (it is sent as a Bearer token)"
            )
        return key
    return None


def _flag(environ: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ServeConfigError(f"{name}={raw!r}: expected 1 or 0")


def _detection(choice: str, environ: Mapping[str, str], argv: Sequence[str]) -> Detection:
    if choice == "auto":
        return detect(environ, argv)
    if choice not in PLATFORMS:
        raise ServeConfigError(
            f"--platform {choice!r}: expected auto or one of {', '.join(PLATFORMS)}"
        )
    return Detection(choice, "chosen with --platform / MDEPLOY_PLATFORM")  # type: ignore[arg-type]


def _check_engine_url(url: str) -> None:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "http" or not parts.hostname or port == -1:
        raise ServeConfigError(
            f"--engine-url / MDEPLOY_ENGINE_URL {url!r}: expected http://host:port "
            "(the engine is reached over plain HTTP, normally on loopback)"
        )


def _checked_port(port: int) -> int:
    if not 0 < port < 65536:
        raise ServeConfigError(f"--port {port}: not a TCP port")
    return port


def _int(
    environ: Mapping[str, str], name: str, default: int, *, low: int, high: int | None = None
) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ServeConfigError(f"{name}={raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        raise ServeConfigError(f"{name}={raw!r} is out of range")
    return value


def _float(environ: Mapping[str, str], name: str, default: float, *, low: float = 0.001) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ServeConfigError(f"{name}={raw!r} is not a number") from None
    if not value >= low or value == float("inf"):
        raise ServeConfigError(f"{name}={raw!r} must be a finite number of at least {low}")
    return value
