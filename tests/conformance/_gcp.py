"""
Vertex AI conformance: the Model.upload and Endpoint.deploy requests as Vertex's own protos.

Authority: `google.cloud.aiplatform_v1.types` (google-cloud-aiplatform, installed from PyPI,
the gcp extra), the proto-plus messages generated from googleapis' aiplatform v1 protos. A field
name the API lacks raises ValueError, an enum name it lacks (AcceleratorType) KeyError, a wrong
type TypeError. The chain:

1. the real `mdeploy:gcp:Endpoint` component under the recording mock engine (synth) records
   the inputs of its `model` dynamic resource: what the provider receives at `up`;
2. `vertex_model.upload_kwargs` / `deploy_kwargs` turn them into the SDK call arguments, as
   the provider does;
3. `upload_request` / `deployed_model` build the protos from those arguments the way
   google-cloud-aiplatform 2.x's `Model.upload` and `Endpoint._deploy_call` do (field for
   field; see the SDK's models.py), plus the SDK's own display-name, label and
   replica-count validators;
4. `pair_problem`: the machine type × accelerator type × count against the documented table
   vendored in schemas/vertex_machine_accelerators.json.

What only a real project shows: quota (checked at `up` by GcpOps.quota_problem), whether the
region offers that machine type, and the image pull by the Vertex service agent.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from mdeploy.deploy.synth import SynthResult
from mdeploy.targets.gcp.vertex_model import deploy_kwargs, upload_kwargs

__all__ = [
    "deployed_model",
    "model_props",
    "pair_problem",
    "upload_request",
]

SCHEMAS = Path(__file__).resolve().parent / "schemas"


def model_props(result: SynthResult) -> dict[str, Any]:
    """The inputs of the `model` dynamic resource (what VertexModelDeploymentProvider gets)."""
    (model,) = [r for r in result.resources if r["name"] == "model"]
    return {k: v for k, v in model["inputs"].items() if not k.startswith("__")}


def upload_request(props: dict[str, Any]) -> Any:
    """The `Model` of UploadModelRequest, built from upload_kwargs as Model.upload builds it."""
    from google.cloud.aiplatform import utils
    from google.cloud.aiplatform_v1 import types
    from google.protobuf import duration_pb2

    kw = upload_kwargs(props)
    utils.validate_display_name(kw["display_name"])
    if kw["labels"]:
        utils.validate_labels(kw["labels"])
    spec = types.ModelContainerSpec(
        image_uri=kw["serving_container_image_uri"],
        env=[
            types.EnvVar(name=str(k), value=str(v))
            for k, v in kw["serving_container_environment_variables"].items()
        ],
        ports=[types.Port(container_port=p) for p in kw["serving_container_ports"]],
        predict_route=kw["serving_container_predict_route"],
        health_route=kw["serving_container_health_route"],
        shared_memory_size_mb=kw["serving_container_shared_memory_size_mb"],
        deployment_timeout=duration_pb2.Duration(
            seconds=kw["serving_container_deployment_timeout"]
        ),
    )
    encryption = kw.get("encryption_spec_key_name")
    return types.Model(
        display_name=kw["display_name"],
        description=kw["description"] or "",
        container_spec=spec,
        labels=kw["labels"],
        encryption_spec=types.EncryptionSpec(kms_key_name=encryption) if encryption else None,
    )


def deployed_model(props: dict[str, Any], model_name: str) -> Any:
    """The `DeployedModel` of DeployModelRequest, as Endpoint._deploy_call builds it."""
    from google.cloud.aiplatform import models
    from google.cloud.aiplatform_v1 import types

    kw = deploy_kwargs(props, endpoint=None, version_id="1")
    models.Endpoint._validate_deploy_args(
        min_replica_count=kw["min_replica_count"],
        max_replica_count=kw["max_replica_count"],
        accelerator_type=kw["accelerator_type"],
        deployed_model_display_name=kw["deployed_model_display_name"],
        traffic_split=None,
        traffic_percentage=kw["traffic_percentage"],
        deployment_resource_pool=None,
        required_replica_count=None,
    )
    metrics = []
    if kw.get("autoscaling_target_accelerator_duty_cycle"):
        metrics.append(
            types.AutoscalingMetricSpec(
                metric_name="aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle",
                target=kw["autoscaling_target_accelerator_duty_cycle"],
            )
        )
    resources = types.DedicatedResources(
        machine_spec=types.MachineSpec(
            machine_type=kw["machine_type"],
            accelerator_type=kw["accelerator_type"],
            accelerator_count=kw["accelerator_count"],
        ),
        min_replica_count=kw["min_replica_count"],
        max_replica_count=kw["max_replica_count"],
        autoscaling_metric_specs=metrics,
    )
    return types.DeployedModel(
        model=model_name,
        display_name=kw["deployed_model_display_name"],
        dedicated_resources=resources,
        service_account=kw["service_account"] or "",
    )


@cache
def _table() -> dict[str, Any]:
    return json.loads((SCHEMAS / "vertex_machine_accelerators.json").read_text())


def pair_problem(machine: str, accelerator: str, count: int) -> str | None:
    """Why Vertex would refuse this machine × accelerator × count (None when documented)."""
    table = _table()
    optimized = table["accelerator_optimized"]
    series = machine.rsplit("-", 1)[0]
    if series in optimized["series"]:
        wanted = optimized["series"][series]
        if accelerator != wanted:
            return f"{machine} carries {wanted}, not {accelerator}"
        gpus = optimized["g2_gpus"].get(machine) or _suffix_gpus(machine)
        if gpus is None:
            return f"{machine}: unknown machine type of the {series} series"
        if not 1 <= count <= gpus:
            return f"{machine} has {gpus} GPU(s); acceleratorCount {count} is outside 1..{gpus}"
        return None
    n1 = table["n1"]
    if machine in n1["machine_types"]:
        counts = n1["accelerators"].get(accelerator)
        if counts is None:
            return f"{accelerator} cannot be attached to {machine} for prediction"
        return None if count in counts else f"{accelerator} × {count} is not allowed on N1"
    return f"{machine} is not a machine type Vertex AI serves predictions on"


def _suffix_gpus(machine: str) -> int | None:
    last = machine.rsplit("-", 1)[-1]
    return int(last[:-1]) if last.endswith("g") and last[:-1].isdigit() else None
