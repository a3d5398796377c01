"""
Real processes for the adapter tests: the stand-in engine and the adapter, each started as
its own program on 127.0.0.1 with a port picked at run time, and always stopped afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")
# Variables that would make the adapter detect a cloud (or require a key): never inherited.
_MARKERS = ("AIP_", "AZUREML_", "SAGEMAKER_", "SM_", "MDEPLOY_", "VLLM_API_KEY")


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_MARKERS)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class Proc:
    """A started program, its URL and its combined output file."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def seen(self) -> list[dict]:
        """What the stand-in engine received (path, headers, body), oldest first."""
        return self.get("/fake/requests").json()

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def wait_for(self, path: str, ok=lambda r: True, timeout: float = 15.0) -> httpx.Response:
        """Poll `path` until `ok(response)`; fail with the program's output if it never is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"process exited with {self.process.returncode}:\n{self.log}")
            try:
                response = httpx.get(self.url + path, timeout=2)
                if ok(response):
                    return response
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        pytest.fail(f"{self.url}{path} not ready within {timeout} s:\n{self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Processes:
    """Starts programs and stops every one of them, last started first."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Proc] = []

    def start(self, argv: Sequence[str], url: str, env: Mapping[str, str] | None = None) -> Proc:
        log_path = self.workdir / f"proc-{len(self.started)}.log"
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, env=clean_env(env)
            )
        proc = Proc(process, url, log_path)
        self.started.append(proc)
        return proc

    def engine(self, *args: str, wait: str | None = "/v1/models") -> Proc:
        """Start the stand-in engine; by default wait until it serves HTTP."""
        port = free_port()
        argv = [sys.executable, str(FAKE_ENGINE), "--port", str(port), *args]
        proc = self.start(argv, f"http://127.0.0.1:{port}")
        if wait:
            proc.wait_for(wait)
        return proc

    def adapter(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        wait: bool = True,
    ) -> Proc:
        """Start `python -m mdeploy.serve` on loopback; wait until its liveness route answers."""
        port = port or free_port()
        argv = [sys.executable, "-m", "mdeploy.serve", "--host", "127.0.0.1", *args]
        # Teardown never waits long; one process unless a test asks for workers, so that
        # what a test sees does not depend on the cores of the machine it runs on.
        env = {"MDEPLOY_GRACE_SECONDS": "2", "MDEPLOY_WORKERS": "1", **(env or {})}
        if "--port" not in args and not env.get("AIP_HTTP_PORT"):
            argv += ["--port", str(port)]
        proc = self.start(argv, f"http://127.0.0.1:{port}", env)
        if wait:
            proc.wait_for("/live", lambda r: r.status_code == 200)
        return proc

    def owned(
        self, model: str, extra_env: Mapping[str, str] | None = None, wait: bool = True
    ) -> tuple[Proc, str]:
        """The adapter starting the stand-in engine itself; returns it and the engine's URL."""
        engine_port = free_port()
        env = {
            "MDEPLOY_ENGINE_CMD": json.dumps([sys.executable, str(FAKE_ENGINE)]),
            "MDEPLOY_ENGINE_PORT": str(engine_port),
            "MDEPLOY_MODEL_ID": model,
            "MDEPLOY_ENGINE_ARGS": json.dumps(["--max-model-len", "4096", "--load-delay", "0.3"]),
            **(extra_env or {}),
        }
        return self.adapter(env=env, wait=wait), f"http://127.0.0.1:{engine_port}"

    def close(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


def sse_data(text: str) -> list[str]:
    """The `data:` payloads of a server-sent-events body, `[DONE]` included."""
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


@pytest.fixture
def sse():
    """Parse an SSE body: returns (JSON events, whether it ended with data: [DONE])."""

    def parse(text: str) -> tuple[list[dict], bool]:
        data = sse_data(text)
        return [json.loads(d) for d in data if d != "[DONE]"], bool(data) and data[-1] == "[DONE]"

    return parse


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Processes stopped at the end of the test."""
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.close()


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """Processes shared by a module's tests, stopped when the module is done."""
    processes = Processes(tmp_path_factory.mktemp("procs"))
    try:
        yield processes
    finally:
        processes.close()


@pytest.fixture(scope="session")
def pick_port():
    """Pick a free loopback port (for servers that must be told their port up front)."""
    return free_port
