"""
Day-2 operations for a Kubernetes endpoint, kept deliberately small and honest.

No Kubernetes client library: status comes from the stack outputs plus an HTTP probe of the
adapter's readiness route (`/ready`, 200 only once the model is loaded) at the endpoint URL.
A cluster-internal URL (*.svc.cluster.local) cannot be probed from outside the cluster; the
status then says so and how to reach it (`kubectl port-forward`). Standard library only.

Versions are Deployments behind the stack's one Service (KubernetesTrafficOps): each version's pods
carry the Service's selector labels plus `mdeploy.io/version`, so the Service sends each
version a share of the requests proportional to its ready replicas. Weights are therefore
replica-proportional, and only as fine as the replica count allows: 10/90 over 2 replicas
becomes 50/50 (a version with a non-zero weight keeps at least one replica); status reports
what was achieved, `details.requested_traffic` what was asked. A HorizontalPodAutoscaler
owns the replicas it targets, so weights are refused while one does (replicas.min < max);
Gateway API HTTPRoute weights would lift both limits, but the component creates no route
yet. The stack's Deployment keeps its (immutable) selector, which also matches the new
version's pods: the controllers tell them apart by owner references, but Kubernetes warns
against overlapping selectors, one more reason for HTTPRoute weights later. Cluster calls
use the kube context's kubeconfig entry (nodes.api_call), stdlib only.
When the cluster cannot be asked, status reports the stack's Deployment as its one version.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdeploy.errors import CloudError, InputError, PrerequisiteError
from mdeploy.targets.base import (
    REVISION_ENV,
    EndpointHealth,
    NotFoundError,
    VersionHealth,
    VersionSpec,
    base_version,
    percentages,
    refuse_removal,
    total_replicas,
    validate_weights,
)

__all__ = ["KubernetesOps", "KubernetesTrafficOps"]

READY_PATH = "/ready"  # mdeploy.serve.contract.READINESS_ROUTE
CHAT_PATH = "/v1/chat/completions"
VERSION_LABEL = "mdeploy.io/version"
INSTANCE_LABEL = "app.kubernetes.io/instance"  # podspec.selector_labels
MERGE_PATCH = "application/merge-patch+json"


@dataclass
class KubernetesOps:
    """Status and a smoke test for one deployed stack, from its outputs."""

    outputs: dict[str, Any]
    timeout_s: float = 5.0
    context: str | None = None  # placement.kubernetes.context; None = the current context
    kubeconfig: list[Path] | None = None  # default: KUBECONFIG or ~/.kube/config

    @property
    def url(self) -> str:
        return str(self.outputs.get("endpoint_url") or "").rstrip("/")

    @property
    def in_cluster_only(self) -> bool:
        return ".svc.cluster.local" in self.url

    def status(self) -> EndpointHealth:
        """`ready` (model loaded), `loading` (adapter up, model not yet), or why unknown."""
        state, detail, details = self._probe()
        try:
            versions = self.versions()
            details["traffic_model"] = "replica-proportional"
        except CloudError as exc:  # no kubeconfig or no API access: what the outputs say
            versions = self._output_versions()
            details["versions_from"] = f"stack outputs ({exc.message})"
        return EndpointHealth(
            state=state,
            url=self.url or None,
            region=None,  # the plan's region is the node affinity; the URL does not say it
            versions=versions,
            replicas=total_replicas(versions),
            details={
                "namespace": self.outputs.get("namespace"),
                "service_name": self.outputs.get("service_name"),
                **details,
            },
            detail=detail,
        )

    def _output_versions(self) -> list[VersionHealth]:
        name = str(self.outputs.get("endpoint_name") or "")
        if not name:
            return []
        return [VersionHealth(name=name, traffic_percent=100, image=self.outputs.get("image"))]

    # -- versions (TrafficOps: Deployments behind one Service) -----------------------------

    def versions(self) -> list[VersionHealth]:
        """The stack's Deployments as versions; traffic is their share of the replicas."""
        deployments = self._deployments()
        shares = percentages({_version_name(d): _replicas(d) for d in deployments})
        return [_version(d, shares[_version_name(d)]) for d in deployments]

    @property
    def _name(self) -> str:
        return str(self.outputs.get("endpoint_name") or "")

    def _path(self, name: str | None = None) -> str:
        ns = urllib.parse.quote(str(self.outputs.get("namespace") or "mdeploy"))
        base = f"/apis/apps/v1/namespaces/{ns}/deployments"
        return f"{base}/{urllib.parse.quote(name)}" if name else base

    def _deployments(self) -> list[dict[str, Any]]:
        if not self._name:
            raise CloudError("the stack has no endpoint_name output", hint="run `mdeploy up`")
        selector = urllib.parse.quote(f"{INSTANCE_LABEL}={self._name}")
        found = self._api("GET", f"{self._path()}?labelSelector={selector}").get("items") or []
        if not found:
            raise NotFoundError(f"no Deployment of {self._name} in the cluster")
        return sorted(found, key=lambda d: (_version_name(d) != self._name, _version_name(d)))

    def _refuse_autoscaled(self, deployments: dict[str, dict[str, Any]]) -> None:
        ns = urllib.parse.quote(str(self.outputs.get("namespace") or "mdeploy"))
        hpas = self._api("GET", f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers")
        ours = {d["metadata"]["name"] for d in deployments.values()}
        held = sorted(
            h["spec"]["scaleTargetRef"]["name"]
            for h in hpas.get("items") or []
            if (h.get("spec") or {}).get("scaleTargetRef", {}).get("name") in ours
        )
        if held:
            raise PrerequisiteError(
                f"a HorizontalPodAutoscaler owns the replicas of {', '.join(held)}: weights "
                "by replica count would be undone",
                hint="set serving.replicas.min = max for the promotion (no HPA), then restore",
            )

    def _api(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        from mdeploy.targets.kubernetes.nodes import ApiError, NodeListError, api_call, cluster_of
        from mdeploy.targets.kubernetes.rules import kubeconfig_paths

        try:
            paths = kubeconfig_paths() if self.kubeconfig is None else self.kubeconfig
            cluster, user = cluster_of(self.context, paths)
            reply = api_call(cluster, user, method, path, body, content_type)
        except ApiError as exc:
            kind = NotFoundError if exc.status == 404 else CloudError
            raise kind(str(exc), hint=_API_HINTS.get(exc.status)) from None
        except NodeListError as exc:
            raise CloudError(str(exc), hint="check KUBECONFIG and the kube context") from None
        return reply if isinstance(reply, dict) else {}

    def _probe(self) -> tuple[str, str | None, dict[str, Any]]:
        """(state, a line for a person, facts) from GET <url>/ready."""
        if not self.url:
            return "unknown", "the stack has no endpoint_url output", {}
        if self.in_cluster_only:
            return (
                "unknown",
                "cluster-internal URL; probe it with `kubectl -n "
                f"{self.outputs.get('namespace', 'mdeploy')} port-forward svc/"
                f"{self.outputs.get('service_name', 'SERVICE')} 8080:80` and "
                "http://127.0.0.1:8080/ready, or set mdeploy:ingressHost",
                {},
            )
        try:
            with urllib.request.urlopen(self.url + READY_PATH, timeout=self.timeout_s) as resp:
                return "ready", None, {"http_status": resp.status}
        except urllib.error.HTTPError as exc:
            state = "loading" if exc.code == 503 else "unhealthy"
            return state, f"{READY_PATH} answered HTTP {exc.code}", {"http_status": exc.code}
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            return "unreachable", str(getattr(exc, "reason", exc)), {}

    def invoke(self, body: bytes | str | dict[str, Any], *, stream: bool = False) -> Any:
        """
        One OpenAI chat request through the endpoint (the smoke test), as the other targets.

        The API key is the stack's `api_key` output (the Secret the component generated).
        Returns the reply body, or with `stream=True` an iterator of its chunks.
        """
        if self.in_cluster_only:
            raise InputError(
                "the endpoint is only reachable inside the cluster",
                hint="set mdeploy:ingressHost, or port-forward the service and call it locally",
            )
        if isinstance(body, dict):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.url + CHAT_PATH, data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        api_key = self.outputs.get("api_key")
        if api_key:
            request.add_header("Authorization", f"Bearer {api_key}")
        try:
            resp = urllib.request.urlopen(request, timeout=max(self.timeout_s, 60.0))
        except urllib.error.HTTPError as exc:
            raise CloudError(f"{self.url}{CHAT_PATH} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise CloudError(f"{self.url}{CHAT_PATH}: {getattr(exc, 'reason', exc)}") from None
        if stream:
            return _chunks(resp)
        with resp:
            return resp.read()


class KubernetesTrafficOps(KubernetesOps):
    """
    KubernetesOps with the TrafficOps capability (replica-proportional weights, see above).

    What `KubernetesTarget.ops()` returns. Weights are only as fine as the replica count
    allows: `promote` reports the split achieved beside the one asked for, and a step that
    could only give 0 % or 100 % says it is not a canary.
    """

    def set_traffic(self, weights: dict[str, int]) -> EndpointHealth:
        """
        Scale the versions' Deployments so that their replicas follow `weights`.

        The replica total stays what it is (at least one per version with a non-zero
        weight); the split achieved is in the returned health, the one asked for in
        `details.requested_traffic`.
        """
        validate_weights(weights)
        deployments = {_version_name(d): d for d in self._deployments()}
        wanted = validate_weights(weights, list(deployments))
        self._refuse_autoscaled(deployments)
        total = max(1, sum(_replicas(d) for d in deployments.values()))
        for name, count in _apportion(wanted, total).items():
            if count != _replicas(deployments[name]):
                path = self._path(deployments[name]["metadata"]["name"])
                self._api("PATCH", path, {"spec": {"replicas": count}}, MERGE_PATCH)
        health = self.status()
        health.details["requested_traffic"] = dict(wanted)
        return health

    def deploy_version(self, spec_version: VersionSpec) -> EndpointHealth:
        """A copy of the base version's Deployment with the new image, at 0 replicas."""
        deployments = self._deployments()
        names = {_version_name(d): d for d in deployments}
        if spec_version.name in names:
            raise InputError(f"{self._name} already has a version {spec_version.name}")
        health = EndpointHealth(state="unknown", versions=self.versions())
        base = names[base_version(health, spec_version.base).name]
        self._api("POST", self._path(), _copy(base, spec_version, self._name))
        return self.status()

    def remove_version(self, name: str) -> EndpointHealth:
        """Delete a version's Deployment once it has no replicas (never the last one)."""
        refuse_removal(EndpointHealth(state="unknown", versions=self.versions()), name)
        deployment = next(d for d in self._deployments() if _version_name(d) == name)
        self._api("DELETE", self._path(deployment["metadata"]["name"]))
        return self.status()


def _chunks(resp: Any) -> Any:
    with resp:
        while chunk := resp.read1(65536):
            yield chunk


_API_HINTS = {
    401: "the kubeconfig's credentials were refused",
    403: "the user needs get/list/create/patch/delete on deployments in the namespace",
}


def _version_name(deployment: dict[str, Any]) -> str:
    meta = deployment.get("metadata") or {}
    return str((meta.get("labels") or {}).get(VERSION_LABEL) or meta.get("name"))


def _replicas(deployment: dict[str, Any]) -> int:
    replicas = (deployment.get("spec") or {}).get("replicas")
    return int(replicas) if replicas is not None else 1  # Kubernetes' default is 1


def _apportion(weights: dict[str, int], total: int) -> dict[str, int]:
    """
    Replicas per version: the largest remainder of `total`, then one replica moved to each
    version with a non-zero weight that got none, from the version with the most (the total
    grows only when there are more such versions than replicas).
    """
    total = max(total, sum(1 for w in weights.values() if w))
    exact = {k: w * total / 100 for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (counts[k] - exact[k], k))[: total - sum(counts.values())]:
        counts[k] += 1
    for k in sorted(k for k, w in weights.items() if w and not counts[k]):
        spare = [d for d in counts if counts[d] > (1 if weights[d] else 0)]
        donor = max(spare, key=lambda d: (counts[d], d))
        counts[donor] -= 1
        counts[k] = 1
    return counts


def _version(deployment: dict[str, Any], share: int) -> VersionHealth:
    container = _container(deployment)
    env = {e.get("name"): e.get("value") for e in container.get("env") or []}
    status = deployment.get("status") or {}
    ready, wanted = status.get("readyReplicas") or 0, _replicas(deployment)
    return VersionHealth(
        name=_version_name(deployment),
        traffic_percent=share,
        image=container.get("image"),
        model_revision=env.get(REVISION_ENV),
        replicas=wanted,
        state=f"{ready}/{wanted} ready",
    )


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return (pod.get("containers") or [{}])[0]


def _copy(base: dict[str, Any], spec_version: VersionSpec, endpoint: str) -> dict[str, Any]:
    """The base Deployment as a new version: its own name and selector, new image, 0 replicas."""
    spec = json.loads(json.dumps(base.get("spec") or {}))
    meta = base.get("metadata") or {}
    version = {VERSION_LABEL: spec_version.name}
    spec["replicas"] = 0
    spec["selector"] = {"matchLabels": {**spec["selector"]["matchLabels"], **version}}
    template = spec["template"]
    template["metadata"]["labels"] = {**template["metadata"].get("labels", {}), **version}
    container = template["spec"]["containers"][0]
    container["image"] = spec_version.image
    env = {e["name"]: e for e in container.get("env") or []}
    extra = dict(spec_version.env)
    if spec_version.model_revision:
        extra[REVISION_ENV] = spec_version.model_revision
    env.update({k: {"name": k, "value": v} for k, v in extra.items()})
    container["env"] = list(env.values())
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{endpoint}-{spec_version.name}"[:63].rstrip("-"),
            "namespace": meta.get("namespace"),
            "labels": {**(meta.get("labels") or {}), **version},
        },
        "spec": spec,
    }
