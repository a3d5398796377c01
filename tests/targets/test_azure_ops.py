"""
Azure day-2 operations against an HTTP fake of the ARM REST API and a scoring URI on 127.0.0.1.

The fake implements only the routes ops.py calls, checks `api-version` and the bearer token on
every ARM call, answers PUTs with an Azure-AsyncOperation URL, pages deployments with nextLink,
and checks the endpoint key on scoring calls. The credential is a stub: no Azure login needed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from mdeploy.errors import CloudError, InputError, PrerequisiteError
from mdeploy.targets.azure import arm as arm_module
from mdeploy.targets.azure.arm import ARM_SCOPE, ARM_URL_ENV
from mdeploy.targets.azure.ops import (
    AAD_SCORING_SCOPE,
    API_VERSION,
    AzureOps,
    EndpointRef,
    masked,
)
from mdeploy.targets.base import EndpointHealth, NotFoundError, Ops, TrafficOps, VersionSpec

SUB, RG, WS, EP = "00000000-0000-0000-0000-00000000abcd", "rg-ml", "mlw-test", "mistral-7b-chat"
EP_PATH = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices"
    f"/workspaces/{WS}/onlineEndpoints/{EP}"
)
ENV_PATH = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices"
    f"/workspaces/{WS}/environments/mistral-7b-chat-env"
)
IMAGE_1 = "mlacr.azurecr.io/mdeploy/vllm@sha256:" + "ab" * 32
IMAGE_2 = "mlacr.azurecr.io/mdeploy/vllm@sha256:" + "cd" * 32
ARM_TOKEN = "arm-token-7f3a"
AAD_TOKEN = "entra-token-91bc"
PRIMARY_KEY = "pk-SECRET-0123456789abcdef"


class StubCredential:
    """An azure-identity-shaped credential that hands out fixed tokens per scope."""

    def __init__(self, fail: bool = False) -> None:
        self.scopes: list[str] = []
        self.fail = fail

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes[0])
        if self.fail:
            raise ClientAuthenticationError(message="no account signed in\nmore detail")
        token = {ARM_SCOPE: ARM_TOKEN, AAD_SCORING_SCOPE: AAD_TOKEN}[scopes[0]]
        return AccessToken(token, 2_000_000_000)


class FakeAzure:
    """State of one workspace with one endpoint and two deployments."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[dict[str, Any]] = []
        self.op_final = "Succeeded"
        self.op_polls = 0
        self.busy = 0  # PUTs to refuse with 409 Conflict before accepting one
        self.auth_mode = "Key"
        self.endpoint: dict[str, Any] = {
            "id": EP_PATH,
            "name": EP,
            "location": "francecentral",
            "tags": {"managed-by": "mdeploy"},
            "kind": "Managed",
            "identity": {"type": "SystemAssigned", "principalId": "p-1", "tenantId": "t-1"},
            "properties": {
                "authMode": "Key",
                "provisioningState": "Succeeded",
                "publicNetworkAccess": "Enabled",
                "scoringUri": "",
                "swaggerUri": "https://example.invalid/swagger.json",
                "traffic": {"v-1": 100},
                "mirrorTraffic": {"v-2": 10},
            },
        }
        self.deployments = [
            {"name": "v-1", "sku": {"name": "Default", "capacity": 2},
             "properties": {"provisioningState": "Succeeded",
                            "instanceType": "Standard_NC24ads_A100_v4",
                            "environmentId": f"{ENV_PATH}/versions/1",
                            "environmentVariables": {"MDEPLOY_MODEL_REVISION": "r1"}}},
            {"name": "v-2", "sku": {"name": "Default", "capacity": 1},
             "properties": {"provisioningState": "Succeeded",
                            "instanceType": "Standard_NC24ads_A100_v4",
                            "environmentId": "env-2"}},
        ]  # fmt: skip
        self.environments: dict[str, dict[str, Any]] = {
            f"{ENV_PATH}/versions/1": {
                "properties": {"image": IMAGE_1, "inferenceConfig": {"scoringRoute": {}}}
            }
        }

    def arm_calls(self, method: str | None = None) -> list[dict[str, Any]]:
        return [
            r for r in self.requests
            if not r["path"].startswith("/score") and (method is None or r["method"] == method)
        ]  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        del args

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake: FakeAzure = self.server.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        fake.requests.append(
            {"method": self.command, "path": parts.path, "query": parse_qs(parts.query),
             "headers": dict(self.headers), "body": body}
        )  # fmt: skip
        if parts.path == "/score":
            return self._score(fake, body)
        if parse_qs(parts.query).get("api-version") != [API_VERSION]:
            return self._json(400, _error("InvalidApiVersion", "unsupported api-version"))
        if self.headers.get("Authorization") != f"Bearer {ARM_TOKEN}":
            return self._json(401, _error("InvalidAuthenticationToken", "bad token"))
        route = (self.command, parts.path)
        if route == ("GET", EP_PATH):
            return self._json(200, fake.endpoint)
        if route == ("PUT", EP_PATH):
            return self._put_endpoint(fake, body)
        if route == ("GET", EP_PATH + "/deployments"):
            return self._deployments(fake, parse_qs(parts.query))
        if route == ("POST", EP_PATH + "/listKeys"):
            return self._json(200, {"primaryKey": PRIMARY_KEY, "secondaryKey": "sk-SECRET"})
        if parts.path.startswith(EP_PATH + "/deployments/"):
            return self._deployment(fake, parts.path.rsplit("/", 1)[1], body)
        if parts.path.startswith(ENV_PATH + "/versions/"):
            return self._environment(fake, parts.path, body)
        if route == ("GET", "/operations/1"):
            fake.op_polls += 1
            status = "InProgress" if fake.op_polls < 2 else fake.op_final
            return self._json(200, {"status": status})
        return self._json(404, _error("ResourceNotFound", f"{parts.path} was not found"))

    def _put_endpoint(self, fake: FakeAzure, body: dict[str, Any]) -> None:
        if fake.busy:
            fake.busy -= 1
            return self._json(409, _error("Conflict", "an operation is in progress"))
        props = body.get("properties") or {}
        traffic = props.get("traffic") or {}
        if sum(traffic.values()) not in (0, 100) or not body.get("location"):
            return self._json(400, _error("BadRequest", "traffic must sum to 0 or 100"))
        fake.endpoint["properties"] = {**props, "provisioningState": "Updating"}
        reply = json.dumps(fake.endpoint).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header(
            "Azure-AsyncOperation", f"{fake.url}/operations/1?api-version={API_VERSION}"
        )
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        fake.endpoint["properties"]["provisioningState"] = "Succeeded"

    def _deployment(self, fake: FakeAzure, name: str, body: Any) -> None:
        """GET, PUT (create, Azure-AsyncOperation) and DELETE of one deployment."""
        found = [d for d in fake.deployments if d["name"] == name]
        if self.command == "PUT":
            props = body["properties"]
            if props["environmentId"] not in fake.environments or found:
                return self._json(400, _error("BadRequest", "unknown environment or exists"))
            if (fake.endpoint["properties"].get("traffic") or {}).get(name):
                return self._json(400, _error("BadRequest", "traffic before deployment"))
            stored = json.loads(json.dumps({"name": name, **body}))  # not the recorded body
            stored["properties"]["provisioningState"] = "Succeeded"
            fake.deployments.append(stored)
            return self._accepted(201, stored)
        if not found:
            return self._json(404, _error("ResourceNotFound", f"deployment {name}"))
        if self.command == "DELETE":
            if (fake.endpoint["properties"].get("traffic") or {}).get(name):
                return self._json(400, _error("BadRequest", "deployment has traffic"))
            fake.deployments.remove(found[0])
            return self._accepted(202, {})
        return self._json(200, found[0])

    def _environment(self, fake: FakeAzure, path: str, body: Any) -> None:
        if self.command == "PUT":
            fake.environments[path] = body
            return self._json(201, body)
        if path not in fake.environments:
            return self._json(404, _error("ResourceNotFound", path))
        return self._json(200, fake.environments[path])

    def _accepted(self, status: int, payload: Any) -> None:
        reply = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        operation = f"{self.server.fake.url}/operations/1?api-version={API_VERSION}"
        self.send_header("Azure-AsyncOperation", operation)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def _deployments(self, fake: FakeAzure, query: dict[str, list[str]]) -> None:
        if query.get("$skipToken") == ["2"]:
            return self._json(200, {"value": fake.deployments[1:]})
        following = f"{fake.url}{EP_PATH}/deployments?api-version={API_VERSION}&$skipToken=2"
        return self._json(200, {"value": fake.deployments[:1], "nextLink": following})

    def _score(self, fake: FakeAzure, body: Any) -> None:
        expected = PRIMARY_KEY if fake.auth_mode == "Key" else AAD_TOKEN
        if self.headers.get("Authorization") != f"Bearer {expected}":
            return self._json(401, {"error": "unauthorized"})
        if body and body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for n in range(3):
                self.wfile.write(f'data: {{"n": {n}}}\n\n'.encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            return None
        pinned = self.headers.get("azureml-model-deployment")
        return self._json(200, {"echo": body, "deployment": pinned})

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@pytest.fixture
def fake() -> Iterator[FakeAzure]:
    """The fake ARM + scoring server on a free 127.0.0.1 port, stopped after the test."""
    state = FakeAzure()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.fake = state  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    state.endpoint["properties"]["scoringUri"] = f"{state.url}/score"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def credential() -> StubCredential:
    return StubCredential()


@pytest.fixture
def ops(fake: FakeAzure, credential: StubCredential) -> AzureOps:
    return AzureOps(
        EndpointRef(SUB, RG, WS, EP),
        credential=credential,
        arm_url=fake.url,
        timeout_s=5,
        poll_interval_s=0.01,
    )


# ---- status -----------------------------------------------------------------------------


def test_status_reports_state_traffic_and_instances_across_pages(ops: AzureOps) -> None:
    health = ops.status()
    assert isinstance(health, EndpointHealth) and health.state == "ready"
    assert health.details["auth_mode"] == "Key" and health.region == "francecentral"
    assert health.url and health.url.endswith("/score")
    assert health.traffic == {"v-1": 100, "v-2": 0}  # the second came from the nextLink page
    v1, v2 = health.versions
    assert (v1.replicas, v1.image, v1.model_revision, v1.state) == (2, IMAGE_1, "r1", "Succeeded")
    assert (v2.replicas, v2.image) == (1, None)  # "env-2" is not an ARM id: no image read
    assert health.replicas == 3
    assert json.loads(json.dumps(health.to_json()))["versions"][0]["name"] == "v-1"


def test_every_arm_call_carries_api_version_and_arm_token(
    ops: AzureOps, fake: FakeAzure, credential: StubCredential
) -> None:
    ops.status()
    calls = fake.arm_calls()
    assert calls and all(c["query"]["api-version"] == [API_VERSION] for c in calls)
    assert all(c["headers"]["Authorization"] == f"Bearer {ARM_TOKEN}" for c in calls)
    assert set(credential.scopes) == {ARM_SCOPE}


def test_arm_url_comes_from_the_environment(
    fake: FakeAzure, credential: StubCredential, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ARM_URL_ENV, fake.url)
    client = AzureOps.from_outputs({"endpoint_id": EP_PATH}, credential=credential)
    assert client.ref == EndpointRef(SUB, RG, WS, EP)
    assert client.traffic() == {"v-1": 100}


# ---- traffic ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "split", [{"v-1": 90}, {"v-1": 60, "v-2": 50}, {"v-1": 101}, {"v-1": -1}, {}]
)
def test_bad_splits_are_refused_before_any_call(
    ops: AzureOps, fake: FakeAzure, split: dict[str, int]
) -> None:
    with pytest.raises(InputError):
        ops.set_traffic(split)
    assert fake.requests == []


