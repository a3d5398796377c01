"""The adapter under abuse (issue 11): the API key on every route, Vertex fan-out bounded,
engine requests cancelled when the client leaves, header and body deadlines, the connection
cap, and deeply nested JSON. Real processes on 127.0.0.1, as the other adapter tests."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import statistics
import threading
import time

import httpx
import pytest

MODEL = "org/hard"
KEY = "sk-test-0123456789abcdef"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
PROMPT = {"prompt": "p"}
VERTEX_HEALTH = "/v1/endpoints/1/deployedModels/2"
VERTEX_PREDICT = VERTEX_HEALTH + ":predict"
VERTEX_ENV = {
    "AIP_HEALTH_ROUTE": VERTEX_HEALTH,
    "AIP_PREDICT_ROUTE": VERTEX_PREDICT,
    "AIP_MODE": "PREDICTION",
}


@pytest.fixture(scope="module")
def engine(module_procs):
    return module_procs.engine("--served-model-name", MODEL)


@pytest.fixture(scope="module")
def adapters(module_procs, engine, pick_port):
    """One adapter per platform, all with MDEPLOY_API_KEY set, in front of one engine."""
    base = {"MDEPLOY_ENGINE_URL": engine.url, "MDEPLOY_API_KEY": KEY}
    vertex_port = pick_port()
    return {
        "plain": module_procs.adapter(env=base),
        "sagemaker": module_procs.adapter("serve", env=base),
        "vertex": module_procs.adapter(
            env={**base, **VERTEX_ENV, "AIP_HTTP_PORT": str(vertex_port)}, port=vertex_port
        ),
        "azureml": module_procs.adapter(env={**base, "AZUREML_MODEL_DIR": "/m"}),
    }


def _aborted(engine) -> int:
    return engine.get("/fake/stats").json()["aborted"]


# API key ---------------------------------------------------------------------------------

OPEN_ROUTES = [  # liveness and readiness: probes carry no key
    ("plain", "/live"),
    ("plain", "/ready"),
    ("plain", "/health"),
    ("sagemaker", "/ping"),
    ("sagemaker", "/live"),
    ("vertex", VERTEX_HEALTH),
    ("vertex", "/live"),
    ("azureml", "/live"),
    ("azureml", "/ready"),
]
GUARDED_ROUTES = [  # (platform, method, path, JSON body or None)
    ("plain", "POST", "/v1/chat/completions", {**CHAT, "model": MODEL}),
    ("plain", "POST", "/v1/completions", {**PROMPT, "model": MODEL}),
    ("plain", "GET", "/v1/models", None),
    ("plain", "GET", "/metrics", None),
    ("sagemaker", "POST", "/invocations", CHAT),
    ("sagemaker", "GET", "/metrics", None),
    ("vertex", "POST", VERTEX_PREDICT, {"instances": ["a", "b"]}),
    ("vertex", "POST", VERTEX_PREDICT, PROMPT),  # rawPredict
    ("vertex", "GET", "/v1/models", None),
    ("azureml", "POST", "/score", CHAT),
    ("azureml", "POST", "/v1/completions", {**PROMPT, "model": MODEL}),
    ("azureml", "GET", "/metrics", None),
]
KEYS = {
    "no key": {},
    "wrong key": {"authorization": "Bearer sk-wrong"},
    "wrong scheme": {"authorization": f"Basic {KEY}"},
    "right key": {"authorization": f"Bearer {KEY}"},
}


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize(("platform", "path"), OPEN_ROUTES)
def test_liveness_and_readiness_need_no_key(adapters, platform, path, key):
    r = adapters[platform].get(path, headers=KEYS[key])
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize(("platform", "method", "path", "body"), GUARDED_ROUTES)
def test_every_other_route_needs_the_key(adapters, platform, method, path, body, key):
    adapter = adapters[platform]
    r = httpx.request(method, adapter.url + path, json=body, headers=KEYS[key], timeout=10)
    if key == "right key":
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["type"] == "unauthorized"


def test_unknown_paths_are_401_without_the_key_so_they_reveal_nothing(adapters):
    adapter = adapters["plain"]
    assert adapter.get("/nope").status_code == 401
    assert adapter.get("/nope", headers=KEYS["right key"]).status_code == 404


def test_the_key_scheme_is_case_insensitive_and_the_key_never_logged(adapters):
    adapter = adapters["sagemaker"]
    r = adapter.post("/invocations", json=CHAT, headers={"authorization": f"bearer {KEY}"})
    assert r.status_code == 200
    for proc in adapters.values():
        assert KEY not in proc.log


# Vertex fan-out --------------------------------------------------------------------------


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_20000_instances_use_a_bounded_number_of_connections(procs, engine, pick_port):
    """
    Issue 11's case: 20,000 instances in one predict. Answered (the limit is raised to allow
    it) over at most MDEPLOY_FANOUT_CONNECTIONS engine connections, so the adapter's open
    file handles stay bounded, while another client's small requests keep being answered.
    The latency figure is benchmarks/adapter.py's job; here only a generous bound.
    """
    fanout, n = 16, 20_000
    port = pick_port()
    env = {
        "MDEPLOY_ENGINE_URL": engine.url,
        **VERTEX_ENV,
        "AIP_HTTP_PORT": str(port),
        "MDEPLOY_MAX_INSTANCES": str(n),
        "MDEPLOY_FANOUT_CONNECTIONS": str(fanout),
    }
    adapter = procs.adapter(env=env, port=port)
    pid = adapter.process.pid
    adapter.post("/v1/completions", json={**PROMPT, "model": MODEL})  # warm the pool
    baseline = _fd_count(pid)
    done = threading.Event()
    peak = [baseline]
    small: list[tuple[int, float]] = []

    def watch_fds() -> None:
        while not done.wait(0.02):
            try:
                peak[0] = max(peak[0], _fd_count(pid))
            except OSError:
                return

    def small_client() -> None:
        with httpx.Client(base_url=adapter.url, timeout=30) as client:
            while not done.is_set() and len(small) < 10_000:
                started = time.perf_counter()
                r = client.post("/v1/completions", json={**PROMPT, "model": MODEL})
                small.append((r.status_code, time.perf_counter() - started))
                time.sleep(0.01)

    threads = [threading.Thread(target=watch_fds), threading.Thread(target=small_client)]
    for t in threads:
        t.start()
    try:
        body = {"instances": [f"i{i}" for i in range(n)], "parameters": {"max_tokens": 1}}
        r = adapter.post(VERTEX_PREDICT, json=body, timeout=240)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=30)
    assert r.status_code == 200, r.text[:300]
    preds = r.json()["predictions"]
    assert len(preds) == n and preds[-1]["choices"][0]["text"] == f"echo:i{n - 1}"
    # Unbounded, this was one connection per instance (20,000 handles in the issue).
    assert peak[0] <= baseline + fanout + 32, f"{peak[0]} fds open (baseline {baseline})"
    assert small and all(code == 200 for code, _ in small)
    p50 = statistics.median(t for _, t in small) * 1000
    print(f"\n{len(small)} small requests during the fan-out, p50 {p50:.1f} ms, fds {peak[0]}")


def test_too_many_instances_are_413_before_any_engine_call(procs, engine, pick_port):
    port = pick_port()
    env = {
        "MDEPLOY_ENGINE_URL": engine.url,
        **VERTEX_ENV,
        "AIP_HTTP_PORT": str(port),
        "MDEPLOY_MAX_INSTANCES": "3",
    }
    adapter = procs.adapter(env=env, port=port)
    seen = len(engine.seen())
    r = adapter.post(VERTEX_PREDICT, json={"instances": ["a", "b", "c", "d"]})
    assert r.status_code == 413
    assert "MDEPLOY_MAX_INSTANCES" in r.json()["error"]["message"]
    assert len(engine.seen()) == seen
    assert adapter.post(VERTEX_PREDICT, json={"instances": ["a", "b", "c"]}).status_code == 200


def test_the_default_instance_limit_refuses_40000(adapters):
    body = {"instances": ["x"] * 40_000}
    r = adapters["vertex"].post(VERTEX_PREDICT, json=body, headers=KEYS["right key"])
    assert r.status_code == 413


# Cancel on disconnect --------------------------------------------------------------------

SLOW = {"x_fake": {"delay": 30}}
NON_STREAMING = [
    ("plain", "/v1/completions", {**PROMPT, "model": MODEL, **SLOW}, 1),
    ("sagemaker", "/invocations", {**CHAT, **SLOW}, 1),
    ("vertex", VERTEX_PREDICT, {**PROMPT, **SLOW}, 1),  # rawPredict
    ("vertex", VERTEX_PREDICT, {"instances": ["a", "b"], "parameters": SLOW}, 2),
    ("azureml", "/score", {**CHAT, **SLOW}, 1),
]


def _send_and_hang_up(url: str, path: str, body: dict, engine, calls: int) -> None:
    """Send the request, wait until the engine is "generating" it, then hang up."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {KEY}\r\ncontent-length: {len(payload)}\r\n\r\n"
    ).encode()

    def received() -> int:
        return engine.get("/fake/stats").json()["received"]

    before = received()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + payload)
        deadline = time.monotonic() + 15
        while received() < before + calls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received() >= before + calls, "the request never reached the engine"


