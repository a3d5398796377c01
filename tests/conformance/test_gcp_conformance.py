"""
Vertex AI: what every example × environment would send, checked against Vertex's own protos
(google.cloud.aiplatform_v1.types) and the documented machine × accelerator × count pairs; and
residency: every placed resource of the graph names the region the plan chose (issue 9 §10).
"""

from __future__ import annotations

import importlib
import inspect

import pytest
from conformance._gcp import deployed_model, model_props, pair_problem, upload_request
from conformance._k8s import Case, example_cases, synth_case

from mdeploy.deploy.synth import synth_args

CASES = example_cases()
MODEL = "projects/mock-project/locations/europe-west4/models/123"
# Resources that have no location of their own, and why that is not a residency gap.
UNPLACED = {
    "mdeploy:gcp:Endpoint": "the component itself, not a cloud resource",
    "gcp:serviceaccount/account:Account": "IAM is global; the account stores no data",
    "gcp:projects/iAMMember:IAMMember": "IAM binding (global)",
    "gcp:secretmanager/secretIamMember:SecretIamMember": "IAM binding (global)",
    "gcp:secretmanager/secretVersion:SecretVersion": "stored where its secret's replicas are",
    "gcp:storage/bucketIAMMember:BucketIAMMember": "IAM binding on the user's weights bucket",
}


VARIANTS = {
    "private-cmek-duty-cycle": {
        "mdeploy:network": "projects/123456789/global/networks/vpc-ml",
        "mdeploy:kmsKeyName": "projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k",
        "mdeploy:acceleratorDutyCycle": "70",
        "mdeploy:serviceAccountEmail": "runner@p.iam.gserviceaccount.com",
    },
    "dedicated-existing-repo": {
        "mdeploy:dedicatedEndpoint": "true",
        "mdeploy:existingRepository": "shared-images",
        "mdeploy:repositoryKeepVersions": "5",
    },
}


@pytest.fixture(scope="module")
def graphs() -> dict[str, object]:
    return {case.id: synth_case(case, "gcp") for case in CASES}


def _result(graphs, case: Case):
    result = graphs[case.id]
    if result is None:
        pytest.skip(f"{case.id}: no Vertex offer fits")
    return result


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_upload_and_deploy_requests_are_valid_vertex_protos(graphs, case: Case) -> None:
    base = _result(graphs, case)
    variants = [base] + [
        synth_args("gcp", base.resolved.args, config=config) for config in VARIANTS.values()
    ]
    for result in variants:
        props = model_props(result)
        model = upload_request(props)
        assert model.container_spec.image_uri.split("@")[1].startswith("sha256:")
        assert model.container_spec.ports[0].container_port == props["port"]
        deployed = deployed_model(props, MODEL)
        spec = deployed.dedicated_resources.machine_spec
        assert spec.accelerator_type.name == props["accelerator_type"]
        count = spec.accelerator_count
        assert pair_problem(spec.machine_type, spec.accelerator_type.name, count) is None
    cmek = upload_request(model_props(variants[1]))
    assert cmek.encryption_spec.kms_key_name.endswith("/cryptoKeys/k")
    duty = deployed_model(model_props(variants[1]), MODEL).dedicated_resources
    assert [m.target for m in duty.autoscaling_metric_specs] == [70]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_placed_resource_names_the_region(graphs, case: Case) -> None:
    result = _result(graphs, case)
    region = result.resolved.args.region
    for res in result.resources:
        where = _place(res)
        if where is None:
            assert res["type"] in UNPLACED, f"{res['type']} {res['name']}: no location input"
        else:
            assert where == {region}, f"{res['type']} {res['name']}: {where} != {region}"


def _place(res: dict) -> set[str] | None:
    """The places a resource names: location/region inputs, secret replica locations."""
    inputs = res["inputs"]
    if res["type"] == "gcp:secretmanager/secret:Secret":
        replicas = inputs["replication"]["userManaged"]["replicas"]
        return {r["location"] for r in replicas}
    if res["type"].startswith("pulumi-python:dynamic"):
        return {inputs["region"]}
    if not _accepts_location(res["type"]):
        return None
    return {inputs[k] for k in ("location", "region") if k in inputs} or {"<missing>"}


def _accepts_location(type_token: str) -> bool:
    """Whether the pulumi-gcp resource class takes a location or region input."""
    if not type_token.startswith("gcp:"):
        return False
    _, module, name = type_token.split(":")
    cls = getattr(importlib.import_module(f"pulumi_gcp.{module.split('/')[0]}"), name)
    return bool({"location", "region"} & set(inspect.signature(cls._internal_init).parameters))


# ---- the checkers catch what Vertex would refuse ----------------------------------------


def _props(graphs) -> dict:
    for result in graphs.values():
        if result is not None:
            return model_props(result)
    raise AssertionError("no Vertex graph")


def test_an_unknown_accelerator_enum_is_caught(graphs) -> None:
    props = {**_props(graphs), "accelerator_type": "NVIDIA_H100"}  # the enum is NVIDIA_H100_80GB
    # The SDK's validator refuses it first (ValueError); the proto enum would (KeyError).
    with pytest.raises((KeyError, ValueError), match="NVIDIA_H100"):
        deployed_model(props, MODEL)


def test_a_non_integer_port_is_caught(graphs) -> None:
    with pytest.raises((TypeError, ValueError)):
        upload_request({**_props(graphs), "port": "http"})


def test_negative_replicas_are_caught_by_the_sdk_validator(graphs) -> None:
    with pytest.raises(ValueError, match="replica"):
        deployed_model({**_props(graphs), "min_replicas": -1}, MODEL)


@pytest.mark.parametrize(
    ("machine", "accelerator", "count", "problem"),
    [
        ("g2-standard-24", "NVIDIA_L4", 2, None),
        ("a3-highgpu-8g", "NVIDIA_H100_80GB", 8, None),
        ("n1-standard-8", "NVIDIA_TESLA_T4", 1, None),
        ("g2-standard-8", "NVIDIA_H100_80GB", 1, "carries NVIDIA_L4"),
        ("a3-highgpu-2g", "NVIDIA_H100_80GB", 4, "outside 1..2"),
        ("g2-standard-48", "NVIDIA_L4", 8, "outside 1..4"),
        ("n1-standard-8", "NVIDIA_L4", 1, "cannot be attached"),
        ("n1-standard-64", "NVIDIA_TESLA_T4", 1, "not a machine type"),
    ],
)
def test_machine_accelerator_pairs(machine, accelerator, count, problem) -> None:
    found = pair_problem(machine, accelerator, count)
    assert (found is None) if problem is None else (problem in (found or "")), found
