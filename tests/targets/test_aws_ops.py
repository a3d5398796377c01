"""
SageMaker day-2 operations over real HTTP.

status, set_traffic and invoke run against a moto server (`moto_server` subprocess on a free
127.0.0.1 port, reached through AWS_ENDPOINT_URL). moto has no response streaming and no
Service Quotas for SageMaker, so those run against a small local HTTP fake that also checks
the SigV4 Authorization header and the request path.
"""

from __future__ import annotations

import binascii
import dataclasses
import json
import re
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mdeploy.errors import CloudError, InputError
from mdeploy.targets.aws.ops import AwsOps
from mdeploy.targets.aws.target import TARGET
from mdeploy.targets.base import (
    EndpointArgs,
    EndpointHealth,
    NotFoundError,
    Ops,
    TrafficOps,
    VersionSpec,
)

REGION = "eu-west-3"
IMAGE = "123456789012.dkr.ecr.eu-west-3.amazonaws.com/mdeploy/m@sha256:" + "ab" * 32
SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=testing/\d{8}/eu-west-3/(?P<service>[a-z-]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=[0-9a-f]{64}$"
)

boto3 = pytest.importorskip("boto3")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server process for this module; stopped (by its pid) afterwards."""
    port = _free_port()
    proc = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Callable[[str], None]:
    """Fake credentials, no profile files; returns a setter for AWS_ENDPOINT_URL."""
    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }.items():
        monkeypatch.setenv(var, value)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_SAGEMAKER"):
        monkeypatch.delenv(var, raising=False)
    return lambda url: monkeypatch.setenv("AWS_ENDPOINT_URL", url)


@pytest.fixture
def moto(moto_url: str, fake_aws_env: Callable[[str], None]) -> str:
    """moto reset to empty, with this test's environment pointing at it."""
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    ).read()
    fake_aws_env(moto_url)
    return moto_url


def _endpoint(name: str, variants: dict[str, float]) -> None:
    """Create a model, a config with `variants` (name → weight) and an endpoint in moto."""
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/mdeploy-exec",
        PrimaryContainer={"Image": IMAGE},
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": f"{name}-model",
                "InstanceType": "ml.g4dn.2xlarge",  # moto's list lacks g5
                "InitialInstanceCount": 1,
                "InitialVariantWeight": weight,
            }
            for variant, weight in variants.items()
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")


def test_status_reports_state_and_variants(moto: str) -> None:
    _endpoint("chat", {"v1": 1.0})
    health = AwsOps("chat", REGION).status()
    assert isinstance(health, EndpointHealth)
    assert health.state == "ready" and health.details["status"] == "InService"
    assert health.details["config_name"] == "chat-config"
    assert health.region == REGION and health.url and health.url.endswith("/chat/invocations")
    assert [v.name for v in health.versions] == ["v1"]
    assert health.versions[0].replicas == 1 and health.replicas == 1
    assert health.versions[0].image == IMAGE
    assert health.to_json()["versions"][0]["traffic_percent"] == 100


def test_status_of_a_missing_endpoint_is_not_found(moto: str) -> None:
    with pytest.raises(NotFoundError) as err:
        AwsOps("absent", REGION).status()
    assert "not found" in err.value.message and "mdeploy up" in (err.value.hint or "")


def test_set_traffic_moves_weights(moto: str) -> None:
    _endpoint("canary", {"v1": 1.0, "v2": 0.0})
    health = AwsOps("canary", REGION).set_traffic({"v1": 90, "v2": 10})
    assert health.traffic == {"v1": 90, "v2": 10}


def test_set_traffic_refuses_unknown_variants_and_bad_weights(moto: str) -> None:
    _endpoint("guarded", {"v1": 1.0})
    ops = AwsOps("guarded", REGION)
    with pytest.raises(InputError) as err:
        ops.set_traffic({"v9": 100})
    assert "v9" in err.value.message and "v1" in (err.value.hint or "")
    for bad in ({"v1": -1}, {"v1": 0}, {}, {"v1": 99.5}):
        with pytest.raises(InputError):
            ops.set_traffic(bad)


