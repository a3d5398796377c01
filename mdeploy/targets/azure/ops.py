"""
Day-2 operations on an Azure ML managed online endpoint: status, traffic, invoke.

ARM calls go through the shared client (`arm.py`: token, paging, async-operation polling,
error mapping); the scoring URI is called here. The routes, all under the endpoint's ARM id
`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/
workspaces/{ws}/onlineEndpoints/{name}` with `api-version` API_VERSION:

- `GET` the endpoint, `GET …/deployments` (paged by `nextLink`);
- `PUT` the endpoint to change `properties.traffic`: the `PATCH` body
  (PartialMinimalTrackedResourceWithIdentity) carries only tags and identity, so traffic is
  changed the way `az ml online-endpoint update` does it, GET → edit → PUT, then the
  `Azure-AsyncOperation` URL is polled until a terminal status;
- `POST …/listKeys` (key auth) or `POST …/token` (aml_token); an Entra token for
  `https://ml.azure.com/.default` (aad_token) comes from the credential itself.

Scoring: `POST <scoring_uri>` with `Authorization: Bearer <key|token>`; the header
`azureml-model-deployment: <name>` pins one deployment and bypasses the traffic split.

Keys and tokens are secrets: they are kept only for the call that needs them, never logged,
never put in an error message or a repr.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mdeploy.errors import CloudError, InputError
from mdeploy.targets.azure.arm import ArmClient, ConflictError, reason
from mdeploy.targets.base import (
    REVISION_ENV,
    EndpointHealth,
    VersionHealth,
    VersionSpec,
    base_version,
    refuse_removal,
    total_replicas,
    validate_weights,
)

__all__ = [
    "AAD_SCORING_SCOPE",
    "API_VERSION",
    "AzureOps",
    "EndpointRef",
    "masked",
]

# GA Microsoft.MachineLearningServices version (REST reference "Online Endpoints"); the
# Pulumi provider itself uses 2025-12-01, both accept the same endpoint body.
API_VERSION = "2024-04-01"
AAD_SCORING_SCOPE = "https://ml.azure.com/.default"
DEPLOYMENT_HEADER = "azureml-model-deployment"
CONFLICT_RETRIES = 12  # PUTs refused with 409 while the endpoint finishes another operation
_READ_ONLY = ("provisioningState", "scoringUri", "swaggerUri")
# provisioningState of endpoints and deployments (REST reference, EndpointProvisioningState
# and DeploymentProvisioningState) → the one health vocabulary of targets/base.py.
_STATE = {
    "succeeded": "ready",
    "creating": "updating",
    "updating": "updating",
    "scaling": "updating",
    "deleting": "updating",
    "failed": "failed",
    "canceled": "failed",
}
_ARM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)/onlineEndpoints/(?P<ep>[^/]+)$",
    re.IGNORECASE,
)
_SCORING_HINTS = {
    401: "the key or token was refused: keys may have been rotated, or the caller lacks "
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action (aad_token)",
    403: "the caller lacks the score/action permission on the endpoint, or public network "
    "access is disabled and this machine is outside the workspace's private network",
    404: "no such route or deployment: check the deployment name (`mdeploy status`)",
    408: "the request outlived request_timeout_ms (mdeploy:requestTimeoutMs, at most 180000)",
    424: "the container answered with an error: read the deployment logs in Azure ML studio",
    429: "too many requests: raise mdeploy:maxConcurrentRequestsPerInstance or add instances",
    502: "the container is not serving: is the deployment healthy? (`mdeploy status`)",
    503: "no healthy instance, or traffic is 0 for every deployment (`mdeploy status`)",
    504: "the container did not answer in time (mdeploy:requestTimeoutMs, at most 180000)",
}


def masked(secret: str | None) -> str:
    """Stand-in for a secret in anything a person may read: its length, never its content."""
    return "<none>" if not secret else f"<hidden, {len(secret)} chars>"


@dataclass(frozen=True)
class EndpointRef:
    """Where an online endpoint lives in ARM."""

    subscription_id: str
    resource_group: str
    workspace: str
    endpoint: str

    @classmethod
    def from_id(cls, arm_id: str) -> EndpointRef:
        """Parse an endpoint's ARM resource id."""
        match = _ARM_ID.match(arm_id.strip().rstrip("/"))
        if not match:
            raise InputError(
                f"not an Azure ML online endpoint id: {arm_id!r}",
                hint="expected /subscriptions/<sub>/resourceGroups/<rg>/providers/"
                "Microsoft.MachineLearningServices/workspaces/<ws>/onlineEndpoints/<name>",
            )
        return cls(match["sub"], match["rg"], match["ws"], match["ep"])

    @property
    def path(self) -> str:
        """The ARM path of the endpoint (no host, no api-version)."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
            f"/onlineEndpoints/{self.endpoint}"
        )


class AzureOps:
    """
    Status, traffic and invoke for one endpoint.

    `credential` is any azure-identity credential (default: DefaultAzureCredential, created on
    first use); `scoring_uri` and `auth_mode` save a GET when the stack outputs carry them.
    """

    def __init__(
        self,
        ref: EndpointRef,
        *,
        credential: Any = None,
        arm_url: str | None = None,
        scoring_uri: str | None = None,
        auth_mode: str | None = None,
        timeout_s: float = 60.0,
        poll_interval_s: float = 5.0,
        wait_timeout_s: float = 1800.0,
    ) -> None:
        self.ref = ref
        self.arm = ArmClient(
            API_VERSION, credential=credential, base_url=arm_url, timeout_s=timeout_s
        )
        self.scoring_uri = scoring_uri
        self.auth_mode = auth_mode
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.wait_timeout_s = wait_timeout_s

    def __repr__(self) -> str:
        return f"AzureOps(endpoint={self.ref.endpoint!r}, workspace={self.ref.workspace!r})"

    @property
    def arm_url(self) -> str:
        """The ARM base URL (metrics.py builds Azure Monitor URLs on it)."""
        return self.arm.base_url

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any], **kwargs: Any) -> AzureOps:
        """Build from a stack's outputs (those AzureEndpoint registers)."""
        endpoint_id = str(outputs.get("endpoint_id") or "")
        if endpoint_id.startswith("/subscriptions/") or not outputs.get("endpoint_name"):
            ref = EndpointRef.from_id(endpoint_id)
        else:
            keys = ("subscription_id", "resource_group_name", "workspace_name", "endpoint_name")
            missing = [k for k in keys if not outputs.get(k)]
            if missing:
                raise InputError(
                    f"stack outputs lack {', '.join(missing)} for the Azure endpoint",
                    hint="run `mdeploy up` first, or check the stack name",
                )
            ref = EndpointRef(*(str(outputs[k]) for k in keys))
        return cls(
            ref,
            scoring_uri=outputs.get("endpoint_url") or None,
            auth_mode=outputs.get("auth_mode") or None,
            **kwargs,
        )

    # ---- status ---------------------------------------------------------------------------

    def endpoint(self) -> dict[str, Any]:
        """The endpoint resource as ARM returns it."""
        return self._arm("GET", self.ref.path, what=f"endpoint {self.ref.endpoint}")

    def deployments(self) -> list[dict[str, Any]]:
        """Every deployment under the endpoint, following `nextLink` pages."""
        return self.arm.list(
            f"{self.ref.path}/deployments", what=f"deployments of {self.ref.endpoint}"
        )

    def traffic(self) -> dict[str, int]:
        """The live traffic split of the endpoint."""
        return dict((self.endpoint().get("properties") or {}).get("traffic") or {})

    def status(self) -> EndpointHealth:
        """Provisioning state, scoring URI, and each deployment's traffic and instances."""
        ep = self.endpoint()
        props = ep.get("properties") or {}
        versions = self._versions(props)
        state = str(props.get("provisioningState") or "").lower()
        return EndpointHealth(
            state=_STATE.get(state, "unknown"),
            url=props.get("scoringUri") or self.scoring_uri,
            region=ep.get("location"),
            versions=versions,
            replicas=total_replicas(versions),
            details={
                "endpoint_name": ep.get("name", self.ref.endpoint),
                "workspace": self.ref.workspace,
                "provisioning_state": props.get("provisioningState"),
                "auth_mode": props.get("authMode"),
                "public_network_access": props.get("publicNetworkAccess"),
                "mirror_traffic": dict(props.get("mirrorTraffic") or {}),
            },
        )

    def versions(self) -> list[VersionHealth]:
        """The endpoint's deployments as versions, with their share of the live traffic."""
        return self._versions(self.endpoint().get("properties") or {})

    def _versions(self, props: Mapping[str, Any]) -> list[VersionHealth]:
        traffic = {str(k): int(v) for k, v in (props.get("traffic") or {}).items()}
        return [self._version(d, traffic) for d in self.deployments()]

    def _version(self, dep: Mapping[str, Any], traffic: Mapping[str, int]) -> VersionHealth:
        props = dep.get("properties") or {}
        name = str(dep.get("name"))
        count = (dep.get("sku") or {}).get("capacity")
        return VersionHealth(
            name=name,
            traffic_percent=int(traffic.get(name, 0)),
            image=self._image_of(props.get("environmentId")),
            model_revision=(props.get("environmentVariables") or {}).get(REVISION_ENV),
            replicas=int(count) if count is not None else None,
            state=props.get("provisioningState"),
        )

    def _image_of(self, environment_id: str | None) -> str | None:
        """The image of a deployment's environment version; None when it cannot be read."""
        if not environment_id or not environment_id.startswith("/subscriptions/"):
            return None
        try:
            env = self._arm("GET", environment_id, what="environment version")
        except CloudError:
            return None
        return (env.get("properties") or {}).get("image")

    # ---- traffic (TrafficOps: deployments + endpoint traffic) ------------------------------

    def set_traffic(self, weights: dict[str, int], *, wait: bool = True) -> EndpointHealth:
        """
        Route traffic between deployments, e.g. {"v-1": 90, "v-2": 10}.

        Validated in targets/base.py (sum 100, deployments exist) so Azure never sees a bad
        split; deployments left out get 0.
        """
        validate_weights(weights)
        known = [str(d.get("name")) for d in self.deployments()]
        wanted = validate_weights(weights, known)
        # Absent means 0 to Azure; sending only the live shares keeps Pulumi's diff quiet.
        self.put_traffic({k: v for k, v in wanted.items() if v}, wait=wait)
        return self.status()

    def put_traffic(self, traffic: Mapping[str, int], *, wait: bool = True) -> None:
        """PUT the endpoint with `traffic` as is ({} = none anywhere: what destroy needs)."""
        body = _put_body(self.endpoint(), dict(traffic))
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                reply, headers = self._arm_full(
                    "PUT", self.ref.path, body=body, what=f"traffic of {self.ref.endpoint}"
                )
                break
            except ConflictError:  # the endpoint is still busy with another operation
                if attempt == CONFLICT_RETRIES:
                    raise
                time.sleep(self.poll_interval_s)
        if wait:
            self._wait(headers.get("azure-asyncoperation"), reply)

    def deploy_version(self, spec_version: VersionSpec) -> EndpointHealth:
        """
        A new deployment beside the live ones, with 0% of the traffic.

        What `az ml online-deployment create` does: the base deployment is copied (instance
        type, probes, request settings, secrets by Key Vault reference) with a new
        environment version holding the new image (environment versions are immutable),
        `sku.capacity` = replicas, then PUT and the async operation awaited.
        """
        health = self.status()
        if spec_version.name in health.traffic:
            raise InputError(
                f"endpoint {self.ref.endpoint} already has a deployment {spec_version.name}"
            )
        base_name = base_version(health, spec_version.base).name
        base = self._arm("GET", self._deployment_path(base_name), what=f"deployment {base_name}")
        props = {k: v for k, v in (base.get("properties") or {}).items() if k not in _READ_ONLY}
        props["environmentId"] = self._new_environment(props.get("environmentId"), spec_version)
        env = {**(props.get("environmentVariables") or {}), **spec_version.env}
        if spec_version.model_revision:
            env[REVISION_ENV] = spec_version.model_revision
        props["environmentVariables"] = env
        body: dict[str, Any] = {"location": base.get("location"), "properties": props}
        body["sku"] = {
            **(base.get("sku") or {"name": "Default"}),
            "capacity": spec_version.replicas,
        }
        for key in ("tags", "kind"):
            if base.get(key):
                body[key] = base[key]
        path = self._deployment_path(spec_version.name)
        reply, headers = self._arm_full("PUT", path, body=body, what=f"deployment {path}")
        self._wait(headers.get("azure-asyncoperation"), reply)
        return self.status()

    def remove_version(self, name: str) -> EndpointHealth:
        """DELETE a deployment that takes no traffic (never the last one), and wait."""
        refuse_removal(self.status(), name)
        path = self._deployment_path(name)
        reply, headers = self._arm_full("DELETE", path, what=f"deployment {name}")
        operation = headers.get("azure-asyncoperation") or headers.get("location")
        self._wait(operation, reply)
        return self.status()

    def _deployment_path(self, name: str) -> str:
        return f"{self.ref.path}/deployments/{urllib.parse.quote(name, safe='')}"

    def _new_environment(self, environment_id: str | None, spec_version: VersionSpec) -> str:
        """PUT a new version of the base deployment's environment with the new image."""
        if not environment_id or "/versions/" not in environment_id:
            raise CloudError(
                f"the base deployment's environment {environment_id!r} is not a versioned "
                "workspace environment; cannot derive one for the new image"
            )
        env = self._arm("GET", environment_id, what="environment version")
        props = {k: v for k, v in (env.get("properties") or {}).items() if k not in _READ_ONLY}
        props["image"] = spec_version.image
        digest = hashlib.sha256(spec_version.image.encode()).hexdigest()
        version = str(int(digest[:12], 16) % 1_000_000_000 + 1)  # as component.py names them
        new_id = environment_id.rsplit("/versions/", 1)[0] + f"/versions/{version}"
        self._arm("PUT", new_id, body={"properties": props}, what="environment version")
        return new_id

    # ---- invoke ---------------------------------------------------------------------------

    def invoke(
        self,
        body: bytes | str | Mapping[str, Any],
        *,
        deployment: str | None = None,
        stream: bool = False,
    ) -> bytes | Iterator[bytes]:
        """
        POST one JSON request to the scoring URI and return the reply body.

        With `stream=True` returns an iterator over the body's chunks as they arrive (vLLM's
        SSE `data:` lines). `deployment` pins one deployment, bypassing the traffic split.
        """
        uri, mode = self._scoring_target()
        headers = {
            "Authorization": f"Bearer {self._scoring_token(mode)}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        if deployment:
            headers[DEPLOYMENT_HEADER] = deployment
        request = urllib.request.Request(uri, data=_encode(body), headers=headers, method="POST")
        reply = self._open_scoring(request, deployment)
        if stream:
            return _chunks(reply)
        with reply:
            return reply.read()

    # ---- internals ------------------------------------------------------------------------

    def _scoring_target(self) -> tuple[str, str]:
        if self.scoring_uri and self.auth_mode:
            return self.scoring_uri, self.auth_mode
        props = self.endpoint().get("properties") or {}
        uri = self.scoring_uri or props.get("scoringUri")
        if not uri:
            raise CloudError(
                f"endpoint {self.ref.endpoint} has no scoring URI yet",
                hint="wait for provisioning to finish (`mdeploy status`)",
            )
        self.scoring_uri, self.auth_mode = uri, self.auth_mode or props.get("authMode") or "Key"
        return self.scoring_uri, self.auth_mode

    def _scoring_token(self, mode: str) -> str:
        """The bearer secret for the endpoint's auth mode; never stored, never printed."""
        low = mode.lower().replace("_", "")
        if low == "key":
            keys = self._arm("POST", f"{self.ref.path}/listKeys", body={}, what="endpoint keys")
            value = keys.get("primaryKey") or keys.get("secondaryKey")
        elif low == "amltoken":
            token = self._arm("POST", f"{self.ref.path}/token", body={}, what="endpoint token")
            value = token.get("accessToken")
        else:
            value = self.arm.token(AAD_SCORING_SCOPE)
        if not value:
            raise CloudError(f"endpoint {self.ref.endpoint} returned no {mode} credential")
        return str(value)

    def _open_scoring(self, request: urllib.request.Request, deployment: str | None) -> Any:
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            detail = _error_text(exc)
            pinned = f" (deployment {deployment})" if deployment else ""
            raise CloudError(
                f"scoring request to {self.ref.endpoint}{pinned} failed: HTTP {exc.code}"
                + (f": {detail}" if detail else ""),
                hint=_SCORING_HINTS.get(exc.code),
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CloudError(
                f"cannot reach the scoring URI of {self.ref.endpoint}: {reason(exc)}",
                hint="with public network access disabled, call from inside the workspace's "
                "private network",
            ) from None

    def _wait(self, operation_url: str | None, reply: Mapping[str, Any]) -> None:
        """Poll the Azure-AsyncOperation URL (else the endpoint) until a terminal state."""
        self.arm.wait(
            operation_url,
            (reply.get("properties") or {}).get("provisioningState"),
            what=f"endpoint {self.ref.endpoint}",
            current_state=lambda: (self.endpoint().get("properties") or {}).get(
                "provisioningState"
            ),
            poll_interval_s=self.poll_interval_s,
            timeout_s=self.wait_timeout_s,
        )

    def _arm(self, method: str, path: str, *, body: Any = None, what: str) -> dict[str, Any]:
        """One ARM call through the shared client (metrics.py reads Azure Monitor with it)."""
        return self.arm.call(method, path, body=body, what=what)

    def _arm_full(
        self, method: str, path: str, *, body: Any = None, what: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        return self.arm.call_full(method, path, body=body, what=what)


def _put_body(endpoint: Mapping[str, Any], traffic: dict[str, int]) -> dict[str, Any]:
    """The endpoint as a PUT body with a new traffic map and no read-only fields."""
    props = {k: v for k, v in (endpoint.get("properties") or {}).items() if k not in _READ_ONLY}
    props["traffic"] = traffic
    if props.get("mirrorTraffic"):  # Azure refuses to mirror to a deployment with live traffic
        props["mirrorTraffic"] = {
            k: v for k, v in props["mirrorTraffic"].items() if not traffic.get(k)
        }
    body: dict[str, Any] = {"location": endpoint.get("location"), "properties": props}
    for key in ("tags", "kind", "sku"):
        if endpoint.get(key):
            body[key] = endpoint[key]
    identity = endpoint.get("identity") or {}
    if identity.get("type"):
        body["identity"] = {"type": identity["type"]}
        if identity.get("userAssignedIdentities"):
            body["identity"]["userAssignedIdentities"] = {
                k: {} for k in identity["userAssignedIdentities"]
            }
    return body


def _chunks(reply: Any) -> Iterator[bytes]:
    """The reply body line by line as it arrives; closes the connection when done."""
    with reply:
        yield from reply


def _encode(body: bytes | str | Mapping[str, Any]) -> bytes:
    if isinstance(body, bytes):
        return body
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(2000).decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
    return " ".join(text.split())[:300]
