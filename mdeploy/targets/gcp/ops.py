"""
Day-2 operations on a deployed Vertex AI endpoint: status, invoke, traffic split.

Plain REST over httpx with an OAuth access token from google-auth (imported when the first
call is made), so importing this module costs nothing. `MDEPLOY_VERTEX_API_URL` replaces both
the regional API host and the prediction host, which is how tests point it at a local fake.
Every failure leaves as an mdeploy error with a hint; request bodies, replies and tokens are
never logged or put in messages.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mdeploy.errors import CloudError, InputError

__all__ = ["API_URL_ENV", "DeployedModelStatus", "EndpointStatus", "GcpOps"]

API_URL_ENV = "MDEPLOY_VERTEX_API_URL"
_ENDPOINT = re.compile(r"^projects/[^/]+/locations/(?P<region>[^/]+)/endpoints/[0-9]+$")
_MESSAGE_MAX = 300
# Vertex ends a prediction after 60 s whatever the client waits (python-aiplatform#1158);
# streamed replies may run longer.
_TIMEOUT = {"api": 60.0, "predict": 90.0, "stream": 600.0}
_HINTS = {
    401: "refresh credentials: `gcloud auth application-default login`",
    403: "the caller needs roles/aiplatform.user (aiplatform.endpoints.predict / .update) "
    "on the endpoint's project",
    404: "the endpoint is gone or not in this project/region; run `mdeploy status` or "
    "`mdeploy up` again",
    429: "Vertex quota exhausted or the replicas are saturated; retry later, raise "
    "replicas.max, or request more quota",
    504: "Vertex stops a prediction after 60 s; use stream=True for long generations",
}


@dataclass(frozen=True)
class DeployedModelStatus:
    """One deployed model on the endpoint, with its share of the traffic."""

    id: str
    model: str
    model_version_id: str | None
    display_name: str | None
    machine_type: str | None
    accelerator_type: str | None
    accelerator_count: int | None
    min_replicas: int | None
    max_replicas: int | None
    traffic: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EndpointStatus:
    """The endpoint, its deployed models and the traffic split (deployed model id → %)."""

    name: str
    display_name: str | None
    dedicated_endpoint_dns: str | None
    deployed_models: tuple[DeployedModelStatus, ...]
    traffic_split: dict[str, int]

    @property
    def in_service(self) -> bool:
        return bool(self.deployed_models) and sum(self.traffic_split.values()) == 100

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "dedicated_endpoint_dns": self.dedicated_endpoint_dns,
            "deployed_models": [m.to_json() for m in self.deployed_models],
            "traffic_split": dict(self.traffic_split),
        }


class GcpOps:
    """
    Day-2 client for one endpoint (`projects/<p>/locations/<r>/endpoints/<id>`).

    >>> ops = GcpOps("projects/p/locations/europe-west4/endpoints/123")  # doctest: +SKIP
    >>> ops.invoke({"prompt": "hi", "max_tokens": 8})  # doctest: +SKIP
    """

    def __init__(
        self,
        endpoint_name: str,
        *,
        endpoint_url: str | None = None,
        credentials: Any = None,
        api_url: str | None = None,
    ) -> None:
        match = _ENDPOINT.match(endpoint_name)
        if not match:
            raise InputError(
                f"{endpoint_name!r} is not a Vertex endpoint name",
                hint="expected projects/<project>/locations/<region>/endpoints/<id>",
            )
        self.endpoint_name = endpoint_name
        self.region = match["region"]
        override = (api_url or os.environ.get(API_URL_ENV) or "").rstrip("/")
        self._api = override or f"https://{self.region}-aiplatform.googleapis.com"
        self._predict_url = (
            f"{override}/v1/{endpoint_name}:rawPredict" if override else endpoint_url
        )
        self._credentials = credentials

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> GcpOps:
        """Build from a stack's outputs (`endpoint_name`, optionally `endpoint_url`)."""
        name = outputs.get("endpoint_name")
        if not name:
            raise InputError(
                "the stack outputs lack endpoint_name",
                hint="run `mdeploy up` for this spec and target first",
            )
        url = outputs.get("endpoint_url")
        return cls(str(name), endpoint_url=str(url) if url else None)

    def __repr__(self) -> str:
        return f"GcpOps(endpoint_name={self.endpoint_name!r})"

    # -- status ---------------------------------------------------------------------------

    def status(self) -> EndpointStatus:
        """GET the endpoint: deployed models, their machines and the traffic split."""
        raw = self._request("GET", f"{self._api}/v1/{self.endpoint_name}", "get endpoint")
        split = {str(k): int(v) for k, v in (raw.get("trafficSplit") or {}).items()}
        models = tuple(_deployed(m, split) for m in raw.get("deployedModels") or [])
        return EndpointStatus(
            name=raw.get("name", self.endpoint_name),
            display_name=raw.get("displayName"),
            dedicated_endpoint_dns=raw.get("dedicatedEndpointDns") or None,
            deployed_models=models,
            traffic_split=split,
        )

    # -- invoke ---------------------------------------------------------------------------

    def invoke(
        self, body: bytes | str | Mapping[str, Any], *, stream: bool = False
    ) -> bytes | Iterator[bytes]:
        """
        Send one JSON request through `:rawPredict` (the body reaches the container as is).

        Returns the reply body, or with `stream=True` an iterator of the reply's lines from
        `:streamRawPredict` (for custom models Vertex streams only on dedicated endpoints).
        """
        url = self._predict()
        data = _encode(body)
        if not stream:
            reply = self._send("POST", url, "rawPredict", content=data, kind="predict")
            return reply.content
        return self._stream(url.removesuffix(":rawPredict") + ":streamRawPredict", data)

    def _stream(self, url: str, data: bytes) -> Iterator[bytes]:
        import httpx

        headers = {**self._headers(), "Content-Type": "application/json"}
        try:
            with (
                httpx.Client(timeout=_TIMEOUT["stream"]) as client,
                client.stream("POST", url, content=data, headers=headers) as reply,
            ):
                if reply.status_code >= 400:
                    reply.read()
                    raise _http_error(reply, "streamRawPredict")
                for line in reply.iter_lines():
                    if line:
                        yield line.encode()
        except httpx.HTTPError as exc:
            raise _transport_error(exc, "streamRawPredict") from None

    def _predict(self) -> str:
        """The rawPredict URL: from the outputs, else on the dedicated DNS or regional host."""
        if self._predict_url:
            return self._predict_url
        dns = self.status().dedicated_endpoint_dns
        host = dns.removeprefix("https://") if dns else f"{self.region}-aiplatform.googleapis.com"
        self._predict_url = f"https://{host}/v1/{self.endpoint_name}:rawPredict"
        return self._predict_url

    # -- traffic --------------------------------------------------------------------------

    def set_traffic(self, split: Mapping[str, int]) -> EndpointStatus:
        """
        Set the traffic split, e.g. {"1234": 90, "5678": 10}, and return the new status.

        Percentages are whole numbers that add up to 100; every id must be deployed on the
        endpoint. Models left out get no traffic.
        """
        wanted = _check_split(split)
        known = {m.id for m in self.status().deployed_models}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise InputError(
                f"{self.endpoint_name} has no deployed model {', '.join(unknown)}",
                hint=f"deployed model ids: {', '.join(sorted(known)) or 'none'}",
            )
        url = f"{self._api}/v1/{self.endpoint_name}?updateMask=traffic_split"
        self._request("PATCH", url, "update traffic split", json_body={"trafficSplit": wanted})
        return self.status()

    # -- HTTP -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        from mdeploy.targets.gcp.registry import _access_token

        return {"Authorization": f"Bearer {_access_token(self._credentials)}"}

    def _request(
        self, method: str, url: str, action: str, *, json_body: Any = None
    ) -> dict[str, Any]:
        reply = self._send(method, url, action, json_body=json_body, kind="api")
        try:
            parsed = reply.json()
        except ValueError:
            raise CloudError(f"{action}: the Vertex API sent a reply that is not JSON") from None
        return parsed if isinstance(parsed, dict) else {}

    def _send(
        self,
        method: str,
        url: str,
        action: str,
        *,
        content: bytes | None = None,
        json_body: Any = None,
        kind: str,
    ) -> Any:
        import httpx

        headers = {**self._headers(), "Content-Type": "application/json"}
        try:
            reply = httpx.request(
                method,
                url,
                headers=headers,
                content=content,
                json=json_body,
                timeout=_TIMEOUT[kind],
            )
        except httpx.HTTPError as exc:
            raise _transport_error(exc, action) from None
        if reply.status_code >= 400:
            raise _http_error(reply, action)
        return reply