class _UpdateEndpointProxy(BaseHTTPRequestHandler):
    """
    Forwards every SageMaker call to moto unchanged, except UpdateEndpoint, which moto lacks:
    that one is played the way SageMaker ends it (the endpoint now runs the new config's
    variants at their initial weights) by deleting and re-creating the endpoint in moto.
    """

    server: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target") or ""
        self.server.targets.append(target)
        if target == "SageMaker.UpdateEndpoint":
            params = json.loads(body)
            sm = boto3.client("sagemaker", region_name=REGION, endpoint_url=self.server.moto)
            sm.describe_endpoint_config(EndpointConfigName=params["EndpointConfigName"])
            sm.delete_endpoint(EndpointName=params["EndpointName"])
            sm.create_endpoint(**params)
            status, reply, kind = 200, json.dumps({"EndpointArn": "arn"}).encode(), "json"
        else:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            request = urllib.request.Request(
                self.server.moto + self.path, data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request) as answer:
                    status, reply = answer.status, answer.read()
                    kind = answer.headers.get("Content-Type", "application/x-amz-json-1.1")
            except urllib.error.HTTPError as exc:
                status, reply = exc.code, exc.read()
                kind = exc.headers.get("Content-Type", "application/x-amz-json-1.1")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        del args  # Unused: keep test output quiet.


@pytest.fixture
def sagemaker_with_update(moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """moto behind the UpdateEndpoint proxy; yields the X-Amz-Target of every call."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _UpdateEndpointProxy)
    server.moto, server.targets = moto, []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield server.targets  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_a_second_version_is_deployed_shifted_and_the_old_one_removed(
    sagemaker_with_update: list[str],
) -> None:
    _endpoint("promo", {"v1": 1.0})
    sagemaker_with_update.clear()
    ops = AwsOps("promo", REGION)
    assert isinstance(ops, TrafficOps) and isinstance(ops, Ops)
    new_image = IMAGE.replace("ab" * 32, "cd" * 32)
    spec = VersionSpec("v-2", new_image, model_revision="r2", replicas=1)
    health = ops.deploy_version(spec)
    assert health.traffic == {"v1": 100, "v-2": 0}
    assert health.details["config_name"] != "promo-config"
    assert health.version("v-2").image == new_image
    assert health.version("v-2").model_revision == "r2"
    with pytest.raises(InputError, match="already has"):
        ops.deploy_version(spec)
    for weights in ({"v1": 90, "v-2": 10}, {"v1": 50, "v-2": 50}, {"v1": 0, "v-2": 100}):
        assert ops.set_traffic(weights).traffic == weights
    with pytest.raises(InputError, match="takes 100%"):
        ops.remove_version("v-2")
    health = ops.remove_version("v1")
    assert health.traffic == {"v-2": 100}
    with pytest.raises(InputError, match="only version"):
        ops.remove_version("v-2")
    with pytest.raises(NotFoundError):
        ops.remove_version("v1")
    calls = [t.removeprefix("SageMaker.") for t in sagemaker_with_update]
    assert calls.count("CreateEndpointConfig") == 2 and calls.count("UpdateEndpoint") == 2
    assert calls.count("UpdateEndpointWeightsAndCapacities") == 3 and "CreateModel" in calls


def test_invoke_returns_the_container_reply(moto: str) -> None:
    _endpoint("answer", {"v1": 1.0})
    reply = {"choices": [{"message": {"role": "assistant", "content": "bonjour"}}]}
    results = {
        "region": REGION,
        "results": [
            {
                "Body": json.dumps(reply),
                "ContentType": "application/json",
                "InvokedProductionVariant": "v1",
                "CustomAttributes": "",
            }
        ],
    }
    urllib.request.urlopen(
        urllib.request.Request(
            f"{moto}/moto-api/static/sagemaker/endpoint-results",
            data=json.dumps(results).encode(),
            method="POST",
        )
    ).read()
    body = AwsOps("answer", REGION).invoke({"messages": [{"role": "user", "content": "hi"}]})
    assert json.loads(body) == reply


# -- a local fake of the runtime and Service Quotas APIs ---------------------------------


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack("!B", len(raw_name))
        + raw_name
        + b"\x07"
        + struct.pack("!H", len(raw_value))
        + raw_value
    )


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    raw_headers = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    head = prelude + struct.pack("!I", binascii.crc32(prelude))
    body = head + raw_headers + payload
    return body + struct.pack("!I", binascii.crc32(body))


def payload_part(data: bytes) -> bytes:
    return event_frame(
        {
            ":event-type": "PayloadPart",
            ":content-type": "application/octet-stream",
            ":message-type": "event",
        },
        data,
    )


class FakeAws:
    """Records requests; answers with the (status, headers, body) a test queues per path."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                key = self.headers.get("X-Amz-Target") or self.path
                status, headers, reply = fake.routes.get(key, (404, {}, b"{}"))
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(reply))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                del args  # Unused: keep test output quiet.

        return Handler


