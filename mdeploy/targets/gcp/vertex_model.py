"""
A Pulumi dynamic provider that uploads the custom-container Model and deploys it to an Endpoint.

pulumi-gcp can create an empty `AiEndpoint` but cannot upload a custom model or deploy it, so
this resource does it with google-cloud-aiplatform (`Model.upload`, `Model.deploy`).

Lifecycle:
- create: upload the model, deploy it with 100 % of the traffic; if the deploy fails the
  uploaded model is deleted again (a create must leave nothing behind).
- update (any input but project, region, endpoint, private): blue/green. A new *version* of
  the same model is uploaded and deployed with 100 % of the traffic, then the old deployed
  model is undeployed and its version deleted, so the endpoint never serves nothing. A
  VPC-peered (private) endpoint holds one model only: the old one is undeployed once the new
  version is uploaded, and redeployed if the new one fails to deploy.
- project, region, endpoint or private changes: replacement (`diff`); the endpoint id
  changes with everything that replaces the endpoint, so the new deployment is created on the
  new endpoint before the old one is deleted.
- delete: undeploy (handing its traffic to the other deployed models, if any) and delete
  the model. read: the deployed model's live shape, or gone.

The Resource id is the model's resource name, which stays the same across versions. Pulumi
pickles the provider with dill: the class holds no state, imports the SDK inside methods, and
`_aiplatform()` is the one seam tests replace with a fake module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

__all__ = [
    "INPUTS",
    "REPLACE_ON",
    "VertexModelDeployment",
    "VertexModelDeploymentProvider",
    "deploy_kwargs",
    "split_without",
    "upload_kwargs",
]

INPUTS = (
    "project",
    "region",
    "endpoint",
    "private",
    "display_name",
    "description",
    "image",
    "environment",
    "port",
    "predict_route",
    "health_route",
    "shared_memory_mb",
    "deployment_timeout_s",
    "machine_type",
    "accelerator_type",
    "accelerator_count",
    "min_replicas",
    "max_replicas",
    "service_account",
    "labels",
    "kms_key_name",
    "duty_cycle",
)
OPTIONAL = ("private", "description", "service_account", "labels", "kms_key_name", "duty_cycle")
REQUIRED = tuple(name for name in INPUTS if name not in OPTIONAL)
REPLACE_ON = ("project", "region", "endpoint", "private")
OUTPUTS = ("model_name", "model_version_id", "deployed_model_id")
# Beyond the container's own startup window: scheduling a GPU node and pulling the image.
_DEPLOY_SLACK_S = 1200


def _aiplatform() -> Any:
    """The google-cloud-aiplatform module (the seam the provider tests replace)."""
    from google.cloud import aiplatform

    return aiplatform


def _not_found() -> type[Exception]:
    from google.api_core.exceptions import NotFound

    return NotFound


def _plain(value: Any) -> Any:
    """Unwrap Pulumi's RPC secret envelope, in case the engine passes one through."""
    from pulumi.runtime import rpc

    if isinstance(value, dict):
        if rpc._special_sig_key in value:
            return _plain(value.get("value"))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def upload_kwargs(props: Mapping[str, Any], parent_model: str | None = None) -> dict[str, Any]:
    """Arguments of `aiplatform.Model.upload` (google-cloud-aiplatform 2.x names)."""
    kwargs: dict[str, Any] = {
        "display_name": props["display_name"],
        "description": props.get("description") or None,
        "serving_container_image_uri": props["image"],
        "serving_container_environment_variables": dict(_plain(props["environment"])),
        "serving_container_ports": [int(props["port"])],
        "serving_container_predict_route": props["predict_route"],
        "serving_container_health_route": props["health_route"],
        "serving_container_shared_memory_size_mb": int(props["shared_memory_mb"]),
        "serving_container_deployment_timeout": int(props["deployment_timeout_s"]),
        "labels": dict(props.get("labels") or {}),
        "project": props["project"],
        "location": props["region"],
        "is_default_version": True,
        "sync": True,
    }
    if props.get("kms_key_name"):
        kwargs["encryption_spec_key_name"] = props["kms_key_name"]
    if parent_model:
        kwargs["parent_model"] = parent_model
    return kwargs


