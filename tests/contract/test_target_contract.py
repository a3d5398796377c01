"""
One contract for every target: plan → EndpointArgs → component under mocks → outputs → ops
from those outputs → status in the one EndpointHealth shape, against a stand-in of the cloud.

Parametrised over `mdeploy.targets.TARGET_NAMES`. A fifth target is checked by this same test
with files in its own folder only: its `contract.py` gives the stand-in (its status route on
127.0.0.1, or none when its status needs no network), the catalog target it is planned
through (PLACEMENT) and whether it implements the TrafficOps capability (TRAFFIC_OPS). The
throwaway `echo_target/` below is such a target, plugged in from a temporary folder.
"""

from __future__ import annotations

import importlib
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from httpfakes import JsonHandler
from targetfolders import joined_target_root

from mdeploy.catalog import CATALOG_DIR_ENV
from mdeploy.catalog._store import BUNDLED_DIR
from mdeploy.deploy.mocks import MockSession
from mdeploy.deploy.program import resolve
from mdeploy.spec import load_spec
from mdeploy.targets import (
    TARGET_NAMES,
    get_target,
    output_names,
    placement_names,
    registry_provider,
    target_names,
)
from mdeploy.targets.base import HEALTH_STATES, EndpointHealth, Ops, TrafficOps

DIGEST = "sha256:" + "5c" * 32
SPEC = f"""\
apiVersion: mdeploy/v1
kind: Deployment
metadata:
  name: mistral-7b-chat
  labels: {{team: platform}}
model:
  id: mistralai/Mistral-7B-Instruct-v0.3
  source: hf://mistralai/Mistral-7B-Instruct-v0.3
  revision: e0bc86c23ce5aae1db576c8cca6f06f1f73af2db
  max_context: 16384
serving:
  image: ghcr.io/mdeploy/vllm-adapter@{DIGEST}
  replicas: {{min: 1, max: 2}}
  auth: key
  secrets: {{HF_TOKEN: env:HF_TOKEN}}
placement:
  clouds: [{{clouds}}]
  residency: [EU]
"""
# The catalog target each deploy target is planned through in the spec above.
PLACEMENT = {"aws": "aws", "azure": "azure", "gcp": "gcp", "kubernetes": "coreweave"}
EXTRA_CONFIG = {"gcp": {"mdeploy:project": "p-123456"}}
# Whether Target.ops() returns the optional TrafficOps capability (Kubernetes: replica-
# proportional weights, see kubernetes/ops.py).
TRAFFIC_OPS = {"aws": True, "azure": True, "gcp": True, "kubernetes": True}
TOKEN = "contract-token"


def _outputs(target_name: str, spec_file: Path) -> dict[str, Any]:
    """The stack outputs `up` would export, from the real component under the mock engine."""
    resolved = resolve(load_spec(spec_file), _contract_of(target_name)[1])
    target = get_target(target_name)
    config = {**target.stack_config(resolved.args), **EXTRA_CONFIG.get(target_name, {})}
    with MockSession(config=config) as session:
        component = session.run(lambda: target.component("endpoint", resolved.args))
        return {
            name: session.resolve(getattr(component, name))
            for name in output_names()
            if hasattr(component, name)
        }


