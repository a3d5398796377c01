"""
The aws `Target`: the light entry point `get_target("aws")` returns.

The cloud's rules (names, tags, environment, settings, checks) live in `rules.py`; the Pulumi
resources in `component.py` and the day-2 client in `ops.py`, imported lazily by the methods
below, so that importing this module costs nothing and no module of the folder imports it back.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from mdeploy.errors import CloudError
from mdeploy.targets.aws.registry import repository_for
from mdeploy.targets.aws.rules import (
    CREDENTIALS_HINT,
    SUPPORTED_SECRET_REFS,
    caller_account,
    profile_credentials,
    repository_name,
    resource_names,
    unsupported,
)
from mdeploy.targets.aws.settings import AwsSettings
from mdeploy.targets.base import EndpointArgs, Ops, QuotaProblem, Target

if TYPE_CHECKING:
    from mdeploy.spec.models import Deployment

__all__ = ["TARGET", "AwsTarget"]

# Offline synth (deploy/mocks.py): a fixed account id for ARNs and ECR URLs.
_MOCK_ACCOUNT = "123456789012"


class AwsTarget(Target):
    """Amazon SageMaker real-time endpoints, image in ECR, weights from S3 or the Hub."""

    name: ClassVar[str] = "aws"
    display_name: ClassVar[str] = "AWS SageMaker"
    catalog_targets: ClassVar[tuple[str, ...]] = ("aws",)
    instance_label: ClassVar[str] = "SageMaker real-time"  # one instance per replica
    secret_ref_forms: ClassVar[tuple[str, ...]] = ("aws-sm:ARN",)  # Secrets Manager
    model_source_schemes: ClassVar[tuple[str, ...]] = ("s3",)  # mounted or boot-fetched
    pulumi_plugins: ClassVar[tuple[str, ...]] = ("aws",)
    python_modules: ClassVar[tuple[str, ...]] = ("pulumi", "pulumi_aws", "boto3", "botocore")
    # ECR private registries (docs.aws.amazon.com/AmazonECR/latest/userguide/Registries.html).
    registry_hosts: ClassVar[tuple[str, ...]] = (
        r"^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$",
    )
    credentials_hint: ClassVar[str] = CREDENTIALS_HINT
    supported_secret_refs: ClassVar[tuple[str, ...]] = SUPPORTED_SECRET_REFS
    # CreateModel: 400 "Unsupported manifest media type" for OCI (amazon-sagemaker-feedback#180).
    accepted_manifest_types: ClassVar[tuple[str, ...]] = (
        "application/vnd.docker.distribution.manifest.v2+json",
    )

    def component(self, resource_name: str, args: EndpointArgs, opts: Any = None) -> Any:
        from mdeploy.targets.aws.component import AwsEndpoint

        return AwsEndpoint(resource_name, args, opts)

    def registry_repository(self, args: EndpointArgs, stack_config: dict[str, str]) -> str:
        settings = AwsSettings.from_stack(stack_config)
        if settings.existing_repository_url:
            return settings.existing_repository_url.rstrip("/")
        account = settings.aws_account_id or caller_account(args.region)
        return repository_for(account, args.region, repository_name(args))

    def check_credentials(self) -> tuple[bool, str]:
        env = os.environ
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            return True, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set"
        if env.get("AWS_ACCESS_KEY_ID"):
            return False, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
        if env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"):
            return True, "web identity token (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)"
        for var in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
            if env.get(var):
                return True, f"container credentials ({var})"
        return profile_credentials(env)

    def stack_config(self, args: EndpointArgs) -> dict[str, str]:
        return {"aws:region": args.region}

    def unsupported(self, spec: Deployment) -> dict[str, str]:
        """Spec features this target cannot honour, mapped to a reason and what to do."""
        return unsupported(spec)

    def ops(self, outputs: dict[str, Any]) -> Ops:
        from mdeploy.targets.aws.ops import AwsOps

        return AwsOps.from_outputs(outputs)

    def quota_problem(self, args: EndpointArgs) -> QuotaProblem | None:
        """
        The "<instance type> for endpoint usage" quota (Service Quotas, service code sagemaker)
        against the instances the region's endpoints hold plus `replicas.min` new ones: what
        CreateEndpoint or a blue/green UpdateEndpoint needs to start. Autoscaling beyond that
        is not checked (a scale-out over quota fails later, without stopping the endpoint).
        """
        from mdeploy.targets.aws.ops import AwsOps, quota_request_hint

        ops = AwsOps(resource_names(args).endpoint, args.region)
        check = ops.quota_check(args.instance_type, args.replicas_min)
        if check.ok is None:
            raise CloudError(f"SageMaker quota for {args.instance_type}: {check.reason}")
        if check.ok:
            return None
        in_use = check.in_use or 0
        return QuotaProblem(
            quota_name=f"{args.instance_type} for endpoint usage",
            needed=float(args.replicas_min),
            available=check.available or 0.0,
            request_hint=quota_request_hint(
                check.quota_code, in_use + args.replicas_min, args.region
            ),
        )

    def fake_outputs(
        self, typ: str, name: str, inputs: dict[str, Any], region: str
    ) -> dict[str, Any]:
        """ECR repository URL and ARNs in AWS's forms, for offline synth."""
        if not typ.startswith("aws:"):
            return {}
        region = inputs.get("region") or region
        out: dict[str, Any] = {}
        if typ == "aws:ecr/repository:Repository":
            repo = inputs.get("name") or name
            out["repositoryUrl"] = f"{_MOCK_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{repo}"
            out["registryId"] = _MOCK_ACCOUNT
        service = typ.split(":")[1].split("/")[0]
        out["arn"] = f"arn:aws:{service}:{region}:{_MOCK_ACCOUNT}:{name}"
        return out

    def fake_call(self, token: str, region: str) -> dict[str, Any] | None:
        """Caller identity, partition and region answers for offline synth."""
        answers: dict[str, dict[str, Any]] = {
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": _MOCK_ACCOUNT,
                "arn": f"arn:aws:iam::{_MOCK_ACCOUNT}:user/mock",
                "userId": "MOCK",
            },
            "aws:index/getPartition:getPartition": {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
            },
            "aws:index/getRegion:getRegion": {"name": region, "region": region},
        }
        return answers.get(token)


TARGET = AwsTarget()