def deploy_kwargs(props: Mapping[str, Any], endpoint: Any, version_id: str) -> dict[str, Any]:
    """Arguments of `Model.deploy`: the GPU shape, replicas, identity, 100 % of the traffic."""
    kwargs: dict[str, Any] = {
        "endpoint": endpoint,
        "deployed_model_display_name": f"{props['display_name']}-v{version_id}"[:128],
        "traffic_percentage": 100,
        "machine_type": props["machine_type"],
        "accelerator_type": props["accelerator_type"],
        "accelerator_count": int(props["accelerator_count"]),
        "min_replica_count": int(props["min_replicas"]),
        "max_replica_count": int(props["max_replicas"]),
        "service_account": props.get("service_account") or None,
        "deploy_request_timeout": float(int(props["deployment_timeout_s"]) + _DEPLOY_SLACK_S),
        "sync": True,
    }
    if props.get("duty_cycle"):
        kwargs["autoscaling_target_accelerator_duty_cycle"] = int(props["duty_cycle"])
    return kwargs


def split_without(split: Mapping[str, int], removing: str, deployed: list[str]) -> dict[str, int]:
    """
    The traffic split once `removing` is undeployed: its share goes to the others in
    proportion (all of it to the first when they had none); {} when nothing remains.
    """
    rest = {k: int(split.get(k, 0)) for k in sorted(deployed) if k != removing}
    if not rest:
        return {}
    total = sum(rest.values())
    if total == 0:
        first = next(iter(rest))
        return {k: (100 if k == first else 0) for k in rest}
    exact = {k: v * 100 / total for k, v in rest.items()}
    out = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(rest, key=lambda k: (out[k] - exact[k], k))
    for key in by_remainder[: 100 - sum(out.values())]:
        out[key] += 1
    return out


def _endpoint(aip: Any, props: Mapping[str, Any]) -> Any:
    cls = aip.PrivateEndpoint if props.get("private") else aip.Endpoint
    return cls(endpoint_name=props["endpoint"], project=props["project"], location=props["region"])


def _versionless(resource_name: str) -> str:
    return resource_name.split("@", 1)[0]


def _find_deployed(endpoint: Any, model_name: str, version_id: str) -> Any | None:
    """The DeployedModel of `model_name` at `version_id` on `endpoint`, or None."""
    found = None
    for deployed in endpoint.list_models():
        same_model = _versionless(deployed.model) == _versionless(model_name)
        if same_model and str(deployed.model_version_id or "1") == str(version_id):
            found = deployed
    return found


def _deploy(model: Any, endpoint: Any, props: Mapping[str, Any]) -> str:
    """Deploy `model` and return the new deployed model id."""
    model.deploy(**deploy_kwargs(props, endpoint, str(model.version_id)))
    deployed = _find_deployed(endpoint, model.resource_name, str(model.version_id))
    if deployed is None:
        raise RuntimeError(
            f"{model.resource_name}@{model.version_id} is not on {props['endpoint']} "
            "after a successful deploy"
        )
    return str(deployed.id)


def _undeploy(endpoint: Any, deployed_model_id: str) -> None:
    """Undeploy one model, handing its traffic to the others; no-op when already gone."""
    deployed = [str(d.id) for d in endpoint.list_models()]
    if deployed_model_id not in deployed:
        return
    split = split_without(dict(endpoint.traffic_split or {}), deployed_model_id, deployed)
    endpoint.undeploy(deployed_model_id=deployed_model_id, traffic_split=split or None)


def _delete_version(aip: Any, props: Mapping[str, Any], model_name: str, version: str) -> None:
    registry = aip.models.ModelRegistry(
        model=model_name, project=props["project"], location=props["region"]
    )
    with contextlib.suppress(_not_found()):
        registry.delete_version(version)


def _restore(aip: Any, endpoint: Any, olds: Mapping[str, Any]) -> None:
    """Redeploy the previous version after a failed update of a one-model endpoint."""
    previous = aip.Model(
        olds["model_name"],
        project=olds["project"],
        location=olds["region"],
        version=olds["model_version_id"],
    )
    _deploy(previous, endpoint, olds)