def _deployed(raw: Mapping[str, Any], split: Mapping[str, int]) -> DeployedModelStatus:
    resources = raw.get("dedicatedResources") or {}
    spec = resources.get("machineSpec") or {}
    count = spec.get("acceleratorCount")
    low, high = resources.get("minReplicaCount"), resources.get("maxReplicaCount")
    return DeployedModelStatus(
        id=str(raw.get("id")),
        model=str(raw.get("model", "")),
        model_version_id=raw.get("modelVersionId"),
        display_name=raw.get("displayName"),
        machine_type=spec.get("machineType"),
        accelerator_type=spec.get("acceleratorType"),
        accelerator_count=int(count) if count is not None else None,
        min_replicas=int(low) if low is not None else None,
        max_replicas=int(high) if high is not None else None,
        traffic=int(split.get(str(raw.get("id")), 0)),
    )


def _check_split(split: Mapping[str, int]) -> dict[str, int]:
    """Whole percentages 0–100 that add up to 100, checked before any call is made."""
    if not split:
        raise InputError("the traffic split is empty", hint="e.g. {'<deployed model id>': 100}")
    out: dict[str, int] = {}
    for key, value in split.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise InputError(f"traffic for {key}: {value!r} is not a whole percentage 0–100")
        out[str(key)] = value
    total = sum(out.values())
    if total != 100:
        raise InputError(f"the traffic split adds up to {total}, not 100")
    return out


def _encode(body: bytes | str | Mapping[str, Any]) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _api_message(reply: Any) -> str:
    """The API's own error message (Google's {"error": {"message": ...}}), shortened."""
    try:
        error = reply.json().get("error", {})
        message = error.get("message") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = None
    text = " ".join(str(message or reply.reason_phrase or "").split())
    return text[:_MESSAGE_MAX]


def _http_error(reply: Any, action: str) -> CloudError:
    status = reply.status_code
    message = _api_message(reply)
    hint = _HINTS.get(status)
    if status >= 500 and hint is None:
        hint = "a Vertex or container failure; check the endpoint's logs in Cloud Logging"
    if action == "streamRawPredict" and status in (400, 404):
        hint = "custom models stream only on dedicated endpoints: set mdeploy:dedicatedEndpoint"
    return CloudError(f"{action} failed (HTTP {status}): {message}", hint=hint)


def _transport_error(exc: Exception, action: str) -> CloudError:
    return CloudError(
        f"{action}: could not reach Vertex AI ({type(exc).__name__})",
        hint="check the network and the region in the stack outputs",
    )
