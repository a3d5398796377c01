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
import time
from collections.abc import Iterator, Mapping
from typing import Any

from mdeploy.errors import CloudError, InputError
from mdeploy.targets.base import (
    REVISION_ENV,
    EndpointHealth,
    NotFoundError,
    VersionHealth,
    VersionSpec,
    base_version,
    refuse_removal,
    total_replicas,
    validate_weights,
)

__all__ = ["API_URL_ENV", "GcpOps"]

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
        poll_interval_s: float = 5.0,
        wait_timeout_s: float = 3600.0,
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
        self.poll_interval_s = poll_interval_s
        self.wait_timeout_s = wait_timeout_s
        self._models: dict[str, dict[str, Any]] = {}

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

    def status(self) -> EndpointHealth:
        """GET the endpoint: deployed models as versions, the traffic split, the URL."""
        raw = self._endpoint()
        versions = self._versions(raw)
        dns = raw.get("dedicatedEndpointDns") or None
        if not versions:
            state, why = "unhealthy", "no model is deployed on the endpoint"
        elif sum(v.traffic_percent for v in versions) != 100:
            state, why = "unhealthy", "the traffic split routes no traffic"
        else:
            state, why = "ready", None
        return EndpointHealth(
            state=state,
            url=self._predict_url or _predict_url(self.region, self.endpoint_name, dns),
            region=self.region,
            versions=versions,
            replicas=total_replicas(versions),
            details={
                "endpoint_name": raw.get("name", self.endpoint_name),
                "display_name": raw.get("displayName"),
                "dedicated_endpoint_dns": dns,
                "deployed_model_ids": {v["displayName"]: v["id"] for v in _named(raw)},
            },
            detail=why,
        )

    def versions(self) -> list[VersionHealth]:
        """The endpoint's deployed models, named by their display names, with traffic."""
        return self._versions(self._endpoint())

    def _endpoint(self) -> dict[str, Any]:
        return self._request("GET", f"{self._api}/v1/{self.endpoint_name}", "get endpoint")

    def _versions(self, raw: Mapping[str, Any]) -> list[VersionHealth]:
        split = {str(k): int(v) for k, v in (raw.get("trafficSplit") or {}).items()}
        out = []
        for deployed in _named(raw):
            resources = deployed.get("dedicatedResources") or {}
            container = self._container(deployed)
            env = {e.get("name"): e.get("value") for e in container.get("env") or []}
            low = resources.get("minReplicaCount")
            out.append(
                VersionHealth(
                    name=deployed["displayName"],
                    traffic_percent=split.get(str(deployed["id"]), 0),
                    image=container.get("imageUri"),
                    model_revision=env.get(REVISION_ENV),
                    replicas=int(low) if low is not None else None,
                    state=None,  # Vertex reports no per-model state on the endpoint
                )
            )
        return out

    def _container(self, deployed: Mapping[str, Any]) -> dict[str, Any]:
        """The containerSpec of a deployed model's model version ({} when unreadable)."""
        name = _model_version(deployed)
        if not name:
            return {}
        if name not in self._models:
            try:
                self._models[name] = self._request("GET", f"{self._api}/v1/{name}", "get model")
            except CloudError:
                self._models[name] = {}
        return dict(self._models[name].get("containerSpec") or {})

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
        if not self._predict_url:
            dns = self._endpoint().get("dedicatedEndpointDns") or None
            self._predict_url = _predict_url(self.region, self.endpoint_name, dns)
        return self._predict_url

    # -- traffic (TrafficOps: deployed models + traffic_split) ----------------------------

    def set_traffic(self, weights: dict[str, int]) -> EndpointHealth:
        """
        Set the traffic split by version (deployed model display name), e.g.
        {"m-default-v1": 90, "m-default-v2": 10}; versions left out get no traffic.
        """
        validate_weights(weights)
        raw = self._endpoint()
        ids = {m["displayName"]: str(m["id"]) for m in _named(raw)}
        wanted = validate_weights(weights, list(ids))
        split = {ids[name]: pct for name, pct in wanted.items()}
        url = f"{self._api}/v1/{self.endpoint_name}?updateMask=traffic_split"
        self._request("PATCH", url, "update traffic split", json_body={"trafficSplit": split})
        return self.status()

    def deploy_version(self, spec_version: VersionSpec) -> EndpointHealth:
        """
        A new deployed model beside the live ones, with 0% of the traffic.

        Vertex deploys models, not images: the base version's model is uploaded again as a
        new version of the same Model (`models:upload` with `parentModel`) with the new
        image and environment, then `endpoints:deployModel` with the base's machine and
        replica settings and a split that keeps every current share ("0" is the new one).
        Both are long-running operations, polled to the end.
        """
        raw = self._endpoint()
        health = self.status()
        if spec_version.name in health.traffic:
            raise InputError(f"{self.endpoint_name} already has a version {spec_version.name}")
        base_name = base_version(health, spec_version.base).name
        base = next(m for m in _named(raw) if m["displayName"] == base_name)
        model = self._request("GET", f"{self._api}/v1/{_model_version(base)}", "get model")
        uploaded = self._wait(self._upload(model, spec_version), "upload model")
        version = f"{uploaded['model']}@{uploaded.get('modelVersionId') or '1'}"
        deployed = {
            k: base[k] for k in ("dedicatedResources", "serviceAccount", "enableAccessLogging")
            if k in base
        }  # fmt: skip
        resources = json.loads(json.dumps(deployed.get("dedicatedResources") or {}))
        resources["minReplicaCount"] = spec_version.replicas
        resources["maxReplicaCount"] = max(
            spec_version.replicas, resources.get("maxReplicaCount") or 1
        )
        deployed.update(model=version, displayName=spec_version.name, dedicatedResources=resources)
        split = {str(k): int(v) for k, v in (raw.get("trafficSplit") or {}).items()}
        body = {"deployedModel": deployed, "trafficSplit": {**split, "0": 0}}
        url = f"{self._api}/v1/{self.endpoint_name}:deployModel"
        self._wait(self._request("POST", url, "deploy model", json_body=body), "deploy model")
        return self.status()

    def remove_version(self, name: str) -> EndpointHealth:
        """`endpoints:undeployModel` for a version that takes no traffic (never the last)."""
        raw = self._endpoint()
        refuse_removal(self.status(), name)
        ids = {m["displayName"]: str(m["id"]) for m in _named(raw)}
        split = {k: int(v) for k, v in (raw.get("trafficSplit") or {}).items() if k != ids[name]}
        body = {"deployedModelId": ids[name], "trafficSplit": split}
        url = f"{self._api}/v1/{self.endpoint_name}:undeployModel"
        self._wait(self._request("POST", url, "undeploy model", json_body=body), "undeploy model")
        return self.status()

    def _upload(self, model: Mapping[str, Any], spec_version: VersionSpec) -> dict[str, Any]:
        """POST models:upload: the base model with the new image and env, as a new version."""
        container = dict(model.get("containerSpec") or {})
        env = {e.get("name"): e.get("value") for e in container.get("env") or []}
        env.update(spec_version.env)
        if spec_version.model_revision:
            env[REVISION_ENV] = spec_version.model_revision
        container["imageUri"] = spec_version.image
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
        copy = {k: model[k] for k in ("displayName", "description", "labels") if k in model}
        copy["containerSpec"] = container
        parent = str(model.get("name", "")).split("@", 1)[0]
        location = parent.split("/models/", 1)[0]
        body = {"model": copy, "parentModel": parent}
        return self._request(
            "POST", f"{self._api}/v1/{location}/models:upload", "upload model", json_body=body
        )

    def _wait(self, operation: Mapping[str, Any], action: str) -> dict[str, Any]:
        """Poll a long-running operation until `done`; its `response`, or its error raised."""
        deadline = time.monotonic() + self.wait_timeout_s
        while not operation.get("done"):
            if time.monotonic() > deadline:
                raise CloudError(
                    f"{action}: {operation.get('name')} not done after {self.wait_timeout_s:.0f} s",
                    hint="it may still finish: check `mdeploy status`",
                )
            time.sleep(self.poll_interval_s)
            url = f"{self._api}/v1/{operation['name']}"
            operation = self._request("GET", url, f"{action} (operation)")
        if operation.get("error"):
            error = operation["error"]
            message = " ".join(str(error.get("message") or error).split())[:_MESSAGE_MAX]
            raise CloudError(
                f"{action} failed: {message}",
                hint=_HINTS.get(403) if error.get("code") == 7 else None,
            )
        return dict(operation.get("response") or {})

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


def _named(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Deployed models, each with a displayName (its id when Vertex reports none)."""
    return [
        {**m, "id": str(m.get("id")), "displayName": m.get("displayName") or str(m.get("id"))}
        for m in raw.get("deployedModels") or []
    ]


def _model_version(deployed: Mapping[str, Any]) -> str | None:
    """`projects/…/models/<id>@<version>` for a deployed model, None without a model."""
    model = str(deployed.get("model") or "")
    if not model:
        return None
    if "@" in model:
        return model
    return f"{model}@{deployed.get('modelVersionId') or '1'}"


def _predict_url(region: str, endpoint_name: str, dns: str | None) -> str:
    host = dns.removeprefix("https://") if dns else f"{region}-aiplatform.googleapis.com"
    return f"https://{host}/v1/{endpoint_name}:rawPredict"


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
    kind = NotFoundError if status == 404 and "predict" not in action.lower() else CloudError
    return kind(f"{action} failed (HTTP {status}): {message}", hint=hint)


def _transport_error(exc: Exception, action: str) -> CloudError:
    return CloudError(
        f"{action}: could not reach Vertex AI ({type(exc).__name__})",
        hint="check the network and the region in the stack outputs",
    )
