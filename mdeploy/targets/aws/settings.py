"""
The SageMaker target's stack settings (`pulumi config set mdeploy:<key>`), every key optional.

The field descriptions are the documentation; the table below is rendered from them by
`settings_table(AwsSettings, markdown=False)` and a test keeps the two equal.

============================  ==================================================================
vpcSubnetIds                  subnets for the model's ENIs (JSON list or comma list)
vpcSecurityGroupIds           security groups for them; both keys or neither
existingRepositoryUrl         pull from this ECR repository instead of creating one
awsAccountId                  the account of the ECR repository to create (else asked of STS)
modelDataUrl                  s3://…/model.tar.gz unpacked to /opt/ml/model
modelS3Prefix                 s3://bucket/prefix/ copied uncompressed to /opt/ml/model
kmsKeyArn                     CMK for ECR, created secrets and EBS volumes
enableNetworkIsolation        true | false (default false: hf:// and secrets need the network)
rollbackAlarmNames            CloudWatch alarms (≤ 10) that roll a deployment back
canaryPercent                 first traffic step of a blue/green update, 1–50 (default 10)
bakeSeconds                   watch alarms after each traffic step, 0–3600 (600)
invocationsPerInstanceTarget  autoscaling target, invocations per instance per minute (30: about
                              half of 16 sequences at ~15 s a reply)
scaleInCooldownSeconds        default 600 (GPU instances take minutes to start)
scaleOutCooldownSeconds       default 300
logRetentionDays              endpoint log group retention (default 30)
volumeSizeGb                  EBS volume per instance; default sized from the weights
inferenceAmiVersion           the GPU host AMI (ProductionVariant.InferenceAmiVersion); default
                              the oldest one whose driver runs the image's CUDA (see target.py)
============================  ==================================================================
"""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from mdeploy.errors import InputError
from mdeploy.targets._config import Flag, StackSettings, TextList, Whole

__all__ = ["GPU_INFERENCE_AMIS", "VOLUME_GB_MAX", "VOLUME_GB_MIN", "AwsSettings"]

# ProductionVariant.VolumeSizeInGB range (botocore sagemaker service model).
VOLUME_GB_MIN, VOLUME_GB_MAX = 1, 512
# ProductionVariant.InferenceAmiVersion: each GPU host AMI with its NVIDIA driver and the CUDA
# version that driver supports, as botocore's SageMaker model documents that member (botocore
# 1.44.18, data/sagemaker/2017-07-24/service-2.json; the same list is on
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariant.html), read
# 2026-12-06. Oldest first. Without an override SageMaker's default host runs driver 470 / CUDA
# 11.4 on g4dn, g5, p4d and 535 / CUDA 12.2 on g6, p5 (docs.aws.amazon.com/sagemaker/latest/dg/
# inference-gpu-drivers.html), too old for the image below; these AMIs disable CUDA-compat
# mounting except gpu-2, so the host driver must support the image's CUDA by itself.
GPU_INFERENCE_AMIS: tuple[tuple[str, int, tuple[int, int]], ...] = (
    ("al2-ami-sagemaker-inference-gpu-2", 535, (12, 2)),
    ("al2-ami-sagemaker-inference-gpu-2-1", 535, (12, 2)),
    ("al2-ami-sagemaker-inference-gpu-3-1", 550, (12, 4)),
    ("al2023-ami-sagemaker-inference-gpu-4-1", 580, (13, 0)),
)
_S3_URL = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?")


