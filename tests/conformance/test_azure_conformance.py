"""
Azure ML: the online endpoint and deployment bodies of every example × environment × the main
stack-config variants against ARM's Swagger (vendored mfe.json 2024-10-01); and residency:
every placed resource of the graph names the region the plan chose (issue 9 §10).
"""

from __future__ import annotations

import copy
import importlib
import inspect

import pytest
from conformance._azure import RESOURCES, arm_body, check
from conformance._k8s import Case, example_cases, synth_case

from mdeploy.deploy.synth import synth_args

CASES = example_cases()
VARIANTS = {
    "defaults": {},
    "existing-workspace-private": {
        "mdeploy:resourceGroupName": "rg-ml",
        "mdeploy:workspaceName": "ws-ml",
        "mdeploy:privateEndpoint": "true",
        "mdeploy:egressPublicNetworkAccess": "Disabled",
        "mdeploy:requestTimeoutMs": "180000",
        "mdeploy:appInsights": "false",
    },
}
# Resources that take no location of their own, and why that is not a residency gap.
UNPLACED = {
    "mdeploy:azure:Endpoint": "the component itself, not a cloud resource",
    "azure-native:keyvault:Secret": "stored in its vault, which is placed",
    "azure-native:machinelearningservices:EnvironmentVersion": "an asset of the workspace",
    "azure-native:authorization:RoleAssignment": "RBAC is not regional",
    "pulumi-python:dynamic/azure:EndpointTraffic": "the traffic map of the placed endpoint",
}


@pytest.fixture(scope="module")
def graphs() -> dict[str, list[tuple[str, object]]]:
    out = {}
    for case in CASES:
        result = synth_case(case, "azure")
        if result is None:
            out[case.id] = []
            continue
        args = result.resolved.args
        out[case.id] = [("defaults", result)] + [
            (name, synth_args("azure", args, config=config))
            for name, config in VARIANTS.items()
            if config
        ]
    return out


def _pairs(graphs, case: Case):
    if not graphs[case.id]:
        pytest.skip(f"{case.id}: no Azure offer fits")
    return graphs[case.id]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_endpoint_and_deployment_bodies_conform_to_the_arm_model(graphs, case: Case) -> None:
    for variant, result in _pairs(graphs, case):
        sent = [r for r in result.resources if r["type"] in RESOURCES]
        assert len(sent) == 2, variant
        for resource in sent:
            definition, body, problems = arm_body(resource)
            assert problems + check(body, definition) == [], f"{variant} {resource['name']}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_placed_resource_names_the_region(graphs, case: Case) -> None:
    pairs = _pairs(graphs, case)
    region = pairs[0][1].resolved.args.region
    for variant, result in pairs:
        for res in result.resources:
            if not _accepts_location(res["type"]):
                assert res["type"] in UNPLACED, f"{res['type']} {res['name']}: no location"
                continue
            where = res["inputs"].get("location")
            assert where == region, f"{variant} {res['type']} {res['name']}: {where}"


def _accepts_location(type_token: str) -> bool:
    """Whether the pulumi-azure-native resource class takes a location input."""
    if not type_token.startswith("azure-native:"):
        return False
    _, module, name = type_token.split(":")
    cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), name)
    return "location" in inspect.signature(cls._internal_init).parameters


# ---- the checker catches what ARM would refuse -------------------------------------------


def _deployment(graphs) -> dict:
    for pairs in graphs.values():
        for _, result in pairs:
            for r in result.resources:
                if r["type"].endswith(":OnlineDeployment"):
                    return arm_body(r)[1]
    raise AssertionError("no deployment")


@pytest.mark.parametrize(
    ("break_it", "problem"),
    [
        (lambda b: b["properties"].update(endpointComputeType="Serverless"), "names no"),
        (lambda b: b["properties"]["requestSettings"].update(requestTimeout="90s"), "ISO 8601"),
        (lambda b: b["properties"]["livenessProbe"].update(failureThreshold="6"), "integer"),
        (lambda b: b["properties"].update(instanceTypes="Standard_NC24ads_A100_v4"), "member"),
        (lambda b: b["properties"]["scaleSettings"].update(scaleType="Auto"), "names no"),
        (lambda b: b["sku"].pop("name"), "required"),
        (lambda b: b["properties"].update(provisioningState="Succeeded"), "read-only"),
        (lambda b: b.pop("location"), "required"),
    ],
    ids=[
        "compute-type", "duration", "int-type", "unknown-member", "scale-type",
        "sku-name", "read-only", "location",
    ],
)  # fmt: skip
def test_the_checker_catches_an_invalid_deployment(graphs, break_it, problem) -> None:
    body = copy.deepcopy(_deployment(graphs))
    assert check(body, "OnlineDeploymentTrackedResource") == []
    break_it(body)
    problems = check(body, "OnlineDeploymentTrackedResource")
    assert len(problems) == 1 and problem in problems[0], problems


def test_an_unmapped_input_is_reported() -> None:
    resource = {
        "type": "azure-native:machinelearningservices:OnlineEndpoint",
        "inputs": {"endpointName": "e", "location": "x", "properties": {}, "trafic": {}},
    }
    assert arm_body(resource)[2] == [
        "input 'trafic' is neither a URL path parameter nor a body member"
    ]


def test_an_endpoint_auth_mode_outside_the_enum_is_caught() -> None:
    body = {"location": "francecentral", "properties": {"authMode": "Keys"}}
    assert check(body, "OnlineEndpointTrackedResource") == [
        "$.properties.authMode: 'Keys' is not one of ['AMLToken', 'Key', 'AADToken']"
    ]
