"""Vertex AI's contract through real HTTP: AIP_* port and routes, instances → predictions
(concurrent, parameters merged), and raw OpenAI bodies passed straight through."""

from __future__ import annotations

import pytest

MODEL = "org/vertex-model"
HEALTH = "/v1/endpoints/11/deployedModels/22"
PREDICT = HEALTH + ":predict"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def stack(module_procs, pick_port):
    engine = module_procs.engine("--served-model-name", MODEL)
    port = pick_port()
    env = {
        "MDEPLOY_ENGINE_URL": engine.url,
        # What Vertex sets; no --port flag: the adapter must take AIP_HTTP_PORT.
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": HEALTH,
        "AIP_PREDICT_ROUTE": PREDICT,
        "AIP_MODE": "PREDICTION",
        "AIP_ENDPOINT_ID": "11",
        "AIP_DEPLOYED_MODEL_ID": "22",
    }
    adapter = module_procs.adapter(env=env, port=port)
    return engine, adapter


def test_aip_port_and_health_route_are_honoured(stack):
    _, adapter = stack
    assert "platform: vertex" in adapter.log
    r = adapter.get(HEALTH)
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert adapter.get("/ping").status_code == 404


def test_instances_become_predictions_in_order(stack):
    engine, adapter = stack
    body = {
        "instances": [CHAT, {"prompt": "b"}, "c"],
        "parameters": {"max_tokens": 7, "temperature": 0},
    }
    r = adapter.post(PREDICT, json=body)
    assert r.status_code == 200
    out = r.json()
    assert out["deployedModelId"] == "22"
    preds = out["predictions"]
    assert [p["object"] for p in preds] == ["chat.completion", "text_completion", "text_completion"]
    assert preds[0]["choices"][0]["message"]["content"] == "echo:hi"
    assert [p["choices"][0]["text"] for p in preds[1:]] == ["echo:b", "echo:c"]
    sent = engine.seen()[-3:]
    assert sorted(s["path"] for s in sent) == [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/completions",
    ]
    assert all(s["body"]["max_tokens"] == 7 and s["body"]["model"] == MODEL for s in sent)


def test_an_instance_overrides_shared_parameters(stack):
    engine, adapter = stack
    body = {
        "instances": [{"prompt": "own", "max_tokens": 2}],
        "parameters": {"max_tokens": 9, "seed": 1},
    }
    assert adapter.post(PREDICT, json=body).status_code == 200
    sent = engine.seen()[-1]["body"]
    assert (sent["max_tokens"], sent["seed"]) == (2, 1)


def test_instances_run_concurrently(stack):
    engine, adapter = stack
    n, delay = 4, 0.5
    body = {"instances": [f"p{i}" for i in range(n)], "parameters": {"x_fake": {"delay": delay}}}
    engine.post("/fake/reset-max")
    r = adapter.post(PREDICT, json=body)
    assert r.status_code == 200 and len(r.json()["predictions"]) == n
    # The engine itself saw the instances at the same time (no clock: a loaded machine only
    # stretches the delay, it cannot make sequential requests overlap).
    assert engine.get("/fake/stats").json()["max_in_flight"] >= 2


def test_raw_openai_body_passes_straight_through(stack):
    engine, adapter = stack
    r = adapter.post(PREDICT, json=CHAT)
    assert r.status_code == 200
    assert r.json()["object"] == "chat.completion" and "predictions" not in r.json()
    assert engine.seen()[-1]["path"] == "/v1/chat/completions"


def test_raw_streaming_passes_straight_through(stack, sse):
    _, adapter = stack
    r = adapter.post(PREDICT, json={"prompt": "s", "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events, done = sse(r.text)
    assert done and [e["choices"][0]["text"] for e in events][:2] == ["echo:s[0]", "echo:s[1]"]


def test_one_failing_instance_fails_the_batch_with_its_status(stack):
    _, adapter = stack
    body = {"instances": ["fine", {"prompt": "bad", "x_fake": {"status": 503}}]}
    r = adapter.post(PREDICT, json=body)
    assert r.status_code == 503 and r.json()["message"] == "injected failure"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"instances": ["a", {"text": "?"}]}, "instances[1]"),
        ({"instances": ["a"], "parameters": {"stream": True}}, "stream"),
        ({"instances": []}, "non-empty"),
        ({"instances": ["a"], "parameters": "x"}, "parameters"),
    ],
)
def test_bad_batches_are_400(stack, body, says):
    _, adapter = stack
    r = adapter.post(PREDICT, json=body)
    assert r.status_code == 400 and says in r.json()["error"]["message"]


def test_routes_may_point_at_openai_paths(procs, pick_port):
    # Google's vLLM guide uploads models with predict_route=/v1/completions, health=/health.
    engine = procs.engine("--served-model-name", MODEL)
    port = pick_port()
    env = {
        "MDEPLOY_ENGINE_URL": engine.url,
        "AIP_HTTP_PORT": str(port),
        "AIP_PREDICT_ROUTE": "/v1/completions",
        "AIP_HEALTH_ROUTE": "/health",
    }
    adapter = procs.adapter(env=env, port=port)
    assert adapter.get("/health").json()["status"] == "ready"  # readiness, not the raw proxy
    r = adapter.post("/v1/completions", json={"instances": ["x"]})
    assert r.json()["predictions"][0]["choices"][0]["text"] == "echo:x"
    r = adapter.post("/v1/completions", json={"prompt": "y", "model": MODEL})
    assert r.json()["choices"][0]["text"] == "echo:y"
