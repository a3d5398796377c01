"""
The region check `up` runs on Kubernetes, against a fake API server on 127.0.0.1.

The fake answers GET /api/v1/nodes with a NodeList (as the API server does) and checks the
bearer token the kubeconfig gives; the kubeconfig points at it, as kubectl's would.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from httpfakes import JsonHandler

from mdeploy.deploy.prereqs import check_placement
from mdeploy.errors import PrerequisiteError
from mdeploy.targets import get_target
from mdeploy.targets.base import EndpointArgs
from mdeploy.targets.kubernetes.nodes import (
    NodeListError,
    labels_hint,
    list_node_labels,
    region_problem,
)
from mdeploy.targets.kubernetes.target import TARGET

TOKEN = "fake-bearer-token"


def _node(name: str, region: str | None, zone: str | None) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if region:
        labels["topology.kubernetes.io/region"] = region
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    return {"metadata": {"name": name, "labels": labels}}


class FakeApiServer:
    """GET /api/v1/nodes → a NodeList; 401 without the bearer token; records each request."""

    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes, self.paths = nodes, []
        server = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, {"kind": "Status", "code": 401})
                elif self.path == "/api/v1/nodes":
                    self._send(200, {"kind": "NodeList", "apiVersion": "v1", "items": server.nodes})
                else:
                    self._send(404, {"kind": "Status", "code": 404})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeApiServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _kubeconfig(tmp_path: Path, server: str, token: str = TOKEN, token_file: bool = False) -> Path:
    user = {"tokenFile": "token.txt"} if token_file else {"token": token}
    if token_file:
        (tmp_path / "token.txt").write_text(token + "\n")
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "cw",
        "contexts": [{"name": "cw", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
    }
    path = tmp_path / "config"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def eu_cluster() -> Iterator[FakeApiServer]:
    nodes = [
        _node("cpu-1", "EU-SOUTH-04", "EU-SOUTH-04A"),
        _node("gpu-1", "EU-SOUTH-04", "EU-SOUTH-04A"),
    ]
    with FakeApiServer(nodes) as server:
        yield server


def _args(base: EndpointArgs, region: str) -> EndpointArgs:
    return dataclasses.replace(base, region=region)


def test_a_region_no_node_carries_is_refused_at_up(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    eu_cluster: FakeApiServer,
    endpoint_args_coreweave,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, eu_cluster.url)))
    target = get_target("coreweave")
    with pytest.raises(PrerequisiteError) as caught:
        check_placement(target, _args(endpoint_args_coreweave, "US-EAST-04A"))
    assert "'US-EAST-04A'" in caught.value.message
    assert "EU-SOUTH-04A" in caught.value.message  # what the nodes do carry
    assert "kubectl get nodes -L topology.kubernetes.io/region" in caught.value.hint
    assert caught.value.exit_code == 3
    assert eu_cluster.paths == ["/api/v1/nodes"]


@pytest.mark.parametrize("region", ["EU-SOUTH-04A", "EU-SOUTH-04"])
def test_a_node_in_the_zone_or_region_passes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    eu_cluster: FakeApiServer,
    endpoint_args_coreweave,
    region: str,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, eu_cluster.url, token_file=True)))
    check_placement(TARGET, _args(endpoint_args_coreweave, region))
    assert eu_cluster.paths == ["/api/v1/nodes"]


def test_a_generic_cluster_pool_asks_the_cluster_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    eu_cluster: FakeApiServer,
    endpoint_args_coreweave,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, eu_cluster.url)))
    check_placement(TARGET, _args(endpoint_args_coreweave, "cluster"))
    assert eu_cluster.paths == []


def test_an_unreadable_node_list_is_a_prerequisite_error_not_a_pass(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    eu_cluster: FakeApiServer,
    endpoint_args_coreweave,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, eu_cluster.url, token="wrong")))
    with pytest.raises(PrerequisiteError, match="HTTP 401") as caught:
        check_placement(TARGET, _args(endpoint_args_coreweave, "EU-SOUTH-04A"))
    assert "wrong" not in caught.value.message + (caught.value.hint or "")


def test_other_targets_are_not_checked(endpoint_args_azure) -> None:
    check_placement(get_target("azure"), endpoint_args_azure)  # no cluster, no call, no error


def test_unreachable_server_names_it(tmp_path: Path) -> None:
    with FakeApiServer([]) as server:
        url = server.url
    with pytest.raises(NodeListError, match="unreachable"):
        list_node_labels(None, [_kubeconfig(tmp_path, url)])


def test_exec_plugin_token_is_used(tmp_path: Path, eu_cluster: FakeApiServer) -> None:
    path = _kubeconfig(tmp_path, eu_cluster.url)
    doc = json.loads(path.read_text())
    credential = {"status": {"token": TOKEN}}
    doc["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "python3",
            "args": ["-c", f"print({json.dumps(json.dumps(credential))})"],
        }
    }
    path.write_text(json.dumps(doc))
    labels = list_node_labels("cw", [path])
    assert {n["topology.kubernetes.io/zone"] for n in labels} == {"EU-SOUTH-04A"}


def test_region_problem_lists_what_it_saw() -> None:
    assert region_problem("cluster", []) is None
    assert "no node carries" in (region_problem("FR-1", [{"kubernetes.io/hostname": "a"}]) or "")
    assert labels_hint("cw") == (
        "kubectl --context cw get nodes -L "
        "topology.kubernetes.io/region,topology.kubernetes.io/zone"
    )