@contextmanager
def _serving(state: FakeAws) -> Iterator[str]:
    """The fake on a free 127.0.0.1 port; yields its URL, shut down afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake(fake_aws_env: Callable[[str], None]) -> Iterator[FakeAws]:
    state = FakeAws()
    with _serving(state) as url:
        fake_aws_env(url)
        # The quota check also counts what endpoints hold: none here.
        state.routes["SageMaker.ListEndpoints"] = (200, JSON_11, b'{"Endpoints": []}')
        yield state


@pytest.fixture
def quotas_beside_moto(moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAws]:
    """SageMaker on moto (real endpoints to count), Service Quotas on the fake (moto has none)."""
    state = FakeAws()
    with _serving(state) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", url)
        yield state


def test_streaming_invoke_signs_and_yields_chunks(fake: FakeAws) -> None:
    chunks = [b'data: {"delta": "Bon"}\n\n', b'data: {"delta": "jour"}\n\n', b"data: [DONE]\n\n"]
    fake.routes["/endpoints/chat/invocations-response-stream"] = (
        200,
        {
            "Content-Type": "application/vnd.amazon.eventstream",
            "X-Amzn-SageMaker-Content-Type": "text/event-stream",
        },
        b"".join(payload_part(c) for c in chunks),
    )
    request = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    got = list(AwsOps("chat", REGION).invoke(request, stream=True))
    assert got == chunks
    (sent,) = fake.requests
    assert sent["path"] == "/endpoints/chat/invocations-response-stream"
    assert json.loads(sent["body"]) == request
    assert sent["headers"]["Content-Type"] == "application/json"
    auth = SIGV4.match(sent["headers"]["Authorization"])
    assert auth and auth["service"] == "sagemaker"
    assert {"host", "x-amz-date", "content-type"} <= set(auth["signed"].split(";"))


def test_plain_invoke_path_and_signature(fake: FakeAws) -> None:
    fake.routes["/endpoints/chat/invocations"] = (200, {"Content-Type": "application/json"}, b"{}")
    assert AwsOps("chat", REGION).invoke('{"prompt": "x"}', variant="v2") == b"{}"
    (sent,) = fake.requests
    assert sent["path"] == "/endpoints/chat/invocations"
    assert sent["headers"]["X-Amzn-SageMaker-Target-Variant"] == "v2"
    assert SIGV4.match(sent["headers"]["Authorization"])


def test_stream_error_event_becomes_cloud_error(fake: FakeAws) -> None:
    error = event_frame(
        {
            ":exception-type": "ModelStreamError",
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps(
            {"Message": "model timed out", "ErrorCode": "ModelInvocationTimeExceeded"}
        ).encode(),
    )
    fake.routes["/endpoints/chat/invocations-response-stream"] = (
        200,
        {"Content-Type": "application/vnd.amazon.eventstream"},
        payload_part(b"data: partial\n\n") + error,
    )
    stream = AwsOps("chat", REGION).invoke({"prompt": "x"}, stream=True)
    assert next(stream) == b"data: partial\n\n"
    with pytest.raises(CloudError) as err:
        next(stream)
    assert "ModelStreamError" in err.value.message and "model timed out" in err.value.message


def test_model_error_and_access_denied_are_explained(fake: FakeAws) -> None:
    fake.routes["/endpoints/chat/invocations"] = (
        424,
        {"Content-Type": "application/json", "x-amzn-ErrorType": "ModelError"},
        json.dumps({"message": "bad request", "OriginalMessage": "max_tokens too large"}).encode(),
    )
    with pytest.raises(CloudError) as err:
        AwsOps("chat", REGION).invoke({"prompt": "x"})
    assert "max_tokens too large" in err.value.message
    fake.routes["/endpoints/chat/invocations"] = (
        403,
        {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException"},
        json.dumps({"message": "not authorized"}).encode(),
    )
    with pytest.raises(CloudError) as err:
        AwsOps("chat", REGION).invoke({"prompt": "x"})
    assert "sagemaker:InvokeEndpoint" in (err.value.hint or "")
    assert "endpoint/chat" in (err.value.hint or "")


def test_streaming_access_denied_names_both_invoke_actions(fake: FakeAws) -> None:
    fake.routes["/endpoints/chat/invocations-response-stream"] = (
        403,
        {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException"},
        json.dumps({"message": "not authorized"}).encode(),
    )
    with pytest.raises(CloudError) as err:
        list(AwsOps("chat", REGION).invoke({"prompt": "x"}, stream=True))
    hint = err.value.hint or ""
    assert "sagemaker:InvokeEndpointWithResponseStream" in hint
    assert "sagemaker:InvokeEndpoint " in hint and "endpoint/chat" in hint


QUOTAS = "ServiceQuotasV20190624.ListServiceQuotas"
DEFAULT_QUOTAS = "ServiceQuotasV20190624.ListAWSDefaultServiceQuotas"
JSON_11 = {"Content-Type": "application/x-amz-json-1.1"}


def _quota(name: str, value: float, code: str) -> dict[str, Any]:
    return {"ServiceCode": "sagemaker", "QuotaName": name, "QuotaCode": code, "Value": value}


def test_quota_check_against_the_applied_quota(fake: FakeAws) -> None:
    fake.routes[QUOTAS] = (
        200,
        JSON_11,
        json.dumps(
            {
                "Quotas": [
                    _quota("ml.g5.xlarge for endpoint usage", 8, "L-1"),
                    _quota("ml.g5.2xlarge for endpoint usage", 2, "L-2"),
                ]
            }
        ).encode(),
    )
    ops = AwsOps("chat", REGION)
    fits = ops.quota_check("ml.g5.2xlarge", 2)
    assert (fits.ok, fits.limit, fits.quota_code) == (True, 2.0, "L-2")
    too_many = ops.quota_check("ml.g5.2xlarge", 3)
    assert too_many.ok is False and "L-2" in too_many.reason
    body = json.loads(fake.requests[0]["body"])
    assert body["ServiceCode"] == "sagemaker"
    assert SIGV4.match(fake.requests[0]["headers"]["Authorization"])["service"] == "servicequotas"


def test_quota_check_falls_back_to_default_then_unknown(fake: FakeAws) -> None:
    fake.routes[QUOTAS] = (200, JSON_11, b'{"Quotas": []}')
    fake.routes[DEFAULT_QUOTAS] = (
        200,
        JSON_11,
        json.dumps({"Quotas": [_quota("ml.p5.48xlarge for endpoint usage", 0, "L-5")]}).encode(),
    )
    ops = AwsOps("chat", REGION)
    default = ops.quota_check("ml.p5.48xlarge", 1)
    assert default.ok is False and default.limit == 0
    missing = ops.quota_check("ml.g6.xlarge", 1)
    assert missing.ok is None and missing.reason.startswith("unknown")


def _g4dn_quota(limit: float) -> tuple[int, dict[str, str], bytes]:
    quota = _quota("ml.g4dn.2xlarge for endpoint usage", limit, "L-4D")
    return 200, JSON_11, json.dumps({"Quotas": [quota]}).encode()


def test_quota_check_counts_what_the_regions_endpoints_hold(quotas_beside_moto: FakeAws) -> None:
    _endpoint("busy", {"v1": 1.0})  # one ml.g4dn.2xlarge instance, InService in moto
    quotas_beside_moto.routes[QUOTAS] = _g4dn_quota(2)
    ops = AwsOps("chat", REGION)
    assert ops.instances_in_use("ml.g4dn.2xlarge") == 1
    assert ops.instances_in_use("ml.g6.xlarge") == 0
    fits = ops.quota_check("ml.g4dn.2xlarge", 1)
    assert (fits.ok, fits.in_use, fits.available) == (True, 1, 1.0)
    over = ops.quota_check("ml.g4dn.2xlarge", 2)
    assert over.ok is False and "1 in use" in over.reason
    assert (
        "aws service-quotas request-service-quota-increase --service-code sagemaker "
        "--quota-code L-4D --desired-value 3 --region eu-west-3"
    ) in over.reason


def test_target_quota_problem_names_the_quota_and_the_request_line(
    quotas_beside_moto: FakeAws, endpoint_args_aws: EndpointArgs
) -> None:
    def endpoint_args(**changes: Any) -> EndpointArgs:
        return dataclasses.replace(endpoint_args_aws, **changes)

    _endpoint("busy", {"v1": 1.0})
    quotas_beside_moto.routes[QUOTAS] = _g4dn_quota(2)
    args = endpoint_args(instance_type="ml.g4dn.2xlarge", replicas_min=2, replicas_max=2)
    problem = TARGET.quota_problem(args)
    assert problem is not None
    assert problem.quota_name == "ml.g4dn.2xlarge for endpoint usage"
    assert (problem.needed, problem.available) == (2.0, 1.0)
    assert "--quota-code L-4D --desired-value 3 --region eu-west-3" in problem.request_hint
    assert "quota 'ml.g4dn.2xlarge for endpoint usage': needs 2, 1 available" in problem.message()
    assert TARGET.quota_problem(endpoint_args(instance_type="ml.g4dn.2xlarge")) is None


def test_target_quota_unknown_is_a_cloud_error(
    fake: FakeAws, endpoint_args_aws: EndpointArgs
) -> None:
    def endpoint_args() -> EndpointArgs:
        return endpoint_args_aws

    fake.routes[QUOTAS] = (200, JSON_11, b'{"Quotas": []}')
    fake.routes[DEFAULT_QUOTAS] = (200, JSON_11, b'{"Quotas": []}')
    with pytest.raises(
        CloudError, match=re.escape("no quota named 'ml.g5.2xlarge for endpoint usage'")
    ):
        TARGET.quota_problem(endpoint_args())
    fake.routes[QUOTAS] = _quota_reply("ml.g5.2xlarge", 4)
    fake.routes["SageMaker.ListEndpoints"] = (
        400,
        JSON_11,
        json.dumps({"__type": "AccessDeniedException", "message": "no"}).encode(),
    )
    with pytest.raises(CloudError, match="sagemaker:ListEndpoints"):
        TARGET.quota_problem(endpoint_args())


def _quota_reply(instance_type: str, limit: float) -> tuple[int, dict[str, str], bytes]:
    quota = _quota(f"{instance_type} for endpoint usage", limit, "L-X")
    return 200, JSON_11, json.dumps({"Quotas": [quota]}).encode()


def test_quota_check_without_permission_is_unknown_not_an_error(fake: FakeAws) -> None:
    fake.routes[QUOTAS] = (
        400,
        JSON_11,
        json.dumps({"__type": "AccessDeniedException", "message": "no"}).encode(),
    )
    check = AwsOps("chat", REGION).quota_check("ml.g5.2xlarge", 1)
    assert check.ok is None and "servicequotas:ListServiceQuotas" in check.reason