class AwsSettings(StackSettings):
    """The `mdeploy:*` keys of an AWS stack, parsed and checked once."""

    vpc_subnet_ids: TextList = Field(
        (),
        alias="vpcSubnetIds",
        description="subnets for the model's ENIs (JSON list or comma list)",
    )
    vpc_security_group_ids: TextList = Field(
        (),
        alias="vpcSecurityGroupIds",
        description="security groups for them; both keys or neither",
    )
    existing_repository_url: str | None = Field(
        None,
        alias="existingRepositoryUrl",
        description="pull from this ECR repository instead of creating one",
    )
    aws_account_id: str | None = Field(
        None,
        alias="awsAccountId",
        description="the account of the ECR repository to create (else asked of STS)",
    )
    model_data_url: str | None = Field(
        None, alias="modelDataUrl", description="s3://…/model.tar.gz unpacked to /opt/ml/model"
    )
    model_s3_prefix: str | None = Field(
        None,
        alias="modelS3Prefix",
        description="s3://bucket/prefix/ copied uncompressed to /opt/ml/model",
    )
    kms_key_arn: str | None = Field(
        None, alias="kmsKeyArn", description="CMK for ECR, created secrets and EBS volumes"
    )
    enable_network_isolation: Flag = Field(
        False,
        alias="enableNetworkIsolation",
        description="true | false (default false: hf:// and secrets need the network)",
    )
    rollback_alarm_names: TextList = Field(
        (),
        alias="rollbackAlarmNames",
        description="CloudWatch alarms (≤ 10) that roll a deployment back",
    )
    canary_percent: Whole = Field(
        10,
        ge=1,
        le=50,
        alias="canaryPercent",
        description="first traffic step of a blue/green update, 1–50 (default 10)",
    )
    bake_seconds: Whole = Field(
        600,
        ge=0,
        le=3600,
        alias="bakeSeconds",
        description="watch alarms after each traffic step, 0–3600 (600)",
    )
    invocations_per_instance_target: Whole = Field(
        30,
        ge=1,
        le=100_000,
        alias="invocationsPerInstanceTarget",
        description="autoscaling target, invocations per instance per minute (30: about half "
        "of 16 sequences at ~15 s a reply)",
    )
    scale_in_cooldown_s: Whole = Field(
        600,
        ge=0,
        le=86_400,
        alias="scaleInCooldownSeconds",
        description="default 600 (GPU instances take minutes to start)",
    )
    scale_out_cooldown_s: Whole = Field(
        300, ge=0, le=86_400, alias="scaleOutCooldownSeconds", description="default 300"
    )
    log_retention_days: Whole = Field(
        30,
        ge=1,
        le=3653,
        alias="logRetentionDays",
        description="endpoint log group retention (default 30)",
    )
    volume_size_gb: Whole | None = Field(
        None,
        ge=VOLUME_GB_MIN,
        le=VOLUME_GB_MAX,
        alias="volumeSizeGb",
        description="EBS volume per instance; default sized from the weights",
    )
    inference_ami_version: str | None = Field(
        None,
        alias="inferenceAmiVersion",
        description="the GPU host AMI (ProductionVariant.InferenceAmiVersion); default the "
        "oldest one whose driver runs the image's CUDA (see target.py)",
    )

    @model_validator(mode="after")
    def check(self) -> AwsSettings:
        """Refuse combinations SageMaker would reject later, naming the keys."""
        if bool(self.vpc_subnet_ids) != bool(self.vpc_security_group_ids):
            raise InputError(
                "mdeploy:vpcSubnetIds and mdeploy:vpcSecurityGroupIds go together",
                hint="set both (the model's ENIs need subnets and security groups) or neither",
            )
        if self.model_data_url and self.model_s3_prefix:
            raise InputError("mdeploy:modelDataUrl and mdeploy:modelS3Prefix exclude each other")
        for key, url in (
            ("modelDataUrl", self.model_data_url),
            ("modelS3Prefix", self.model_s3_prefix),
        ):
            if url and not _S3_URL.fullmatch(url):
                raise InputError(f"mdeploy:{key} = {url!r}: expected s3://bucket/key")
        if len(self.rollback_alarm_names) > 10:
            raise InputError("mdeploy:rollbackAlarmNames: SageMaker accepts at most 10 alarms")
        known = [name for name, _, _ in GPU_INFERENCE_AMIS]
        if self.inference_ami_version and self.inference_ami_version not in known:
            raise InputError(
                f"mdeploy:inferenceAmiVersion {self.inference_ami_version!r} is not a GPU "
                "inference AMI SageMaker knows",
                hint="one of " + ", ".join(known),
            )
        return self