# ---- stand-ins, one per target -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _json_server(route: Callable[[str, str], tuple[int, Any]]) -> Iterator[str]:
    """A JSON HTTP server on 127.0.0.1 answering `route(method, path)`; yields its URL."""

    class Handler(JsonHandler):
        def _answer(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                status, body = 401, {"error": {"message": "no token"}}
            else:
                status, body = route(self.command, urlsplit(self.path).path)
            self._send(status, body)

        do_GET = do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _aws(outputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A moto server holding the endpoint the outputs name, in their region."""
    boto3 = pytest.importorskip("boto3")
    port = _free_port()
    proc = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto_server did not start")
                time.sleep(0.1)
        for var, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": url,
        }.items():
            monkeypatch.setenv(var, value)
        region = outputs["endpoint_url"].split(".")[2]
        name = outputs["endpoint_name"]
        sm = boto3.client("sagemaker", region_name=region)
        sm.create_model(
            ModelName=f"{name}-m",
            ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
            PrimaryContainer={"Image": outputs["image"]},
        )
        sm.create_endpoint_config(
            EndpointConfigName=f"{name}-c",
            ProductionVariants=[
                {"VariantName": "primary", "ModelName": f"{name}-m", "InitialInstanceCount": 1,
                 "InstanceType": "ml.g4dn.2xlarge", "InitialVariantWeight": 1.0}
            ],
        )  # fmt: skip
        sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-c")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def _azure(outputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An ARM stand-in answering for whatever endpoint the outputs name."""
    from azure.core.credentials import AccessToken

    from mdeploy.targets.azure import arm as azure_arm

    def route(method: str, path: str) -> tuple[int, Any]:
        if method == "GET" and path.endswith("/deployments"):
            deployment = {
                "name": outputs["deployment_name"],
                "sku": {"name": "Default", "capacity": 1},
                "properties": {"provisioningState": "Succeeded", "environmentId": "env"},
            }
            return 200, {"value": [deployment]}
        if method == "GET" and "/onlineEndpoints/" in path:
            props = {
                "provisioningState": "Succeeded",
                "scoringUri": outputs["endpoint_url"],
                "authMode": "Key",
                "traffic": {outputs["deployment_name"]: 100},
            }
            return 200, {"name": path.rsplit("/", 1)[1], "location": "x", "properties": props}
        return 404, {"error": {"code": "NotFound", "message": path}}

    class Credential:
        def get_token(self, *scopes: str, **_: Any) -> AccessToken:
            return AccessToken(TOKEN, 2_000_000_000)

    with _json_server(route) as url:
        monkeypatch.setenv(azure_arm.ARM_URL_ENV, url)
        monkeypatch.setattr(azure_arm, "default_credential", Credential)
        yield


@contextmanager
def _gcp(outputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A Vertex stand-in answering for the endpoint the outputs name."""
    from mdeploy.targets.gcp import ops as gcp_ops
    from mdeploy.targets.gcp import registry as gcp_registry

    model = "projects/1/locations/europe-west4/models/7"

    def route(method: str, path: str) -> tuple[int, Any]:
        name = path.removeprefix("/v1/")
        if method == "GET" and name == outputs["endpoint_name"]:
            deployed = {
                "id": "42",
                "model": model,
                "modelVersionId": "1",
                "displayName": "v1",
                "dedicatedResources": {"minReplicaCount": 1, "maxReplicaCount": 2},
            }
            return 200, {"name": name, "deployedModels": [deployed], "trafficSplit": {"42": 100}}
        if method == "GET" and name == f"{model}@1":
            return 200, {"name": name, "containerSpec": {"imageUri": outputs["image"]}}
        return 404, {"error": {"code": 404, "message": name}}  # fmt: skip

    with _json_server(route) as url:
        monkeypatch.setenv(gcp_ops.API_URL_ENV, url)
        monkeypatch.setattr(gcp_registry, "_access_token", lambda credentials: TOKEN)
        yield


@contextmanager
def _no_network(outputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Kubernetes: the cluster-internal URL is reported, not probed; no kubeconfig, so the
    versions are the outputs' one Deployment (tests/targets/test_kubernetes_ops.py has the
    API server stand-in)."""
    del outputs
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    yield


FAKES: dict[str, Callable[..., Any]] = {
    "aws": _aws,
    "azure": _azure,
    "gcp": _gcp,
    "kubernetes": _no_network,
}


# ---- the contract ---------------------------------------------------------------------------


def _spec_text() -> str:
    """The contract spec over every registered placement target (pools need their own spec)."""
    return SPEC.replace("{clouds}", ", ".join(n for n in placement_names() if n != "kubernetes"))


@pytest.fixture
def spec_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_TOKEN", "hf_contractTOKEN0123456789")
    path = tmp_path / "spec.yaml"
    path.write_text(_spec_text())
    return path


def _contract_of(target_name: str) -> tuple[Callable[..., Any], str, bool]:
    """(stand-in, placement, has TrafficOps): this file's tables, else the folder's contract.py."""
    if target_name in FAKES:
        return FAKES[target_name], PLACEMENT[target_name], TRAFFIC_OPS[target_name]
    module = importlib.import_module(f"mdeploy.targets.{target_name}.contract")
    return module.standin, module.PLACEMENT, module.TRAFFIC_OPS


@pytest.mark.parametrize("target_name", TARGET_NAMES)
def test_every_target_keeps_the_day2_contract(
    target_name: str, spec_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_contract(target_name, spec_file, monkeypatch)


def check_contract(target_name: str, spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """plan → args → component under mocks → outputs → ops → status in the one shape."""
    standin, _, traffic_ops = _contract_of(target_name)
    outputs = _outputs(target_name, spec_file)
    assert outputs.get("endpoint_name") and outputs.get("endpoint_url"), outputs.keys()
    with standin(outputs, monkeypatch):
        ops = get_target(target_name).ops(outputs)
        assert isinstance(ops, Ops)
        assert isinstance(ops, TrafficOps) is traffic_ops
        health = ops.status()
    assert isinstance(health, EndpointHealth) and health.state in HEALTH_STATES
    doc = json.loads(json.dumps(health.to_json()))
    assert set(doc) == {"state", "url", "region", "versions", "replicas", "detail", "details"}
    assert doc["url"] and doc["versions"], doc
    for version in doc["versions"]:
        assert set(version) == {
            "name", "traffic_percent", "image", "model_revision", "replicas", "state"
        }  # fmt: skip
    assert sum(v["traffic_percent"] for v in doc["versions"]) == 100
    assert "hf_contractTOKEN" not in json.dumps(doc)
    if target_name != "kubernetes":  # its URL is cluster-internal: reported, not probed
        assert health.state == "ready", health


# ---- a fifth target, written from docs/adding-a-target.md, in its own folder only --------

ECHO = Path(__file__).resolve().parent / "echo_target"


@pytest.fixture
def echo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The echo folder copied to a temporary `targets/` root, plus its catalog rows.

    Nothing under mdeploy/ changes: the root joins `mdeploy.targets.__path__`, the catalog is
    the bundled one plus the echo rows (copies of the coreweave rows) in MDEPLOY_CATALOG_DIR.
    """
    root = tmp_path / "targets"
    shutil.copytree(ECHO, root / "echo", ignore=shutil.ignore_patterns("__pycache__"))
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for name in ("offers.csv", "regions.csv"):
        lines = (BUNDLED_DIR / name).read_text(encoding="utf-8").splitlines(keepends=True)
        rows = [line for line in lines[1:] if line.startswith("coreweave,")]
        assert rows, f"no coreweave rows to copy in {name}"
        echo_rows = ["echo," + line.removeprefix("coreweave,") for line in rows]
        (catalog / name).write_text("".join(lines + echo_rows), encoding="utf-8")
    monkeypatch.setenv(CATALOG_DIR_ENV, str(catalog))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with joined_target_root(root, "echo") as name:
        yield name


def test_the_fifth_target_is_registered_from_its_folder(echo: str) -> None:
    assert echo in target_names() and echo in placement_names()
    assert get_target(echo).name == echo
    assert "echo_note" in output_names()
    assert registry_provider("echo.registry.test") == echo
    from mdeploy.cli._common import missing_package_hint

    assert "mdeploy[echo]" in missing_package_hint("pulumi_kubernetes")


def test_the_fifth_target_keeps_the_day2_contract(
    echo: str, spec_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "echo" in spec_file.read_text()  # the spec's clouds come from the registry
    check_contract(echo, spec_file, monkeypatch)


def test_a_spec_naming_an_unregistered_cloud_is_refused(tmp_path: Path) -> None:
    from mdeploy.errors import MdeployError

    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("{clouds}", "aws, echo"))
    with pytest.raises(MdeployError) as caught:
        load_spec(path)
    assert "echo" in str(caught.value)