def _outs(props: Mapping[str, Any], model: Any, deployed_model_id: str) -> dict[str, Any]:
    return {
        **props,
        "model_name": _versionless(model.resource_name),
        "model_version_id": str(model.version_id),
        "deployed_model_id": deployed_model_id,
    }


class VertexModelDeploymentProvider(ResourceProvider):
    """CRUD for one uploaded + deployed custom-container model (see the module docstring)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        from pulumi.runtime.rpc import UNKNOWN

        failures = [CheckFailure(k, "is required") for k in REQUIRED if news.get(k) is None]
        lo, hi = news.get("min_replicas"), news.get("max_replicas")
        # Numbers arrive as floats over Pulumi's RPC; unknowns (preview) as a sentinel string.
        if all(isinstance(v, (int, float)) for v in (lo, hi)) and not 1 <= lo <= hi:
            failures.append(CheckFailure("min_replicas", f"need 1 <= min ({lo}) <= max ({hi})"))
        for key in ("predict_route", "health_route"):
            route = news.get(key)
            if isinstance(route, str) and route != UNKNOWN and not route.startswith("/"):
                failures.append(CheckFailure(key, f"{route!r} must start with /"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in INPUTS if olds.get(k) != news.get(k)]
        replaces = [k for k in changed if k in REPLACE_ON]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        aip = _aiplatform()
        endpoint = _endpoint(aip, props)
        model = aip.Model.upload(**upload_kwargs(props))
        try:
            deployed_id = _deploy(model, endpoint, props)
        except Exception:
            model.delete()  # a failed create leaves nothing behind
            raise
        return CreateResult(_versionless(model.resource_name), _outs(props, model, deployed_id))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        aip = _aiplatform()
        endpoint = _endpoint(aip, news)
        model_name, old_version = olds["model_name"], olds["model_version_id"]
        private = bool(news.get("private"))
        model = aip.Model.upload(**upload_kwargs(news, parent_model=model_name))
        if private:  # one model per VPC-peered endpoint: make room first
            _undeploy(endpoint, olds["deployed_model_id"])
        try:
            deployed_id = _deploy(model, endpoint, news)
        except Exception:
            if private:
                _restore(aip, endpoint, olds)
            _delete_version(aip, news, model_name, str(model.version_id))
            raise
        if not private:
            _undeploy(endpoint, olds["deployed_model_id"])
        _delete_version(aip, news, model_name, old_version)
        return UpdateResult(_outs(news, model, deployed_id))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        aip = _aiplatform()
        with contextlib.suppress(_not_found()):
            _undeploy(_endpoint(aip, props), props["deployed_model_id"])
        with contextlib.suppress(_not_found()):  # the Model constructor GETs it
            aip.Model(
                props["model_name"], project=props["project"], location=props["region"]
            ).delete()

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        aip = _aiplatform()
        try:
            deployed = {str(d.id): d for d in _endpoint(aip, props).list_models()}
        except _not_found():
            return ReadResult("", {})
        live = deployed.get(str(props.get("deployed_model_id")))
        if live is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, **_live_shape(live)})


def _live_shape(deployed: Any) -> dict[str, Any]:
    """The inputs a person could change in the console, as Vertex reports them now."""
    resources = deployed.dedicated_resources
    spec = resources.machine_spec
    accelerator = getattr(spec.accelerator_type, "name", spec.accelerator_type)
    return {
        "machine_type": spec.machine_type,
        "accelerator_type": str(accelerator),
        "accelerator_count": int(spec.accelerator_count),
        "min_replicas": int(resources.min_replica_count),
        "max_replicas": int(resources.max_replica_count),
        "service_account": deployed.service_account or None,
    }


class VertexModelDeployment(pulumi.dynamic.Resource):
    """The model upload + deployment (type `pulumi-python:dynamic:Resource`)."""

    model_name: pulumi.Output[str]
    model_version_id: pulumi.Output[str]
    deployed_model_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        props: Mapping[str, Any],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        unknown = set(props) - set(INPUTS)
        if unknown:
            raise ValueError(f"unknown inputs: {', '.join(sorted(unknown))}")
        outputs = dict.fromkeys(OUTPUTS)
        super().__init__(VertexModelDeploymentProvider(), name, {**props, **outputs}, opts)