@pytest.mark.parametrize(("platform", "path", "body", "calls"), NON_STREAMING)
def test_a_client_hang_up_cancels_a_non_streaming_engine_request(
    adapters, engine, platform, path, body, calls
):
    before = _aborted(engine)
    _send_and_hang_up(adapters[platform].url, path, body, engine, calls)
    deadline = time.monotonic() + 15  # far less than the 30 s the engine would take
    while _aborted(engine) < before + calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _aborted(engine) == before + calls


# Slow clients ----------------------------------------------------------------------------


def _closed_within(socks: list[socket.socket], seconds: float, drip: list[socket.socket]):
    """Read every socket until the server closes it; return (still open, bytes per socket)."""
    sel = selectors.DefaultSelector()
    got: dict[socket.socket, bytes] = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        got[s] = b""
    open_ = set(socks)
    deadline = time.monotonic() + seconds
    while open_ and time.monotonic() < deadline:
        for s in drip:
            if s in open_:
                with contextlib.suppress(OSError):
                    s.send(b"x")  # one more header byte: slowloris
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                got[s] += data
            else:
                sel.unregister(s)
                open_.discard(s)
    sel.close()
    return open_, got


def test_300_slow_partial_requests_are_cut_off(procs, engine):
    adapter = procs.adapter(
        "serve",
        env={
            "MDEPLOY_ENGINE_URL": engine.url,
            "MDEPLOY_HEADER_TIMEOUT": "1",
            "MDEPLOY_BODY_TIMEOUT": "1",
        },
    )
    host, port = adapter.url.removeprefix("http://").split(":")
    silent, partial_head, drip, partial_body = [], [], [], []
    for i in range(300):
        s = socket.create_connection((host, int(port)), timeout=5)
        kind = i % 4
        if kind == 1:
            s.sendall(b"POST /invocations HTTP/1.1\r\nhost: x\r\n")
        elif kind == 2:
            s.sendall(b"POST /invocations HTTP/1.1\r\nx-slow: ")
        elif kind == 3:
            s.sendall(b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{")
        [silent, partial_head, drip, partial_body][kind].append(s)
    socks = silent + partial_head + drip + partial_body
    try:
        # While they hang, a normal request is served.
        assert adapter.post("/invocations", json={**CHAT, "model": MODEL}).status_code == 200
        still_open, got = _closed_within(socks, 20, drip)
        assert not still_open, f"{len(still_open)} of 300 slow connections still open"
        assert all(got[s].startswith(b"HTTP/1.1 408") for s in partial_body)
        assert all(got[s].startswith(b"HTTP/1.1 408") for s in partial_head)
    finally:
        for s in socks:
            s.close()
    assert adapter.get("/live").status_code == 200


def test_connections_over_the_cap_get_503(procs, engine):
    adapter = procs.adapter(
        "serve", env={"MDEPLOY_ENGINE_URL": engine.url, "MDEPLOY_MAX_CONNECTIONS": "8"}
    )
    host, port = adapter.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(8)]
    try:
        deadline = time.monotonic() + 10  # until the server has accepted all eight
        while adapter.get("/live").status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert adapter.get("/live").status_code == 503
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10
    while adapter.get("/live").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert adapter.get("/live").status_code == 200


# Hostile JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000],
    ids=["arrays", "objects"],
)
@pytest.mark.parametrize(
    ("platform", "path"),
    [
        ("sagemaker", "/invocations"),
        ("vertex", VERTEX_PREDICT),
        ("azureml", "/score"),
        ("plain", "/v1/completions"),
    ],
)
def test_deeply_nested_json_is_400(adapters, platform, path, raw):
    r = adapters[platform].post(
        path,
        content=raw,
        headers={"content-type": "application/json", **KEYS["right key"]},
    )
    if platform == "plain":
        # Passed through to the engine unread, as every OpenAI route is: the engine's 400.
        assert r.status_code == 400
    else:
        assert r.status_code == 400, r.text[:200]
        assert "nested too deeply" in r.json()["error"]["message"]


@pytest.mark.parametrize("depth", [500, 980, 995, 5000])
def test_deep_nesting_inside_a_vertex_instance_is_never_a_500(adapters, depth):
    # Near Python's recursion limit a body may parse and then fail to re-encode for the
    # engine: either way the client gets an answer, not an adapter error.
    body = b'{"instances":[{"prompt":' + b"[" * depth + b'"x"' + b"]" * depth + b"}]}"
    r = adapters["vertex"].post(
        VERTEX_PREDICT,
        content=body,
        headers={"content-type": "application/json", **KEYS["right key"]},
    )
    assert r.status_code in (200, 400), r.text[:200]
    assert adapters["vertex"].get("/live").status_code == 200
