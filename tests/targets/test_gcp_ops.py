"""
GcpOps against an HTTP fake of the Vertex AI REST API on 127.0.0.1.

The fake implements the four calls GcpOps makes (GET and PATCH an endpoint, rawPredict,
streamRawPredict), answers 401 without the expected bearer token and 404 for another
endpoint, and records every request it saw.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from httpfakes import JsonHandler

from mdeploy.errors import CloudError, InputError
from mdeploy.targets.base import EndpointHealth, NotFoundError, Ops, TrafficOps, VersionSpec
from mdeploy.targets.gcp.ops import API_URL_ENV, GcpOps

ENDPOINT = "projects/my-proj-123/locations/europe-west4/endpoints/7933852668"
TOKEN = "test-token"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    auth: str | None
    body: bytes


MODEL = "projects/1/locations/europe-west4/models/55"
IMAGE = "europe-west4-docker.pkg.dev/p/mdeploy/vllm@sha256:" + "ab" * 32


def _deployed(model_id: str, version: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "model": MODEL,
        "modelVersionId": version,
        "displayName": f"m-default-v{version}",
        "dedicatedResources": {
            "machineSpec": {
                "machineType": "g2-standard-8",
                "acceleratorType": "NVIDIA_L4",
                "acceleratorCount": 1,
            },
            "minReplicaCount": 1,
            "maxReplicaCount": 2,
        },
    }


@dataclass
class FakeVertexApi:
    """State of one endpoint with two deployed models, and the requests received."""

    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    split: dict[str, int] = field(default_factory=lambda: {"111": 90, "222": 10})
    predict_status: int = 200
    deployed: list[dict[str, Any]] = field(
        default_factory=lambda: [_deployed("111", "1"), _deployed("222", "2")]
    )
    models: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            f"{MODEL}@{v}": {
                "name": f"{MODEL}@{v}",
                "displayName": "m-default",
                "containerSpec": {
                    "imageUri": IMAGE,
                    "env": [{"name": "MDEPLOY_MODEL_REVISION", "value": f"r{v}"}],
                    "ports": [{"containerPort": 8080}],
                },
            }
            for v in ("1", "2")
        }
    )
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def endpoint(self) -> dict[str, Any]:
        return {
            "name": ENDPOINT,
            "displayName": "m-default",
            "deployedModels": [dict(m) for m in self.deployed],
            "trafficSplit": dict(self.split),
        }

    def operation(self, response: dict[str, Any]) -> dict[str, Any]:
        """A long-running operation: not done in the reply, done when first polled."""
        name = f"projects/1/locations/europe-west4/operations/{len(self.operations) + 1}"
        self.operations[name] = {"name": name, "done": True, "response": response}
        return {"name": name}

    def upload(self, body: dict[str, Any]) -> dict[str, Any]:
        assert body["parentModel"] == MODEL
        version = str(1 + max(int(k.rsplit("@", 1)[1]) for k in self.models))
        self.models[f"{MODEL}@{version}"] = {**body["model"], "name": f"{MODEL}@{version}"}
        return self.operation({"model": MODEL, "modelVersionId": version})

    def deploy(self, body: dict[str, Any]) -> dict[str, Any]:
        deployed = dict(body["deployedModel"])
        assert deployed["model"] in self.models, deployed["model"]
        new_id = str(100 + len(self.deployed) * 111)
        model, _, version = deployed.pop("model").partition("@")
        self.deployed.append({**deployed, "id": new_id, "model": model, "modelVersionId": version})
        split = {(new_id if k == "0" else k): int(v) for k, v in body["trafficSplit"].items()}
        assert sum(split.values()) == 100, split
        self.split = split
        return self.operation({"deployedModel": {"id": new_id}})

    def undeploy(self, body: dict[str, Any]) -> dict[str, Any]:
        gone = body["deployedModelId"]
        assert not self.split.get(gone), "undeploying a model that takes traffic"
        self.deployed = [m for m in self.deployed if m["id"] != gone]
        self.split = {k: int(v) for k, v in body["trafficSplit"].items()}
        return self.operation({})


def _handler(api: FakeVertexApi) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"code": status, "message": message}})

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            auth = self.headers.get("Authorization")
            api.requests.append(Seen(self.command, parts.path, parse_qs(parts.query), auth, body))
            if auth != f"Bearer {TOKEN}":
                return self._error(401, "Request had invalid authentication credentials.")
            resource, _, verb = parts.path.removeprefix("/v1/").partition(":")
            if self.command == "GET" and resource in api.models:
                return self._send(200, api.models[resource])
            if self.command == "GET" and resource in api.operations:
                return self._send(200, api.operations[resource])
            if self.command == "POST" and verb == "upload" and resource.endswith("/models"):
                return self._send(200, api.upload(json.loads(body)))
            if resource != ENDPOINT:
                return self._error(404, f"Endpoint `{resource}` not found.")
            if self.command == "GET" and not verb:
                return self._send(200, api.endpoint())
            if self.command == "PATCH" and not verb:
                api.split = {k: int(v) for k, v in json.loads(body)["trafficSplit"].items()}
                return self._send(200, api.endpoint())
            if self.command == "POST" and verb == "deployModel":
                return self._send(200, api.deploy(json.loads(body)))
            if self.command == "POST" and verb == "undeployModel":
                return self._send(200, api.undeploy(json.loads(body)))
            if self.command == "POST" and verb == "rawPredict":
                if api.predict_status != 200:
                    return self._error(api.predict_status, "Prediction failed: model crashed")
                return self._send(200, {"echo": json.loads(body)})
            if self.command == "POST" and verb == "streamRawPredict":
                return self._stream()
            return self._error(400, f"unsupported {self.command} {parts.path}")

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for chunk in (
                'data: {"text": "Hel"}\n\n',
                'data: {"text": "lo"}\n\n',
                "data: [DONE]\n\n",
            ):
                self.wfile.write(chunk.encode())
                self.wfile.flush()

        do_GET = do_POST = do_PATCH = _handle

    return Handler


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVertexApi]:
    """The fake on a free loopback port; MDEPLOY_VERTEX_API_URL points at it."""
    state = FakeVertexApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(API_URL_ENV, state.url)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class StubCredentials:
    """A google.auth credentials stand-in: `refresh` sets the token."""

    def __init__(self, token: str = TOKEN) -> None:
        self._next, self.token, self.refreshes = token, None, 0

    def refresh(self, request: Any) -> None:
        del request
        self.refreshes += 1
        self.token = self._next


def _ops(token: str = TOKEN) -> GcpOps:
    return GcpOps(ENDPOINT, credentials=StubCredentials(token))


def test_status_reports_deployed_models_and_traffic(api: FakeVertexApi) -> None:
    health = _ops().status()
    assert isinstance(health, EndpointHealth) and health.state == "ready"
    assert health.details["endpoint_name"] == ENDPOINT and health.region == "europe-west4"
    assert health.traffic == {"m-default-v1": 90, "m-default-v2": 10}
    assert [(v.image, v.model_revision, v.replicas) for v in health.versions] == [
        (IMAGE, "r1", 1),
        (IMAGE, "r2", 1),
    ]
    assert health.details["deployed_model_ids"] == {"m-default-v1": "111", "m-default-v2": "222"}
    assert health.url and health.url.endswith(f"/v1/{ENDPOINT}:rawPredict")
    assert json.loads(json.dumps(health.to_json()))["versions"][0]["traffic_percent"] == 90
    seen = api.requests[0]
    assert (seen.method, seen.path, seen.auth) == ("GET", f"/v1/{ENDPOINT}", f"Bearer {TOKEN}")


def test_an_endpoint_without_traffic_is_unhealthy(api: FakeVertexApi) -> None:
    api.split = {}
    health = _ops().status()
    assert health.state == "unhealthy" and "no traffic" in (health.detail or "")
    api.deployed = []
    assert _ops().status().detail == "no model is deployed on the endpoint"


def test_invoke_posts_the_body_unchanged_to_raw_predict(api: FakeVertexApi) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    reply = _ops().invoke(body)
    assert json.loads(reply) == {"echo": body}
    seen = api.requests[-1]
    assert (seen.method, seen.path) == ("POST", f"/v1/{ENDPOINT}:rawPredict")
    assert json.loads(seen.body) == body


def test_invoke_stream_yields_the_lines_of_stream_raw_predict(api: FakeVertexApi) -> None:
    lines = list(_ops().invoke({"prompt": "hi", "stream": True}, stream=True))
    assert lines == [b'data: {"text": "Hel"}', b'data: {"text": "lo"}', b"data: [DONE]"]
    assert api.requests[-1].path == f"/v1/{ENDPOINT}:streamRawPredict"


def test_set_traffic_patches_the_split_and_returns_the_new_status(api: FakeVertexApi) -> None:
    health = _ops().set_traffic({"m-default-v1": 50, "m-default-v2": 50})
    assert health.traffic == {"m-default-v1": 50, "m-default-v2": 50}
    patch = next(r for r in api.requests if r.method == "PATCH")
    assert patch.query == {"updateMask": ["traffic_split"]}
    assert json.loads(patch.body) == {"trafficSplit": {"111": 50, "222": 50}}


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"m-default-v1": 60, "m-default-v2": 30}, "add up to 90"),
        ({"m-default-v1": 101, "m-default-v2": -1}, "whole percentage"),
        ({"m-default-v1": 50.5, "m-default-v2": 49.5}, "whole percentage"),
        ({}, "no traffic weights"),
    ],
)
def test_set_traffic_validates_before_any_request(
    api: FakeVertexApi, split: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        _ops().set_traffic(split)
    assert api.requests == []


def test_set_traffic_refuses_unknown_versions(api: FakeVertexApi) -> None:
    with pytest.raises(InputError, match="333") as err:
        _ops().set_traffic({"m-default-v1": 50, "333": 50})
    assert "m-default-v1, m-default-v2" in (err.value.hint or "")
    assert [r.method for r in api.requests] == ["GET"]


def test_a_second_version_is_deployed_shifted_and_the_old_one_removed(
    api: FakeVertexApi,
) -> None:
    api.split = {"111": 100, "222": 0}
    ops = GcpOps(ENDPOINT, credentials=StubCredentials(), poll_interval_s=0.01)
    assert isinstance(ops, TrafficOps) and isinstance(ops, Ops)
    new_image = IMAGE.replace("ab" * 32, "cd" * 32)
    health = ops.deploy_version(VersionSpec("v-3", new_image, model_revision="r3", replicas=2))
    assert health.traffic == {"m-default-v1": 100, "m-default-v2": 0, "v-3": 0}
    new = health.version("v-3")
    assert (new.image, new.model_revision, new.replicas) == (new_image, "r3", 2)
    deployed = api.deployed[-1]
    assert deployed["dedicatedResources"]["machineSpec"]["acceleratorType"] == "NVIDIA_L4"
    assert api.models[f"{MODEL}@3"]["containerSpec"]["ports"] == [{"containerPort": 8080}]
    with pytest.raises(InputError, match="already has"):
        ops.deploy_version(VersionSpec("v-3", new_image))
    for weights in ({"m-default-v1": 90, "v-3": 10}, {"m-default-v1": 50, "v-3": 50}):
        assert ops.set_traffic(weights).traffic == {**weights, "m-default-v2": 0}
    assert ops.set_traffic({"v-3": 100}).traffic["v-3"] == 100
    with pytest.raises(InputError, match="takes 100%"):
        ops.remove_version("v-3")
    ops.remove_version("m-default-v2")
    assert ops.remove_version("m-default-v1").traffic == {"v-3": 100}
    with pytest.raises(NotFoundError):
        ops.remove_version("m-default-v1")


def test_bad_token_is_a_cloud_error_with_a_login_hint(api: FakeVertexApi) -> None:
    with pytest.raises(CloudError, match="HTTP 401") as err:
        _ops(token="expired").status()
    assert "gcloud auth application-default login" in (err.value.hint or "")
    assert "expired" not in err.value.message


def test_unknown_endpoint_is_not_found(api: FakeVertexApi) -> None:
    other = ENDPOINT.replace("7933852668", "1111111111")
    with pytest.raises(NotFoundError, match="not found") as err:
        GcpOps(other, credentials=StubCredentials()).status()
    assert "mdeploy" in (err.value.hint or "")


def test_container_failure_shows_the_api_message(api: FakeVertexApi) -> None:
    api.predict_status = 500
    with pytest.raises(CloudError, match="model crashed") as err:
        _ops().invoke(b"{}")
    assert "Cloud Logging" in (err.value.hint or "")


def test_unreachable_api_is_a_cloud_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(API_URL_ENV, f"http://127.0.0.1:{port}")
    with pytest.raises(CloudError, match="could not reach"):
        _ops().status()


def test_from_outputs_and_endpoint_name_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_URL_ENV, raising=False)
    url = f"https://europe-west4-aiplatform.googleapis.com/v1/{ENDPOINT}:rawPredict"
    ops = GcpOps.from_outputs({"endpoint_name": ENDPOINT, "endpoint_url": url})
    assert ops.region == "europe-west4"
    assert ops._predict() == url
    with pytest.raises(InputError, match="endpoint_name"):
        GcpOps.from_outputs({})
    with pytest.raises(InputError, match="not a Vertex endpoint"):
        GcpOps("endpoints/123")