def test_unknown_deployment_is_refused_without_a_put(ops: AzureOps, fake: FakeAzure) -> None:
    with pytest.raises(InputError, match="no version named v-9") as err:
        ops.set_traffic({"v-1": 50, "v-9": 50})
    assert "v-1, v-2" in (err.value.hint or "")
    assert fake.arm_calls("PUT") == []


def test_set_traffic_puts_the_endpoint_and_waits_for_the_operation(
    ops: AzureOps, fake: FakeAzure
) -> None:
    status = ops.set_traffic({"v-1": 90, "v-2": 10})
    (put,) = fake.arm_calls("PUT")
    props = put["body"]["properties"]
    assert props["traffic"] == {"v-1": 90, "v-2": 10}
    # Read-only fields are not sent back, identity keeps only its type.
    assert not {"provisioningState", "scoringUri", "swaggerUri"} & set(props)
    assert put["body"]["identity"] == {"type": "SystemAssigned"}
    assert put["body"]["location"] == "francecentral"
    # Mirroring to a deployment that now takes live traffic is dropped.
    assert props["mirrorTraffic"] == {}
    assert fake.op_polls == 2  # InProgress, then Succeeded
    assert status.traffic == {"v-1": 90, "v-2": 10}


def test_busy_endpoint_is_retried(ops: AzureOps, fake: FakeAzure) -> None:
    fake.busy = 2
    assert ops.set_traffic({"v-2": 100}).traffic == {"v-1": 0, "v-2": 100}
    assert len(fake.arm_calls("PUT")) == 3


