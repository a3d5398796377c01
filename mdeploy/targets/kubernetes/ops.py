"""
Day-2 operations for a Kubernetes endpoint, kept deliberately small and honest.

No Kubernetes client library: status comes from the stack outputs plus an HTTP probe of the
adapter's readiness route (`/ready`, 200 only once the model is loaded) at the endpoint URL.
A cluster-internal URL (*.svc.cluster.local) cannot be probed from outside the cluster; the
status then says so and how to reach it (`kubectl port-forward`). Standard library only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from mdeploy.errors import CloudError, InputError

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

    def status(self) -> dict[str, Any]:
        """`ready` (model loaded), `loading` (adapter up, model not yet), or why unknown."""
        if not self.url:
            return {"state": "unknown", "detail": "the stack has no endpoint_url output"}
        if self.in_cluster_only:
            return {
                "state": "unknown",
                "url": self.url,
                "detail": "cluster-internal URL; probe it with `kubectl -n "
                f"{self.outputs.get('namespace', 'mdeploy')} port-forward svc/"
                f"{self.outputs.get('service_name', 'SERVICE')} 8080:80` and "
                "http://127.0.0.1:8080/ready, or set mdeploy:ingressHost",
            }
        try:
            with urllib.request.urlopen(self.url + READY_PATH, timeout=self.timeout_s) as resp:
                return {"state": "ready", "url": self.url, "http_status": resp.status}
        except urllib.error.HTTPError as exc:
            state = "loading" if exc.code == 503 else "unhealthy"
            return {"state": state, "url": self.url, "http_status": exc.code}
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return {"state": "unreachable", "url": self.url, "detail": str(reason)}

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
