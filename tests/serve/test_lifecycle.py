"""The adapter's life around the engine's: slow start, crashes, timeouts, streaming without
buffering, client hang-ups, graceful shutdown, and the engine the adapter owns."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

import httpx
import pytest

MODEL = "org/m"
PROMPT = {"prompt": "p", "model": MODEL}
# The owned engine's life is the same with one adapter process and with a worker supervisor.
WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


def test_slow_start_readiness_503_then_200_liveness_200_throughout(procs):
    # Long enough that both processes are up before the model "loads", even on a loaded box.
    load_delay = 4.0
    started = time.monotonic()  # before the engine: its load delay runs from its own start
    engine = procs.engine("--served-model-name", MODEL, "--load-delay", str(load_delay))
    adapter = procs.adapter(
        "serve", env={"MDEPLOY_ENGINE_URL": engine.url, "MDEPLOY_READY_TTL": "0.2"}
    )
    ready, live = [], []
    while time.monotonic() - started < load_delay + 20 and not (ready and ready[-1][1] == 200):
        live.append(adapter.get("/live").status_code)
        ready.append((time.monotonic() - started, adapter.get("/ping").status_code))
        time.sleep(0.05)
    assert set(live) == {200}
    assert ready[0][1] == 503 and ready[-1][1] == 200
    first_ok = next(t for t, code in ready if code == 200)
    assert first_ok >= load_delay - 0.05  # never ready before the model has loaded
    assert adapter.post("/invocations", json=PROMPT).status_code == 200


def test_readiness_probes_do_not_hammer_the_engine(procs):
    engine = procs.engine("--served-model-name", MODEL)
    adapter = procs.adapter("--engine-url", engine.url)  # default TTL: 1 s
    before = engine.get("/fake/stats").json()["health_calls"]
    started = time.monotonic()
    with httpx.Client(base_url=adapter.url) as client:
        codes = [client.get("/ready").status_code for _ in range(30)]
    elapsed = time.monotonic() - started
    probes = engine.get("/fake/stats").json()["health_calls"] - before
    assert set(codes) == {200}
    # One engine probe per TTL second at most, however many readiness checks came in.
    assert probes <= int(elapsed) + 1, f"{probes} engine probes for 30 checks in {elapsed:.2f} s"


def test_an_engine_that_accepts_but_never_answers_is_not_ready(procs):
    # vLLM binds its port before loading and answers nothing until loaded.
    engine = procs.engine("--load-delay", "60", "--hang-while-loading")
    env = {"MDEPLOY_ENGINE_URL": engine.url, "MDEPLOY_PROBE_TIMEOUT": "0.3"}
    adapter = procs.adapter("serve", env=env)
    r = adapter.get("/ping", timeout=30)
    # The engine would hang for 60 s: a 503 at all proves the 0.3 s probe timeout fired (the
    # setting that keeps /ping inside SageMaker's 2 s; the latency itself is not timed here).
    assert r.status_code == 503


def test_engine_crash_mid_request_then_unreachable(procs):
    engine = procs.engine("--served-model-name", MODEL)
    adapter = procs.adapter(
        "serve", env={"MDEPLOY_ENGINE_URL": engine.url, "MDEPLOY_READY_TTL": "0.1"}
    )
    assert adapter.get("/ping").status_code == 200
    r = adapter.post("/invocations", json={**PROMPT, "x_fake": {"crash": True}})
    assert r.status_code == 503 and r.json()["error"]["type"] == "engine_unavailable"
    engine.process.wait(timeout=5)
    time.sleep(0.15)  # past the readiness TTL
    assert adapter.get("/ping").status_code == 503
    r = adapter.post("/invocations", json=PROMPT)
    assert r.status_code == 503 and r.json()["error"]["code"] == 503
    # Not the adapter's engine: it stays up, answering liveness, for the engine to come back.
    assert adapter.get("/live").status_code == 200 and adapter.process.poll() is None


def test_engine_timeout_is_504(procs):
    engine = procs.engine("--served-model-name", MODEL)
    env = {"MDEPLOY_ENGINE_URL": engine.url, "MDEPLOY_ENGINE_TIMEOUT": "0.4"}
    adapter = procs.adapter("serve", env=env)
    r = adapter.post("/invocations", json={**PROMPT, "x_fake": {"delay": 3}}, timeout=30)
    # Waiting out the engine's 3 s would have given a 200: a 504 is the 0.4 s timeout firing.
    assert r.status_code == 504 and r.json()["error"]["type"] == "engine_timeout"


def test_stream_is_passed_on_chunk_by_chunk(procs):
    engine = procs.engine("--served-model-name", MODEL)
    adapter = procs.adapter("serve", env={"MDEPLOY_ENGINE_URL": engine.url})
    chunks, gap = 5, 0.3
    body = {**PROMPT, "stream": True, "x_fake": {"chunks": chunks, "chunk_delay": gap}}
    arrivals = []
    started = time.perf_counter()
    with httpx.stream("POST", adapter.url + "/invocations", json=body, timeout=10) as r:
        for piece in r.iter_raw():
            arrivals.append((time.perf_counter() - started, piece))
    total = arrivals[-1][0]
    first_byte = arrivals[0][0]
    assert total >= (chunks - 1) * gap
    # A buffering proxy would deliver the first byte only at the end of the stream; passed on
    # chunk by chunk, the first and last bytes are apart by the engine's gaps between chunks
    # (a spread that load cannot shrink, unlike a bound on the first byte's time).
    assert total - first_byte >= (chunks - 2) * gap, f"first {first_byte:.3f} s, last {total:.3f} s"
    assert len(arrivals) >= chunks - 1
    assert b"".join(p for _, p in arrivals).endswith(b"data: [DONE]\n\n")


def test_an_engine_dying_mid_stream_ends_the_stream_with_an_error_event(procs, sse):
    engine = procs.engine("--served-model-name", MODEL)
    adapter = procs.adapter("serve", env={"MDEPLOY_ENGINE_URL": engine.url})
    body = {**PROMPT, "stream": True, "x_fake": {"chunks": 5, "crash_after": 2}}
    r = adapter.post("/invocations", json=body)
    events, done = sse(r.text)
    assert r.status_code == 200 and not done  # no [DONE]: the client must not take it as complete
    assert [e["choices"][0]["text"] for e in events[:2]] == ["echo:p[0]", "echo:p[1]"]
    assert events[-1]["error"]["type"] == "engine_unavailable"


def test_a_client_hang_up_aborts_the_engine_stream(procs):
    engine = procs.engine("--served-model-name", MODEL)
    adapter = procs.adapter("serve", env={"MDEPLOY_ENGINE_URL": engine.url})
    chunks, gap = 600, 0.1
    body = {**PROMPT, "stream": True, "x_fake": {"chunks": chunks, "chunk_delay": gap}}
    with httpx.stream("POST", adapter.url + "/invocations", json=body, timeout=10) as r:
        next(r.iter_raw())
    # The engine counts an abort only while it is still generating: seeing one before the
    # whole stream would end proves the hang-up reached it, however slow a loaded machine is.
    deadline = time.monotonic() + chunks * gap
    while engine.get("/fake/stats").json()["aborted"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.get("/fake/stats").json()["aborted"] == 1
    assert "client disconnected; engine request aborted" in adapter.log


def test_sigterm_drains_in_flight_requests_then_exits(procs):
    engine = procs.engine("--served-model-name", MODEL)
    adapter = procs.adapter("serve", "--grace", "5", env={"MDEPLOY_ENGINE_URL": engine.url})
    results: dict[str, httpx.Response] = {}

    def slow_request() -> None:
        body = {**PROMPT, "x_fake": {"delay": 1.2}}
        results["slow"] = adapter.post("/invocations", json=body, timeout=10)

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.4)  # the request is now in flight at the engine
    adapter.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):  # no longer accepting
        adapter.get("/live", timeout=1)
    worker.join(timeout=10)
    assert results["slow"].status_code == 200
    assert results["slow"].json()["choices"][0]["text"] == "echo:p"
    assert adapter.wait_exit(timeout=10) in (0, -signal.SIGTERM)


@WORKERS
def test_owned_engine_is_started_with_the_plan_and_model(procs, workers):
    adapter, engine_url = procs.owned(MODEL, {"MDEPLOY_WORKERS": workers})
    adapter.wait_for("/ready", lambda r: r.status_code == 200)
    argv = httpx.get(engine_url + "/fake/argv").json()["argv"]
    assert argv[:2] == ["--model", MODEL]
    assert argv[-4:] == ["--host", "127.0.0.1", "--port", engine_url.rsplit(":", 1)[1]]
    assert "--max-model-len" in argv
    r = adapter.post("/v1/completions", json=PROMPT)
    assert r.status_code == 200


@WORKERS
def test_adapter_exits_non_zero_when_its_engine_dies(procs, workers):
    adapter, engine_url = procs.owned(MODEL, {"MDEPLOY_WORKERS": workers})
    adapter.wait_for("/ready", lambda r: r.status_code == 200)
    with pytest.raises(httpx.HTTPError):
        httpx.post(engine_url + "/fake/crash", timeout=2)
    assert adapter.wait_exit(timeout=10) == 1
    assert (
        "engine exited with code 3; exiting so the platform restarts the container" in adapter.log
    )


@WORKERS
def test_sigterm_stops_the_owned_engine_too(procs, workers):
    adapter, engine_url = procs.owned(MODEL, {"MDEPLOY_WORKERS": workers})
    adapter.wait_for("/ready", lambda r: r.status_code == 200)
    adapter.process.send_signal(signal.SIGTERM)
    adapter.wait_exit(timeout=10)
    with pytest.raises(httpx.ConnectError):
        httpx.get(engine_url + "/health", timeout=1)
    assert "engine stopped" in adapter.log


@WORKERS
def test_a_killed_adapter_takes_its_engine_along(procs, workers):
    # SIGKILL gives the adapter no chance to clean up: the kernel must end the engine
    # (PR_SET_PDEATHSIG), or a GPU-holding orphan would outlive the container's main process.
    adapter, engine_url = procs.owned(MODEL, {"MDEPLOY_WORKERS": workers})
    adapter.wait_for("/ready", lambda r: r.status_code == 200)
    adapter.process.kill()
    adapter.wait_exit(timeout=5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(engine_url + "/health", timeout=0.5)
        except httpx.ConnectError:
            break
        time.sleep(0.05)
    with pytest.raises(httpx.ConnectError):
        httpx.get(engine_url + "/health", timeout=0.5)


def test_an_engine_that_cannot_start_ends_the_adapter(procs):
    env = {
        "MDEPLOY_ENGINE_CMD": json.dumps([sys.executable, "-c", "raise SystemExit(7)"]),
        "MDEPLOY_MODEL_ID": "m",
    }
    adapter = procs.adapter(env=env, wait=False)
    assert adapter.wait_exit(timeout=15) == 1
    assert "engine exited with code 7" in adapter.log


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"MDEPLOY_ENGINE_ARGS": "--max-model-len 4096", "MDEPLOY_MODEL_ID": "m"},
            "MDEPLOY_ENGINE_ARGS",
        ),
        (
            {"MDEPLOY_ENGINE_CMD": '["/no/such/engine"]', "MDEPLOY_MODEL_ID": "m"},
            "cannot start the engine",
        ),
        ({}, "no model to load"),
        ({"MDEPLOY_MAX_BODY_BYTES": "big"}, "MDEPLOY_MAX_BODY_BYTES"),
    ],
)
def test_bad_configuration_exits_2_with_the_reason(procs, env, says):
    adapter = procs.adapter(env=env, wait=False)
    assert adapter.wait_exit(timeout=15) == 2
    assert says in adapter.log and "Traceback" not in adapter.log