def test_an_empty_split_is_only_for_destroy(ops: AzureOps, fake: FakeAzure) -> None:
    ops.put_traffic({})
    assert fake.endpoint["properties"]["traffic"] == {}
    assert ops.status().traffic == {"v-1": 0, "v-2": 0}


def test_failed_operation_becomes_cloud_error(ops: AzureOps, fake: FakeAzure) -> None:
    fake.op_final = "Failed"
    with pytest.raises(CloudError, match="ended Failed"):
        ops.set_traffic({"v-2": 100})


def test_a_second_deployment_is_created_shifted_and_the_old_one_removed(
    ops: AzureOps, fake: FakeAzure
) -> None:
    assert isinstance(ops, TrafficOps) and isinstance(ops, Ops)
    fake.op_polls = 1  # every operation is already done
    health = ops.deploy_version(VersionSpec("v-3", IMAGE_2, model_revision="r3", replicas=2))
    assert health.traffic == {"v-1": 100, "v-2": 0, "v-3": 0}
    new = health.version("v-3")
    assert (new.image, new.model_revision, new.replicas) == (IMAGE_2, "r3", 2)
    (env_put, dep_put) = fake.arm_calls("PUT")
    assert env_put["path"].startswith(ENV_PATH + "/versions/")
    assert env_put["body"]["properties"]["inferenceConfig"] == {"scoringRoute": {}}
    dep = dep_put["body"]
    assert dep["properties"]["instanceType"] == "Standard_NC24ads_A100_v4"  # copied from v-1
    assert "provisioningState" not in dep["properties"] and dep["sku"]["capacity"] == 2
    with pytest.raises(InputError, match="already has"):
        ops.deploy_version(VersionSpec("v-3", IMAGE_2))
    for weights in ({"v-1": 90, "v-3": 10}, {"v-1": 50, "v-3": 50}, {"v-1": 0, "v-3": 100}):
        assert ops.set_traffic(weights).traffic == {**weights, "v-2": 0}
    with pytest.raises(InputError, match="takes 100%"):
        ops.remove_version("v-3")
    ops.remove_version("v-2")
    assert ops.remove_version("v-1").traffic == {"v-3": 100}
    with pytest.raises(NotFoundError):
        ops.remove_version("v-1")


