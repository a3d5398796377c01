"""
Every AWS API call the SageMaker component would make, validated against botocore's models.

Runs over every example × environment (the planner's aws pick) × the main stack-config variants
× both auth modes (tests/conformance/_aws.py says how the graph becomes requests).
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache

import pytest
from conformance._aws import (
    Case,
    Request,
    UnmappedInput,
    aws_cases,
    aws_graph,
    check_policy,
    check_request,
    to_requests,
)

CASES = list(aws_cases())
# The calls issue 9 names: each must be exercised by at least one case.
EXPECTED_OPERATIONS = {
    ("sagemaker", "CreateModel"),
    ("sagemaker", "CreateEndpointConfig"),
    ("sagemaker", "CreateEndpoint"),
    ("sagemaker", "UpdateEndpoint"),
    ("ecr", "CreateRepository"),
    ("iam", "CreateRole"),
    ("iam", "PutRolePolicy"),
    ("secretsmanager", "CreateSecret"),
    ("secretsmanager", "PutSecretValue"),
    ("logs", "CreateLogGroup"),
    ("application-autoscaling", "RegisterScalableTarget"),
    ("application-autoscaling", "PutScalingPolicy"),
}


@cache
def _requests(case_id: str) -> tuple[Request, ...]:
    case = next(c for c in CASES if c.id == case_id)
    return tuple(r for res in aws_graph(case.args, case.config) for r in to_requests(res))


def _problems(case: Case) -> list[str]:
    problems: list[str] = []
    for request in _requests(case.id):
        problems += check_request(request)
        if request.operation == "PutRolePolicy":
            doc = request.params["PolicyDocument"]
            problems += [f"{request}: {p}" for p in check_policy(doc, case.args.region)]
        if request.operation == "CreateRole":
            doc = request.params["AssumeRolePolicyDocument"]
            problems += [f"{request}: {p}" for p in check_policy(doc, "", trust=True)]
    return problems


def test_cases_cover_every_example_environment_and_variant() -> None:
    examples = {c.example for c in CASES}
    assert examples == {
        "llama-70b-budget.yaml",
        "mistral-7b-eu.yaml",
        "mixtral-8x7b-sovereign-fr.yaml",
    }
    assert {c.env for c in CASES if c.example == "mixtral-8x7b-sovereign-fr.yaml"} == {
        None,
        "staging",
        "prod",
    }
    assert {c.variant for c in CASES} >= {"defaults", "existing-vpc", "auth-iam", "auth-key"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_request_conforms_to_botocore(case: Case, no_hf_token: None) -> None:
    assert _problems(case) == []


def test_every_named_operation_is_exercised() -> None:
    seen = {(r.service, r.operation) for c in CASES for r in _requests(c.id)}
    assert seen >= EXPECTED_OPERATIONS, sorted(EXPECTED_OPERATIONS - seen)


def test_variants_reach_the_requests() -> None:
    """The stack-config variants change what is sent (else they test nothing)."""
    by_variant = {c.variant: c for c in CASES if c.example == "mistral-7b-eu.yaml" and not c.env}
    vpc = next(r for r in _requests(by_variant["existing-vpc"].id) if r.operation == "CreateModel")
    assert vpc.params["VpcConfig"]["Subnets"]
    ops = {r.operation for r in _requests(by_variant["existing-repository"].id)}
    assert "CreateRepository" not in ops
    kms = next(
        r for r in _requests(by_variant["kms-and-s3-weights"].id) if r.operation == "CreateModel"
    )
    assert kms.params["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]["S3Uri"]


def test_synth_of_every_example_names_the_region_on_every_placed_resource() -> None:
    """IAM roles and role policies are global (IAM has no region); every other one names it."""
    for case in (c for c in CASES if c.variant == "defaults"):
        placed = [r for r in aws_graph(case.args) if r["type"].startswith("aws:")]
        regions = {(r["type"], r["inputs"].get("region")) for r in placed}
        expected = {
            (r["type"], None if r["type"].startswith("aws:iam/") else case.args.region)
            for r in placed
        }
        assert regions == expected, case.id


# -- the checker can fail ----------------------------------------------------------------------


def _first(case: Case, operation: str) -> Request:
    return next(r for r in _requests(case.id) if r.operation == operation)


def test_an_instance_type_outside_the_enum_is_caught(no_hf_token: None) -> None:
    case = CASES[0]
    bad = dataclasses.replace(case.args, instance_type="ml.g99.xlarge")
    requests = [r for res in aws_graph(bad) for r in to_requests(res)]
    problems = [p for r in requests for p in check_request(r)]
    assert any("InstanceType: 'ml.g99.xlarge' is not one of" in p for p in problems), problems


def test_a_name_breaking_the_pattern_is_caught() -> None:
    good = _first(CASES[0], "CreateEndpoint")
    bad = dataclasses.replace(good, params={**good.params, "EndpointName": "my_endpoint"})
    assert check_request(good) == []
    assert any("does not match" in p and "EndpointName" in p for p in check_request(bad))


def test_too_long_values_and_missing_members_are_caught() -> None:
    good = _first(CASES[0], "CreateEndpoint")
    long = dataclasses.replace(good, params={**good.params, "EndpointName": "a" * 64})
    assert any("at most 63" in p for p in check_request(long))
    missing = dataclasses.replace(good, params={"EndpointName": "x"})
    assert any("EndpointConfigName" in p for p in check_request(missing))


def test_a_number_above_the_maximum_is_caught() -> None:
    good = _first(CASES[0], "CreateEndpointConfig")
    variant = {**good.params["ProductionVariants"][0], "VolumeSizeInGB": 513}
    bad = dataclasses.replace(good, params={**good.params, "ProductionVariants": [variant]})
    assert any("VolumeSizeInGB: 513 is above the maximum 512" in p for p in check_request(bad))


def test_an_unmapped_pulumi_input_is_an_error() -> None:
    resource = {
        "type": "aws:sagemaker/endpoint:Endpoint",
        "name": "endpoint",
        "inputs": {"name": "x", "endpointConfigName": "y", "warpDrive": True},
    }
    with pytest.raises(UnmappedInput, match="warpDrive"):
        to_requests(resource)
    with pytest.raises(UnmappedInput, match="no translation"):
        to_requests({"type": "aws:ec2/vpc:Vpc", "name": "v", "inputs": {}})


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"Action": ["s3:GetObjekt"], "Resource": "*"}, "s3 has no operation GetObjekt"),
        ({"Action": ["sagemaker:X"], "Resource": "*"}, "unknown service prefix"),
        (
            {"Action": ["s3:GetObject"], "Resource": "arn:aws:s3:eu-west-3::bucket/key"},
            "carry no region",
        ),
        (
            {"Action": ["logs:PutLogEvents"], "Resource": "arn:aws:logs:us-east-1:1:log-group:x"},
            "is not an ARN",
        ),
        (
            {
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
            },
            "the endpoint is in eu-west-3",
        ),
        (
            {"Action": ["ecr:BatchGetImage"], "Resource": "arn:aws:ecr:eu-west-3:123456789012:x"},
            "is not a ecr resource",
        ),
    ],
)
def test_bad_policies_are_caught(statement: dict, expected: str) -> None:
    doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **statement}]})
    problems = check_policy(doc, "eu-west-3")
    assert any(expected in p for p in problems), problems


def test_a_good_policy_passes() -> None:
    doc = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": ["arn:aws:s3:::bucket/key*", "arn:aws:s3:::bucket"],
                }
            ],
        }
    )
    assert check_policy(doc, "eu-west-3") == []
