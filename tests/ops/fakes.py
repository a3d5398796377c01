"""
Stand-ins for promote's collaborators: an in-memory TrafficOps, a clock, metrics.

`MemoryOps` enforces the platform rules every target enforces (tested in
tests/targets/test_base_contract.py): weights are whole percentages adding up to 100 over
known versions, a version with traffic (or the last one) cannot be removed, a name cannot be
deployed twice. It records every call, and can be told to answer smoke requests with an
error while a given version takes traffic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mdeploy.errors import CloudError, InputError
from mdeploy.ops.checks import MetricsSample
from mdeploy.targets.base import (
    EndpointHealth,
    NotFoundError,
    VersionHealth,
    VersionSpec,
    refuse_removal,
    validate_weights,
)

OLD_IMAGE = "registry.example.com/vllm@sha256:" + "11" * 32
NEW_IMAGE = "registry.example.com/vllm@sha256:" + "22" * 32


@dataclass
class MemoryOps:
    """One endpoint with versions and traffic, in memory."""

    versions_: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "v-1": {"image": OLD_IMAGE, "model_revision": "r1", "replicas": 1, "traffic": 100}
        }
    )
    calls: list[tuple[str, Any]] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)  # versions whose replies are errors
    on_set_traffic: Callable[[dict[str, int]], None] | None = None

    def status(self) -> EndpointHealth:
        return EndpointHealth(state="ready", region="memory", versions=self.versions())

    def versions(self) -> list[VersionHealth]:
        return [
            VersionHealth(
                name, v["traffic"], v["image"], v["model_revision"], v["replicas"], "ready"
            )
            for name, v in self.versions_.items()
        ]

    def invoke(
        self, body: bytes | str | Mapping[str, Any], *, stream: bool = False
    ) -> bytes | Iterator[bytes]:
        self.calls.append(("invoke", None))
        if any(self.versions_[n]["traffic"] > 0 for n in self.broken if n in self.versions_):
            raise CloudError("HTTP 500 from the endpoint: model crashed")
        return json.dumps({"choices": [{"message": {"content": "ready"}}]}).encode()

    def deploy_version(self, spec_version: VersionSpec) -> EndpointHealth:
        self.calls.append(("deploy_version", spec_version.name))
        if spec_version.name in self.versions_:
            raise InputError(f"already has a version {spec_version.name}")
        self.versions_[spec_version.name] = {
            "image": spec_version.image,
            "model_revision": spec_version.model_revision,
            "replicas": spec_version.replicas,
            "traffic": 0,
        }
        return self.status()

    def set_traffic(self, weights: dict[str, int]) -> EndpointHealth:
        self.calls.append(("set_traffic", dict(weights)))
        if self.on_set_traffic is not None:
            self.on_set_traffic(weights)
        split = validate_weights(weights, list(self.versions_))
        for name, pct in split.items():
            self.versions_[name]["traffic"] = pct
        return self.status()

    def remove_version(self, name: str) -> EndpointHealth:
        self.calls.append(("remove_version", name))
        if name not in self.versions_:
            raise NotFoundError(f"no version {name!r}")
        refuse_removal(self.status(), name)
        del self.versions_[name]
        return self.status()

    @property
    def traffic(self) -> dict[str, int]:
        return {n: v["traffic"] for n, v in self.versions_.items()}

    def named(self, verb: str) -> list[Any]:
        return [arg for call, arg in self.calls if call == verb]


class FakeClock:
    """Time moves only when the promotion bakes; `on_sleep` can interrupt a bake."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0
        self.slept: list[float] = []
        self.on_sleep: Callable[[int], None] | None = None

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(len(self.slept))
        self.t += seconds


@dataclass
class ScriptedMetrics:
    """A MetricsSource answering per traffic step: percent → (requests, errors, p95 ms)."""

    ops: Any
    by_percent: dict[int, tuple[float, float | None, float | None]]
    name: str = "scripted"

    def mark(self, version: str) -> int:
        return int(self.ops.status().traffic.get(version, 0))

    def read(self, version: str, mark: Any) -> MetricsSample:
        del version
        requests, errors, p95 = self.by_percent.get(mark, (100.0, 0.0, 100.0))
        return MetricsSample(requests, errors, p95, source=self.name)


def vertex_api() -> Any:
    """The Vertex REST fake of tests/targets/test_gcp_ops.py with one model at 100 %.

    Its deployed-model ids are never reused: the base fake derives them from the count of
    deployed models, so deploy → undeploy → deploy (a promotion, then a rollback) would
    repeat one.
    """
    import pytest

    gcp = pytest.importorskip("targets.test_gcp_ops")

    class Api(gcp.FakeVertexApi):
        next_id = 500

        def deploy(self, body: dict[str, Any]) -> dict[str, Any]:
            Api.next_id += 1
            deployed = dict(body["deployedModel"])
            model, _, version = deployed.pop("model").partition("@")
            assert f"{model}@{version}" in self.models, deployed
            new_id = str(Api.next_id)
            self.deployed.append(
                {**deployed, "id": new_id, "model": model, "modelVersionId": version}
            )
            split = {(new_id if k == "0" else k): int(v) for k, v in body["trafficSplit"].items()}
            assert sum(split.values()) == 100, split
            self.split = split
            return self.operation({"deployedModel": {"id": new_id}})

    api = Api()
    api.deployed = [gcp._deployed("111", "1")]
    api.split = {"111": 100}
    return api