# ---- invoke -----------------------------------------------------------------------------


def test_invoke_uses_the_endpoint_key_and_pins_a_deployment(ops: AzureOps, fake: FakeAzure) -> None:
    reply = ops.invoke({"messages": [{"role": "user", "content": "hi"}]}, deployment="v-2")
    answer = json.loads(reply)
    assert answer["deployment"] == "v-2"
    assert answer["echo"]["messages"][0]["content"] == "hi"
    (score,) = [r for r in fake.requests if r["path"] == "/score"]
    assert score["headers"]["Authorization"] == f"Bearer {PRIMARY_KEY}"
    assert fake.arm_calls("POST")[0]["path"].endswith("/listKeys")


def test_invoke_streams_lines_as_they_arrive(ops: AzureOps) -> None:
    chunks = list(ops.invoke({"prompt": "hi", "stream": True}, stream=True))
    lines = [c.decode().strip() for c in chunks if c.strip()]
    assert lines == ['data: {"n": 0}', 'data: {"n": 1}', 'data: {"n": 2}', "data: [DONE]"]


def test_invoke_with_entra_auth_asks_for_an_ml_token(
    fake: FakeAzure, credential: StubCredential
) -> None:
    fake.auth_mode = "AADToken"
    client = AzureOps(
        EndpointRef(SUB, RG, WS, EP), credential=credential, arm_url=fake.url,
        scoring_uri=f"{fake.url}/score", auth_mode="AADToken",
    )  # fmt: skip
    assert json.loads(client.invoke(b'{"prompt": "x"}'))["echo"] == {"prompt": "x"}
    assert credential.scopes == [AAD_SCORING_SCOPE]
    assert not any(r["path"].endswith("/listKeys") for r in fake.requests)


