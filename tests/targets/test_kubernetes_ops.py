"""
KubernetesOps as a TrafficOps against a fake API server on 127.0.0.1 (HTTP level).

The fake keeps Deployments and HorizontalPodAutoscalers of one namespace, answers list (with a
label selector), get, create, merge-patch and delete, and checks the kubeconfig's bearer
token. Weights are replica-proportional: the tests check the achieved split and the asked one.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from httpfakes import JsonHandler

from mdeploy.errors import InputError, PrerequisiteError
from mdeploy.targets.base import NotFoundError, Ops, TrafficOps, VersionSpec
from mdeploy.targets.kubernetes.ops import VERSION_LABEL, KubernetesOps, KubernetesTrafficOps

TOKEN = "kube-token-3c1"
NS = "mdeploy"
NAME = "mistral-7b-chat"
IMAGE = "ghcr.io/mdeploy/vllm-adapter@sha256:" + "ab" * 32
SELECTOR = {"app.kubernetes.io/name": "mdeploy", "app.kubernetes.io/instance": NAME}


def _deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS, "labels": dict(SELECTOR)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(SELECTOR)},
            "template": {
                "metadata": {"labels": {**SELECTOR, "app.kubernetes.io/version": "1"}},
                "spec": {
                    "containers": [
                        {"name": "vllm", "image": IMAGE,
                         "env": [{"name": "MDEPLOY_MODEL_REVISION", "value": "r1"}],
                         "resources": {"limits": {"nvidia.com/gpu": "1"}}}
                    ]
                },
            },
        },
        "status": {"readyReplicas": replicas},
    }  # fmt: skip


class FakeApi:
    def __init__(self) -> None:
        self.deployments: dict[str, dict[str, Any]] = {NAME: _deployment(2)}
        self.hpas: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []


class _Handler(JsonHandler):
    server: Any

    def _handle(self) -> None:
        api: FakeApi = self.server.api
        parts = urlsplit(self.path)
        api.calls.append((self.command, parts.path))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"message": "Unauthorized"})
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        base = f"/apis/apps/v1/namespaces/{NS}/deployments"
        if parts.path == f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers":
            return self._send(200, {"items": api.hpas})
        if parts.path == base and self.command == "GET":
            wanted = dict(
                item.split("=", 1)
                for item in unquote(parse_qs(parts.query)["labelSelector"][0]).split(",")
            )
            items = [
                d for d in api.deployments.values()
                if wanted.items() <= d["metadata"]["labels"].items()
            ]  # fmt: skip
            return self._send(200, {"kind": "DeploymentList", "items": items})
        if parts.path == base and self.command == "POST":
            name = body["metadata"]["name"]
            if name in api.deployments:
                return self._send(409, {"message": "AlreadyExists"})
            selector = body["spec"]["selector"]["matchLabels"]
            assert selector.items() <= body["spec"]["template"]["metadata"]["labels"].items()
            api.deployments[name] = {**copy.deepcopy(body), "status": {}}
            return self._send(201, body)
        name = parts.path.removeprefix(base + "/")
        if name not in api.deployments:
            return self._send(404, {"message": f'deployments.apps "{name}" not found'})
        if self.command == "PATCH":
            assert self.headers["Content-Type"] == "application/merge-patch+json"
            replicas = body["spec"]["replicas"]
            api.deployments[name]["spec"]["replicas"] = replicas
            api.deployments[name]["status"] = {"readyReplicas": replicas}
            return self._send(200, api.deployments[name])
        if self.command == "DELETE":
            return self._send(200, api.deployments.pop(name))
        return self._send(200, api.deployments[name])

    do_GET = do_POST = do_PATCH = do_DELETE = _handle


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApi, Path]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.api = FakeApi()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "cw",
                "contexts": [{"name": "cw", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"},
                    }
                ],
                "users": [{"name": "u", "user": {"token": TOKEN}}],
            }
        )
    )
    try:
        yield server.api, kubeconfig  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def _ops(kubeconfig: Path) -> KubernetesTrafficOps:
    outputs = {
        "endpoint_name": NAME,
        "endpoint_url": f"http://{NAME}.{NS}.svc.cluster.local",
        "namespace": NS,
        "service_name": NAME,
    }
    return KubernetesTrafficOps(outputs, context="cw", kubeconfig=[kubeconfig])


def test_versions_come_from_the_clusters_deployments(api: tuple[FakeApi, Path]) -> None:
    _, kubeconfig = api
    ops = _ops(kubeconfig)
    assert isinstance(ops, Ops) and isinstance(ops, TrafficOps)
    plain = KubernetesOps(ops.outputs, context="cw", kubeconfig=[kubeconfig])
    assert not isinstance(plain, TrafficOps) and plain.status().traffic == {NAME: 100}
    health = ops.status()
    assert health.state == "unknown"  # cluster-internal URL: not probed
    assert health.traffic == {NAME: 100} and health.replicas == 2
    (version,) = health.versions
    assert (version.image, version.model_revision, version.state) == (IMAGE, "r1", "2/2 ready")
    assert health.details["traffic_model"] == "replica-proportional"


def test_a_second_version_is_deployed_shifted_and_the_old_one_removed(
    api: tuple[FakeApi, Path],
) -> None:
    fake, kubeconfig = api
    ops = _ops(kubeconfig)
    new_image = IMAGE.replace("ab" * 32, "cd" * 32)
    health = ops.deploy_version(VersionSpec("v-2", new_image, model_revision="r2"))
    assert health.traffic == {NAME: 100, "v-2": 0}
    created = fake.deployments[f"{NAME}-v-2"]
    assert created["spec"]["selector"]["matchLabels"][VERSION_LABEL] == "v-2"
    pod_labels = created["spec"]["template"]["metadata"]["labels"]
    assert SELECTOR.items() <= pod_labels.items()  # the Service selects the new pods too
    assert health.version("v-2").model_revision == "r2"
    assert created["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": "1"}
    }
    with pytest.raises(InputError, match="already has"):
        ops.deploy_version(VersionSpec("v-2", new_image))
    # Two replicas in all: 50/50 is exact, 10/90 is as close as two replicas allow.
    assert ops.set_traffic({NAME: 50, "v-2": 50}).traffic == {NAME: 50, "v-2": 50}
    shifted = ops.set_traffic({NAME: 10, "v-2": 90})
    assert shifted.traffic == {NAME: 50, "v-2": 50}
    assert shifted.details["requested_traffic"] == {NAME: 10, "v-2": 90}
    assert ops.set_traffic({NAME: 0, "v-2": 100}).traffic == {NAME: 0, "v-2": 100}
    assert fake.deployments[f"{NAME}-v-2"]["spec"]["replicas"] == 2
    with pytest.raises(InputError, match="takes 100%"):
        ops.remove_version("v-2")
    assert ops.remove_version(NAME).traffic == {"v-2": 100}
    with pytest.raises(InputError, match="only version"):
        ops.remove_version("v-2")


def test_weights_are_refused_while_an_hpa_owns_the_replicas(api: tuple[FakeApi, Path]) -> None:
    fake, kubeconfig = api
    fake.hpas.append({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": NAME}}})
    ops = _ops(kubeconfig)
    ops.deploy_version(VersionSpec("v-2", IMAGE))
    with pytest.raises(PrerequisiteError, match="HorizontalPodAutoscaler"):
        ops.set_traffic({NAME: 50, "v-2": 50})
    assert not [c for c in fake.calls if c[0] == "PATCH"]


def test_a_missing_deployment_is_not_found_and_status_falls_back(
    api: tuple[FakeApi, Path],
) -> None:
    fake, kubeconfig = api
    fake.deployments.clear()
    ops = _ops(kubeconfig)
    with pytest.raises(NotFoundError):
        ops.versions()
    health = ops.status()
    assert health.traffic == {NAME: 100}
    assert "stack outputs" in health.details["versions_from"]


@pytest.mark.parametrize(
    ("weights", "total", "replicas"),
    [
        ({"a": 10, "b": 90}, 2, {"a": 1, "b": 1}),  # as close as two replicas allow
        ({"a": 10, "b": 90}, 10, {"a": 1, "b": 9}),
        ({"a": 100, "b": 0}, 3, {"a": 3, "b": 0}),
        ({"a": 1, "b": 1, "c": 98}, 2, {"a": 1, "b": 1, "c": 1}),  # grows: one each
    ],
)
def test_replicas_follow_the_weights(
    weights: dict[str, int], total: int, replicas: dict[str, int]
) -> None:
    from mdeploy.targets.kubernetes.ops import _apportion

    assert _apportion(weights, total) == replicas
