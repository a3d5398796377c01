"""
IAM policy documents for the SageMaker execution role, one per concern, each scoped to
exactly what this endpoint touches. Pure functions over ARNs: no Pulumi, no network.

Only three statements name "*": `ecr:GetAuthorizationToken` (IAM has no resource for it),
the EC2 network-interface actions SageMaker needs in a VPC, and `cloudwatch:PutMetricData`,
narrowed by a condition to SageMaker's metrics namespace (AWS's documented execution role).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mdeploy.targets.aws.rules import ModelData

__all__ = [
    "METRICS_NAMESPACE",
    "VPC_ACTIONS",
    "ecr_pull_policy",
    "logs_policy",
    "policy_document",
    "s3_read_policy",
    "secret_resource",
    "statement",
]

METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"
VPC_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
]


def statement(actions: Sequence[str], resources: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": list(actions), "Resource": resources, **extra}


def policy_document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def _s3_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def s3_read_policy(data: ModelData, partition: str) -> str:
    """GetObject on exactly the weights (object or prefix), ListBucket limited to the prefix."""
    bucket, key = _s3_parts(data.s3_uri or "")
    if data.url:
        return policy_document(statement(["s3:GetObject"], f"arn:{partition}:s3:::{bucket}/{key}"))
    read = statement(["s3:GetObject"], f"arn:{partition}:s3:::{bucket}/{key}*")
    listing = statement(["s3:ListBucket"], f"arn:{partition}:s3:::{bucket}")
    if key:
        listing["Condition"] = {"StringLike": {"s3:prefix": [key, f"{key}*"]}}
    return policy_document(read, listing)


def ecr_pull_policy(repository_arn: str) -> str:
    """Pull layers of one repository; the token call has no resource in IAM."""
    return policy_document(
        statement(["ecr:GetAuthorizationToken"], "*"),
        statement(
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            repository_arn,
        ),
    )


def logs_policy(partition: str, region: str, account: str, endpoint: str) -> str:
    """Write this endpoint's log group and streams; metrics only in SageMaker's namespace."""
    group = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/{endpoint}"
    return policy_document(
        statement(["logs:CreateLogGroup", "logs:DescribeLogStreams"], group),
        statement(["logs:CreateLogStream", "logs:PutLogEvents"], f"{group}:log-stream:*"),
        statement(
            ["cloudwatch:PutMetricData"],
            "*",
            Condition={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
        ),
    )


def secret_resource(ref: str, partition: str, region: str, account: str) -> str:
    """IAM resource for an aws-sm reference: the ARN, or a name's ARN with its random suffix."""
    if ref.startswith("arn:"):
        return ref
    return f"arn:{partition}:secretsmanager:{region}:{account}:secret:{ref}-??????"