def test_scoring_errors_never_show_the_key(ops: AzureOps, fake: FakeAzure) -> None:
    fake.auth_mode = "AADToken"  # the fake now refuses the key
    with pytest.raises(CloudError) as err:
        ops.invoke({"prompt": "x"})
    assert "HTTP 401" in err.value.message
    assert "score/action" in (err.value.hint or "")
    shown = f"{err.value.message} {err.value.hint} {ops!r}"
    assert PRIMARY_KEY not in shown


def test_masked_shows_length_only() -> None:
    assert masked(PRIMARY_KEY) == f"<hidden, {len(PRIMARY_KEY)} chars>"
    assert PRIMARY_KEY not in masked(PRIMARY_KEY)


# ---- errors -----------------------------------------------------------------------------


def test_missing_endpoint_maps_to_cloud_error_with_hint(
    fake: FakeAzure, credential: StubCredential
) -> None:
    client = AzureOps(EndpointRef(SUB, RG, WS, "nope"), credential=credential, arm_url=fake.url)
    with pytest.raises(CloudError, match="HTTP 404 ResourceNotFound") as err:
        client.status()
    assert "mdeploy up" in (err.value.hint or "")


def test_credential_failure_is_a_prerequisite_error(fake: FakeAzure) -> None:
    client = AzureOps(
        EndpointRef(SUB, RG, WS, EP), credential=StubCredential(fail=True), arm_url=fake.url
    )
    with pytest.raises(PrerequisiteError, match="no account signed in") as err:
        client.status()
    assert "az login" in (err.value.hint or "")
    assert fake.requests == []


def test_endpoint_ids_are_parsed_and_checked() -> None:
    assert EndpointRef.from_id(EP_PATH).path == EP_PATH
    with pytest.raises(InputError, match="not an Azure ML online endpoint id"):
        EndpointRef.from_id("/subscriptions/x/resourceGroups/y")
    with pytest.raises(
        InputError, match="lack subscription_id, resource_group_name, workspace_name"
    ):
        AzureOps.from_outputs({"endpoint_name": EP})


# ---- the `traffic` dynamic resource's provider, against the same fake ---------------------


@pytest.fixture
def provider(fake: FakeAzure, credential: StubCredential, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mdeploy.targets.azure.traffic import _TrafficProvider

    monkeypatch.setenv(ARM_URL_ENV, fake.url)
    monkeypatch.setattr(arm_module, "default_credential", lambda: credential)
    fake.op_polls = 1  # the operation is already done: no 5 s poll interval in tests
    return _TrafficProvider()


def test_provider_create_routes_all_traffic_to_the_deployment(
    provider: Any, fake: FakeAzure
) -> None:
    result = provider.create({"endpoint_id": EP_PATH, "traffic": {"v-2": 100}, "__provider": "x"})
    assert result.id == f"{EP_PATH}/traffic"
    assert result.outs == {"endpoint_id": EP_PATH, "traffic": {"v-2": 100}}
    assert fake.endpoint["properties"]["traffic"] == {"v-2": 100}


def test_provider_diff_notices_a_split_changed_outside_pulumi(
    provider: Any, fake: FakeAzure
) -> None:
    state = {"endpoint_id": EP_PATH, "traffic": {"v-1": 100}}
    assert provider.diff("id", state, dict(state)).changes is False
    fake.endpoint["properties"]["traffic"] = {"v-1": 50, "v-2": 50}  # changed by hand
    assert provider.diff("id", state, dict(state)).changes is True
    assert provider.diff("id", state, {**state, "traffic": {"v-2": 100}}).changes is True


def test_provider_delete_clears_the_split(provider: Any, fake: FakeAzure) -> None:
    provider.delete("id", {"endpoint_id": EP_PATH, "traffic": {"v-1": 100}})
    assert fake.endpoint["properties"]["traffic"] == {}


def test_provider_delete_tolerates_a_deleted_endpoint(provider: Any) -> None:
    gone = EP_PATH.replace(EP, "gone")
    provider.delete("id", {"endpoint_id": gone, "traffic": {"v-1": 100}})
