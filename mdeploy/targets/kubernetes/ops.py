"""
Day-2 operations for a Kubernetes endpoint, kept deliberately small and honest.

No Kubernetes client library: status comes from the stack outputs plus an HTTP probe of the
adapter's readiness route (`/ready`, 200 only once the model is loaded) at the endpoint URL.
A cluster-internal URL (*.svc.cluster.local) cannot be probed from outside the cluster; the
status then says so and how to reach it (`kubectl port-forward`). Standard library only.

Not a TrafficOps yet: weights between two Deployments behind one Service are proportional
to their replicas, which the component's HorizontalPodAutoscaler rewrites, and Gateway API
HTTPRoute weights need a route the component does not create; both are issue 13's work.
The one version reported is the stack's Deployment, with all the traffic.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from mdeploy.errors import CloudError, InputError
from mdeploy.targets.base import EndpointHealth, VersionHealth

__all__ = ["KubernetesOps"]

READY_PATH = "/ready"  # mdeploy.serve.contract.READINESS_ROUTE
CHAT_PATH = "/v1/chat/completions"


@dataclass
class KubernetesOps:
    """Status and a smoke test for one deployed stack, from its outputs."""

    outputs: dict[str, Any]
    timeout_s: float = 5.0

    @property
    def url(self) -> str:
        return str(self.outputs.get("endpoint_url") or "").rstrip("/")

    @property
    def in_cluster_only(self) -> bool:
        return ".svc.cluster.local" in self.url

    def status(self) -> EndpointHealth:
        """`ready` (model loaded), `loading` (adapter up, model not yet), or why unknown."""
        state, detail, details = self._probe()
        name = str(self.outputs.get("endpoint_name") or "")
        versions = (
            [VersionHealth(name=name, traffic_percent=100, image=self.outputs.get("image"))]
            if name
            else []
        )
        return EndpointHealth(
            state=state,
            url=self.url or None,
            region=None,  # the plan's region is the node affinity; the URL does not say it
            versions=versions,
            replicas=None,
            details={
                "namespace": self.outputs.get("namespace"),
                "service_name": self.outputs.get("service_name"),
                **details,
            },
            detail=detail,
        )

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


def _chunks(resp: Any) -> Any:
    with resp:
        while chunk := resp.read1(65536):
            yield chunk
