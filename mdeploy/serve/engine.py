"""
The engine the adapter owns: which command starts vLLM, where the model is, the process.

When the adapter is not given an engine URL it starts vLLM's OpenAI server itself, on
loopback, and lives and dies with it: if the engine exits, the adapter exits non-zero so the
platform restarts the container (a container that answers liveness but never becomes ready
again is the worst case on every cloud).

Where the model is and which flags start vLLM are decided in one place, `mdeploy.serve.boot`
(the image start-up uses the same functions): here the platform's own location only
(SageMaker `/opt/ml/model`, Vertex AI `AIP_STORAGE_URI` passed on as a URI, Azure ML
`AZUREML_MODEL_DIR`), after `MDEPLOY_MODEL` and before `MDEPLOY_MODEL_SOURCE` and
`MDEPLOY_MODEL_ID`; in a mounted tree the shallowest folder holding `config.json`. In the
image the start-up has already written `--model` and the rest into `MDEPLOY_ENGINE_ARGS`, and
building the flags again adds nothing.

Variables: `MDEPLOY_ENGINE_ARGS` (JSON list of flags written by the plan), `MDEPLOY_ENGINE_CMD`
(JSON list replacing the default command, used by tests to run a stand-in engine).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

from mdeploy.serve.boot import SAGEMAKER_MODEL_DIR, BootError, engine_args, find_model, json_list

__all__ = [
    "DEFAULT_ENGINE_CMD",
    "SAGEMAKER_MODEL_DIR",
    "EngineConfigError",
    "EngineProcess",
    "engine_command",
    "resolve_model",
]

log = logging.getLogger("mdeploy.serve")

DEFAULT_ENGINE_CMD = (sys.executable, "-m", "vllm.entrypoints.openai.api_server")
_ADAPTER_OWNED = ("--host", "--port")
_LINUX = sys.platform == "linux"
_PR_SET_PDEATHSIG = 1


class EngineConfigError(ValueError):
    """The engine cannot be started as configured; the message names the variable."""


def resolve_model(
    platform: str, environ: Mapping[str, str], *, sagemaker_dir: Path | None = None
) -> str:
    """Return the model path, URI or id the engine should load on this platform."""
    try:
        return find_model(environ, platform=platform, sagemaker_dir=sagemaker_dir)[1]
    except BootError as exc:
        hint = "; or give --engine-url for an engine that is already running"
        raise EngineConfigError(f"{exc}{hint}") from None


def engine_command(
    platform: str,
    environ: Mapping[str, str],
    *,
    port: int,
    sagemaker_dir: Path | None = None,
) -> list[str]:
    """
    Build the engine's command line: base command, the flags of `boot.engine_args`, then ours.

    `--model` comes from `resolve_model` unless the plan's flags name one; `--host` and
    `--port` are the adapter's (loopback, so the adapter stays the only door) and may not be
    set in MDEPLOY_ENGINE_ARGS.
    """
    try:
        base = json_list(environ, "MDEPLOY_ENGINE_CMD") or list(DEFAULT_ENGINE_CMD)
        plan = json_list(environ, "MDEPLOY_ENGINE_ARGS") or []
    except BootError as exc:
        raise EngineConfigError(str(exc)) from None
    for flag in _ADAPTER_OWNED:
        if any(a == flag or a.startswith(flag + "=") for a in plan):
            raise EngineConfigError(f"MDEPLOY_ENGINE_ARGS sets {flag}; the adapter chooses it")
    named = any(a == "--model" or a.startswith("--model=") for a in plan)
    model = None if named else resolve_model(platform, environ, sagemaker_dir=sagemaker_dir)
    args = engine_args(model, environ)
    return [*base, *args, "--host", "127.0.0.1", "--port", str(port)]


class EngineProcess:
    """
    The running engine: started in its own session so a Ctrl-C in a terminal reaches only
    the adapter, which then drains and stops the engine itself; on Linux the engine is also
    told to die with the adapter, so a killed adapter leaves no GPU-holding orphan.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    @classmethod
    def start(cls, command: Sequence[str], env: Mapping[str, str] | None = None) -> EngineProcess:
        """Start the engine; its stdout and stderr are the container's."""
        try:
            process = subprocess.Popen(
                list(command),
                env=dict(env) if env is not None else None,
                start_new_session=True,
                preexec_fn=partial(_die_with_parent, os.getpid()) if _LINUX else None,
            )
        except OSError as exc:
            raise EngineConfigError(f"cannot start the engine {command[0]!r}: {exc}") from None
        log.info("engine started (pid %d)", process.pid)
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    def poll(self) -> int | None:
        """The exit code once the engine has exited, else None."""
        return self._process.poll()

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL; return the exit code."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self._process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._process.poll() is None:
                log.warning("engine did not stop within %g s; killing it", timeout)
                self._process.kill()
        return self._process.wait()


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
