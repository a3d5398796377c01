"""Azure ML's routes (the ones the Azure target writes into inference_config) and the plain
OpenAI routes every platform serves, through real HTTP."""

from __future__ import annotations

import pytest

import mdeploy.serve as serve

MODEL = "org/m"
CHAT = {"messages": [{"role": "user", "content": "hey"}], "model": MODEL}


@pytest.fixture(scope="module")
def engine(module_procs):
    return module_procs.engine("--served-model-name", MODEL)


@pytest.fixture(scope="module")
def azure(module_procs, engine):
    env = {
        "MDEPLOY_ENGINE_URL": engine.url,
        "AZUREML_MODEL_DIR": "/var/azureml-app/azureml-models/m/1",
    }
    return module_procs.adapter(env=env)


@pytest.fixture(scope="module")
def plain(module_procs, engine):
    return module_procs.adapter("--engine-url", engine.url)


def test_azure_liveness_readiness_and_scoring_routes(azure):
    assert "platform: azureml (Azure ML variables set: AZUREML_MODEL_DIR)" in azure.log
    assert azure.get(serve.AZUREML_LIVENESS_ROUTE).json() == {"status": "alive"}
    assert azure.get(serve.AZUREML_READINESS_ROUTE).status_code == 200
    r = azure.post(serve.AZUREML_SCORING_ROUTE, json=CHAT)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo:hey"


def test_azure_scoring_streams(azure, sse):
    r = azure.post(serve.AZUREML_SCORING_ROUTE, json={**CHAT, "stream": True})
    events, done = sse(r.text)
    assert done and events[0]["object"] == "chat.completion.chunk"


def test_azure_does_not_serve_other_clouds_routes(azure):
    assert azure.post("/invocations", json=CHAT).status_code == 404
    assert azure.get("/ping").status_code == 404


@pytest.mark.parametrize("adapter_name", ["azure", "plain"])
def test_openai_routes_are_served_everywhere(request, adapter_name, sse):
    adapter = request.getfixturevalue(adapter_name)
    r = adapter.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    r = adapter.post("/v1/completions", json={"prompt": "p", "model": MODEL, "stream": True})
    events, done = sse(r.text)
    assert done and len(events) == 5
    assert adapter.get("/v1/models").json()["data"][0]["id"] == MODEL
    assert adapter.get("/health").status_code == 200
    metrics = adapter.get("/metrics", params={"name[]": "vllm"})
    assert metrics.status_code == 200 and "vllm:num_requests_running" in metrics.text


def test_plain_routes_pass_bodies_and_errors_unchanged(plain, engine):
    # No model filling or routing on the OpenAI routes: the engine answers for itself.
    r = plain.post("/v1/completions", json={"prompt": "p"})
    assert r.status_code == 400 and r.json()["message"] == "Field required: model"
    r = plain.post(
        "/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "JSON decode error" in r.json()["message"]


def test_plain_forwards_authorization_for_an_engine_api_key(plain, engine):
    # Off-cloud nobody else checks a key, so vLLM's own --api-key must still see it.
    plain.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer k"})
    assert engine.seen()[-1]["headers"]["authorization"] == "Bearer k"


def test_plain_has_live_and_ready_but_no_cloud_routes(plain):
    assert plain.get("/live").status_code == 200
    assert plain.get("/ready").status_code == 200
    assert plain.post("/invocations", json=CHAT).status_code == 404
    assert plain.post("/v1/models").status_code == 405
