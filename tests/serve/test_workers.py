"""
Several adapter processes on one port (MDEPLOY_WORKERS, `mdeploy/serve/workers.py`): served
by every worker, the same life as one process (drain on SIGTERM, exit 1 when the owned engine
dies, nothing left behind when killed), a dead worker replaced, limits split.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from mdeploy.serve import config as serve_config
from mdeploy.serve.config import ServeConfigError, load_config
from mdeploy.serve.workers import listening_sockets, share

MODEL = "org/m"
PROMPT = {"prompt": "p", "model": MODEL}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        found.update(int(p) for p in text.split())
    return found


def workers_of(adapter, engine_pid: int | None = None) -> set[int]:
    return children(adapter.process.pid) - ({engine_pid} if engine_pid else set())


def client_sockets(pid: int, port: int) -> int:
    """How many established connections to `port` process `pid` holds (Linux /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
            inodes.add(fields[9])
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def started(procs, engine, workers: int = 2, **env: str):
    adapter = procs.adapter(
        "--engine-url", engine.url, env={"MDEPLOY_WORKERS": str(workers), **env}
    )
    deadline = time.monotonic() + 15
    while len(workers_of(adapter)) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    return adapter


def test_every_worker_serves_connections_on_the_one_port(procs):
    engine = procs.engine("--served-model-name", MODEL)
    adapter = started(procs, engine)
    pids = workers_of(adapter)
    assert len(pids) == 2
    assert "workers: 2 processes on one port (SO_REUSEPORT)" in adapter.log
    port = int(adapter.url.rsplit(":", 1)[1])
    clients = [httpx.Client(base_url=adapter.url, timeout=10) for _ in range(40)]
    try:
        for client in clients:  # each a new kept-alive connection
            assert client.post("/v1/completions", json=PROMPT).status_code == 200
        held = {pid: client_sockets(pid, port) for pid in pids}
    finally:
        for client in clients:
            client.close()
    # The kernel spreads connections by hash: all 40 on one worker has odds of 2**-39.
    assert sum(held.values()) == 40 and all(n > 0 for n in held.values()), held


def test_sigterm_drains_every_worker_then_ends_by_the_signal(procs):
    engine = procs.engine("--served-model-name", MODEL)
    adapter = started(procs, engine, MDEPLOY_GRACE_SECONDS="5")
    pids = workers_of(adapter)
    results: dict[int, httpx.Response] = {}

    def slow(i: int) -> None:
        body = {**PROMPT, "x_fake": {"delay": 1.2}}
        results[i] = httpx.post(adapter.url + "/v1/completions", json=body, timeout=10)

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the requests are now in flight at the engine
    adapter.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=15)
    assert [results[i].status_code for i in range(6)] == [200] * 6
    assert adapter.wait_exit(timeout=15) == -signal.SIGTERM
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(procs):
    engine = procs.engine("--served-model-name", MODEL)
    adapter = started(procs, engine)
    victim = min(workers_of(adapter))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = workers_of(adapter)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.05)
    assert len(workers_of(adapter)) == 2 and victim not in workers_of(adapter)
    assert "was killed by SIGKILL; starting it again" in adapter.log
    for _ in range(10):  # new connections, whichever worker takes them
        with httpx.Client(base_url=adapter.url, timeout=10) as client:
            assert client.post("/v1/completions", json=PROMPT).status_code == 200


def _owned(procs):
    adapter, engine_url = procs.owned(MODEL, {"MDEPLOY_WORKERS": "2"})
    adapter.wait_for("/ready", lambda r: r.status_code == 200)
    return adapter, engine_url


def test_a_killed_supervisor_takes_workers_and_engine_along(procs):
    adapter, _ = _owned(procs)
    everything = children(adapter.process.pid)
    assert len(everything) == 3  # the engine and two workers
    adapter.process.kill()
    adapter.wait_exit(timeout=5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in everything):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in everything)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# Settings ----------------------------------------------------------------------------------


def test_limits_are_totals_split_between_workers():
    config = load_config(
        {
            "MDEPLOY_ENGINE_URL": "http://127.0.0.1:9",
            "MDEPLOY_WORKERS": "3",
            "MDEPLOY_MAX_CONNECTIONS": "100",
            "MDEPLOY_FANOUT_CONNECTIONS": "64",
        }
    )
    one = share(config)
    assert config.workers == 3
    assert (one.max_connections, one.fanout_connections) == (34, 22)
    assert (one.api_key, one.engine_url) == (config.api_key, config.engine_url)


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (7, 1), (8, 2), (16, 4), (96, 4)])
def test_auto_takes_one_worker_per_four_cores_up_to_four(monkeypatch, cores, workers):
    monkeypatch.setattr(serve_config, "usable_cores", lambda: cores)
    for raw in ("", "auto", " AUTO "):
        environ = {"MDEPLOY_ENGINE_URL": "http://127.0.0.1:9", "MDEPLOY_WORKERS": raw}
        assert load_config(environ).workers == workers


@pytest.mark.parametrize("raw", ["0", "-1", "two", "65", "1.5"])
def test_a_bad_worker_count_is_refused_with_the_variable(raw):
    with pytest.raises(ServeConfigError, match="MDEPLOY_WORKERS"):
        load_config({"MDEPLOY_ENGINE_URL": "http://127.0.0.1:9", "MDEPLOY_WORKERS": raw})


def test_usable_cores_is_at_least_one_and_at_most_the_affinity():
    assert 1 <= serve_config.usable_cores() <= len(os.sched_getaffinity(0))


def test_the_sockets_share_one_port_and_a_taken_port_is_an_error():
    sockets = listening_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1
        # A socket bound without SO_REUSEPORT may not join them.
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", ports.pop()))
    finally:
        for sock in sockets:
            sock.close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            listening_sockets("127.0.0.1", taken.getsockname()[1], 2)


def test_a_refused_fork_is_exit_1_with_the_reason_and_nothing_left_open(monkeypatch, caplog):
    from mdeploy.serve import workers

    def refuse() -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(workers.os, "fork", refuse)
    logger = logging.getLogger("mdeploy.serve")
    logger.addHandler(caplog.handler)
    environ = {"MDEPLOY_ENGINE_URL": "http://127.0.0.1:9", "MDEPLOY_WORKERS": "2"}
    sockets = listening_sockets("127.0.0.1", 0, 2)
    before = signal.getsignal(signal.SIGTERM)
    try:
        supervisor = workers._Supervisor(share(load_config(environ)), sockets, None, serve_stub)
        assert supervisor.run() == 1
    finally:
        logger.removeHandler(caplog.handler)
    assert "cannot start worker 1: Resource temporarily unavailable" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is before  # the supervisor's handler is gone
    assert all(sock.fileno() == -1 for sock in sockets)  # and so are its sockets


def serve_stub(*_args: object) -> int:
    raise AssertionError("no worker may start")
