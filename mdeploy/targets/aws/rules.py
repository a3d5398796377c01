"""
The AWS SageMaker rules: names, sizing, environment, tags, pre-flight checks. Offline.

Everything here is plain Python (no pulumi, no boto3 at import time), so `get_target("aws")`
costs nothing and the rules below can be checked without a cloud. The Pulumi resources live in
`component.py`, the day-2 SDK calls in `ops.py`; both are imported lazily by the methods here.

Stack config (`pulumi config set mdeploy:<key>`): every key optional, declared, documented and
checked by `settings.AwsSettings` (an unknown `mdeploy:*` key is refused).
"""

from __future__ import annotations

import configparser
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mdeploy.errors import CloudError, InputError, PrerequisiteError
from mdeploy.target_names import secret_ref_prefixes
from mdeploy.targets.aws.registry import ecr_host_parts
from mdeploy.targets.aws.settings import (
    GPU_INFERENCE_AMIS,
    VOLUME_GB_MAX,
    AwsSettings,
)
from mdeploy.targets.base import EndpointArgs, unloadable_source

if TYPE_CHECKING:
    from mdeploy.spec.models import Deployment

__all__ = [
    "CREDENTIALS_HINT",
    "GPU_INFERENCE_AMIS",
    "IMAGE_CUDA",
    "SUPPORTED_SECRET_REFS",
    "VARIANT_NAME",
    "AwsSettings",
    "ModelData",
    "ResourceNames",
    "aws_tags",
    "caller_account",
    "check_deployable",
    "container_env",
    "hashed_name",
    "inference_ami_version",
    "is_gpu_instance",
    "model_data",
    "partition_of",
    "profile_credentials",
    "repository_arn",
    "repository_name",
    "resource_names",
    "runtime_url",
    "unsupported",
    "volume_size_gb",
    "volume_size_supported",
]

# What serving.secrets may reference: the generic forms and the ones target.py declares.
SUPPORTED_SECRET_REFS = ("env:", "file:", *secret_ref_prefixes("aws"))
CREDENTIALS_HINT = (
    "run `aws configure` (or `aws sso login`), or set AWS_PROFILE, or "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)
# SageMaker endpoint, config, model and variant names: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpoint.html
SAGEMAKER_NAME_MAX = 63
_BASE_MAX = SAGEMAKER_NAME_MAX - 9  # room for "-<8 hex>" on model and config names
# Instance families with NVMe instance storage reject VolumeSizeInGB and KmsKeyId: a "d" in
# the family (p4d, p4de, g4dn, m5d), and g5, g6 (g6e), p5 (p5e/p5en), trn1. Same rule as
# sagemaker-python-sdk `volume_size_supported`; API_CreateEndpointConfig.html (KmsKeyId).
_NVME_FAMILIES = ("g5", "g6", "p5", "trn1")
_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9-]+")
_ENV_VALUE_MAX = 1024  # bytes per key and per value (ContainerDefinition.Environment)

# CUDA of the pinned base image (templates/Dockerfile: vllm/vllm-openai v0.14.0). vLLM's default
# CUDA build is 12.9 since v0.11.1 ("Updated the default CUDA build to torch==2.9.0+cu129",
# release notes, quoted at discuss.vllm.ai/t/2213); v0.14.0 publishes CUDA 13.0 separately as
# `v0.14.0-x86_64-cu130`. Either 12.8 or 12.9 needs a driver newer than gpu-3-1's 550.
IMAGE_CUDA: tuple[int, int] = (12, 9)


@dataclass(frozen=True)
class ResourceNames:
    """SageMaker names of one deployment; config and model names carry content hashes."""

    base: str
    endpoint: str
    variant: str


def _fit(text: str, limit: int = SAGEMAKER_NAME_MAX) -> str:
    """`text` as a valid SageMaker name of at most `limit` characters; a cut name keeps a hash."""
    clean = _BAD_NAME_CHARS.sub("-", text).strip("-") or "mdeploy"
    if len(clean) <= limit:
        return clean
    digest = hashlib.sha256(clean.encode()).hexdigest()[:6]
    return clean[: limit - 7].rstrip("-") + "-" + digest


def resource_names(args: EndpointArgs) -> ResourceNames:
    """The endpoint and production variant names, both stable across updates."""
    base = args.name if args.env in ("", "default") else f"{args.name}-{args.env}"
    base = _fit(base, _BASE_MAX)
    return ResourceNames(base=base, endpoint=base, variant=VARIANT_NAME)


def hashed_name(base: str, *parts: object) -> str:
    """`base-<8 hex>` where the hash covers `parts`: it changes exactly when they change."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"{_fit(base, _BASE_MAX)}-{digest[:8]}"


# SageMaker blue/green and rolling updates require the new endpoint config to keep the old
# variant name (deployment-guardrails-exclusions), so the name never follows model.version:
# a new version is a new model + config behind the same variant, shifted by the update policy.
VARIANT_NAME = "primary"


def repository_name(args: EndpointArgs) -> str:
    """ECR repository for one deployment: `mdeploy/<name>` (lowercase, ECR-safe)."""
    return "mdeploy/" + re.sub(r"[^a-z0-9-]+", "-", args.name.lower()).strip("-")


def volume_size_supported(instance_type: str) -> bool:
    """Whether VolumeSizeInGB (and an endpoint KmsKeyId) is allowed on `instance_type`."""
    parts = instance_type.split(".")
    if len(parts) == 3 and parts[0] == "ml":
        parts = parts[1:]
    if len(parts) != 2:
        raise InputError(f"instance type {instance_type!r}: expected ml.<family>.<size>")
    family = parts[0]
    return "d" not in family and not family.startswith(_NVME_FAMILIES)


def volume_size_gb(weights_gib: float) -> int | None:
    """
    EBS gigabytes per instance: two copies of the weights (download + staging) and 10 GB of
    scratch, at least 30; None when the weights are unknown (SageMaker's default applies).
    """
    if weights_gib <= 0:
        return None
    gigabytes = math.ceil(weights_gib * 1.073741824 * 2 + 10)
    if weights_gib * 1.073741824 > VOLUME_GB_MAX:
        raise InputError(
            f"{weights_gib:.0f} GiB of weights exceed SageMaker's {VOLUME_GB_MAX} GB volume",
            hint="use an instance type with NVMe instance storage (g5, g6, p4d, p5)",
        )
    return max(30, min(VOLUME_GB_MAX, gigabytes))


def is_gpu_instance(instance_type: str) -> bool:
    """NVIDIA GPU instance families on SageMaker: ml.g* and ml.p* (inf/trn are Neuron)."""
    family = instance_type.removeprefix("ml.").split(".", 1)[0]
    return family[:1] in ("g", "p")


def inference_ami_version(
    instance_type: str, settings: AwsSettings, cuda: tuple[int, int] = IMAGE_CUDA
) -> str | None:
    """
    The host AMI for a GPU variant: the configured one, else the oldest whose driver supports
    `cuda`; None on non-GPU instances. Refuses a configured AMI too old for the image.
    """
    if not is_gpu_instance(instance_type):
        return None
    fits = [name for name, _, supports in GPU_INFERENCE_AMIS if supports >= cuda]
    wanted = settings.inference_ami_version
    if wanted:
        if wanted not in fits:
            raise InputError(
                f"mdeploy:inferenceAmiVersion {wanted}: its driver supports CUDA below the "
                f"image's {cuda[0]}.{cuda[1]}; the container would not start",
                hint="use " + " or ".join(fits) if fits else "unset it",
            )
        return wanted
    if not fits:
        raise InputError(
            f"no SageMaker GPU AMI supports CUDA {cuda[0]}.{cuda[1]}",
            hint="build the image on an older CUDA base",
        )
    return fits[0]


@dataclass(frozen=True)
class ModelData:
    """Where SageMaker copies weights from before start, and what the role may read there."""

    url: str | None = None  # a model.tar.gz object (ModelDataUrl)
    prefix: str | None = None  # an uncompressed prefix ending in "/" (ModelDataSource)

    @property
    def s3_uri(self) -> str | None:
        return self.url or self.prefix


def model_data(args: EndpointArgs, settings: AwsSettings) -> ModelData:
    """Stack config wins; else an s3:// model source is mounted at /opt/ml/model."""
    if settings.model_data_url:
        return ModelData(url=settings.model_data_url)
    prefix = settings.model_s3_prefix or (
        args.model_source if (args.model_source or "").startswith("s3://") else None
    )
    if prefix:
        return ModelData(prefix=prefix.rstrip("/") + "/")
    return ModelData()


def container_env(args: EndpointArgs) -> dict[str, str]:
    """The plain (non-secret) variables the adapter reads; refuses values SageMaker rejects."""
    env = {
        "MDEPLOY_PLATFORM": "sagemaker",
        "MDEPLOY_MODEL_ID": args.model_id,
        "MDEPLOY_MODEL_SOURCE": args.model_source or "",
        "MDEPLOY_MODEL_REVISION": args.model_revision,
        "MDEPLOY_SERVED_MODEL_NAME": args.served_model_name,
        "MDEPLOY_ENGINE_ARGS": json.dumps(list(args.engine_args)),
    }
    for key, value in env.items():
        if len(value.encode()) > _ENV_VALUE_MAX:
            raise InputError(
                f"{key} is {len(value.encode())} bytes; SageMaker allows {_ENV_VALUE_MAX}",
                hint="shorten serving.engine_args" if key == "MDEPLOY_ENGINE_ARGS" else None,
            )
    return env


def partition_of(region: str) -> tuple[str, str]:
    """(ARN partition, DNS suffix) of a region: aws-cn for cn-*, aws-us-gov for us-gov-*."""
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


def runtime_url(region: str, endpoint_name: str) -> str:
    """The SigV4-authenticated invoke URL of an endpoint."""
    suffix = partition_of(region)[1]
    return f"https://runtime.sagemaker.{region}.{suffix}/endpoints/{endpoint_name}/invocations"


def check_deployable(args: EndpointArgs, settings: AwsSettings, data: ModelData) -> None:
    """Refuse settings that would only fail on AWS, minutes into an `up`."""
    needs_network = [
        what
        for what, used in (
            ("secrets from Secrets Manager", bool(args.secrets)),
            ("weights from the Hugging Face Hub", not data.s3_uri),
        )
        if used
    ]
    if settings.enable_network_isolation and needs_network:
        raise InputError(
            "mdeploy:enableNetworkIsolation cuts the container off the network, but it needs "
            + " and ".join(needs_network),
            hint="put the weights on S3 (mdeploy:modelS3Prefix) and drop serving.secrets, "
            "or leave network isolation off",
        )
    existing = settings.existing_repository_url
    if existing:
        host, _, path = existing.rstrip("/").partition("/")
        parts = ecr_host_parts(host)
        if parts is None or not path or re.search(r"[:@]", path):
            raise InputError(
                f"mdeploy:existingRepositoryUrl {existing!r} is not an ECR repository",
                hint="<account>.dkr.ecr.<region>.amazonaws.com/<name>, without tag or digest",
            )
        if parts[1] != args.region:
            raise InputError(
                f"mdeploy:existingRepositoryUrl is in {parts[1]}, the endpoint in {args.region}",
                hint="SageMaker pulls images only from ECR in the endpoint's own region",
            )


def repository_arn(url: str, region: str) -> str:
    """The ARN of an ECR repository URL (what the execution role may pull from)."""
    host, _, path = url.rstrip("/").partition("/")
    account, _ = ecr_host_parts(host) or ("", "")
    return f"arn:{partition_of(region)[0]}:ecr:{region}:{account}:repository/{path}"


def aws_tags(labels: dict[str, str]) -> dict[str, str]:
    """Labels as AWS tags; refuse what AWS would (length, reserved aws: prefix)."""
    for key, value in labels.items():
        if key.lower().startswith("aws:") or not 1 <= len(key) <= 128 or len(value) > 256:
            raise InputError(
                f"metadata.labels.{key}: not a valid AWS tag",
                hint="keys 1–128 characters not starting with aws:, values up to 256",
            )
    return dict(labels)


def profile_credentials(env: os._Environ[str] | dict[str, str]) -> tuple[bool, str]:
    """Look for the selected profile in the shared credentials and config files."""
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    home = Path.home() / ".aws"
    files = {
        "credentials": Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / "credentials"),
        "config": Path(env.get("AWS_CONFIG_FILE") or home / "config"),
    }
    for kind, path in files.items():
        section = profile if kind == "credentials" or profile == "default" else f"profile {profile}"
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, OSError):
            continue
        if parser.has_section(section) and _usable(dict(parser.items(section))):
            return True, f"profile {profile!r} in {path}"
    if env.get("AWS_PROFILE"):
        return False, f"AWS_PROFILE={profile!r} but no such profile with credentials in ~/.aws"
    return False, "no AWS credentials in the environment or ~/.aws (credentials, config)"


def _usable(section: dict[str, str]) -> bool:
    keys = ("aws_access_key_id", "role_arn", "sso_session", "sso_start_url", "credential_process")
    return any(section.get(k) for k in keys) or "web_identity_token_file" in section


def caller_account(region: str) -> str:
    """The 12-digit account of the current credentials (STS GetCallerIdentity)."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:
        raise PrerequisiteError(
            "boto3 is needed to find the AWS account", hint="pip install 'mdeploy[aws]'"
        ) from None
    try:
        return boto3.client("sts", region_name=region).get_caller_identity()["Account"]
    except NoCredentialsError:
        raise PrerequisiteError("no AWS credentials found", hint=CREDENTIALS_HINT) from None
    except (BotoCoreError, ClientError) as exc:
        raise CloudError(
            f"STS GetCallerIdentity failed: {exc}",
            hint="or set the stack config mdeploy:awsAccountId / mdeploy:existingRepositoryUrl",
        ) from None


def unsupported(spec: Deployment) -> dict[str, str]:
    problems: dict[str, str] = {}
    for env_name, ref in spec.serving.secrets.items():
        if not ref.startswith(SUPPORTED_SECRET_REFS):
            problems[f"serving.secrets.{env_name}"] = (
                f"{ref.split(':', 1)[0]}: references cannot be read on SageMaker; "
                "use aws-sm:<secret ARN>, env:NAME or file:PATH"
            )
    if "VLLM_API_KEY" in spec.serving.secrets:
        # "Amazon SageMaker AI strips all POST headers except those supported by the API"
        # (API_runtime_InvokeEndpoint.html): no bearer key reaches the container, so a vLLM
        # started with --api-key / VLLM_API_KEY would answer every invocation 401.
        problems["serving.secrets.VLLM_API_KEY"] = (
            "SageMaker authenticates every call itself (SigV4, sagemaker:InvokeEndpoint) and "
            "strips the Authorization header, so vLLM would answer every request 401; "
            "remove VLLM_API_KEY and grant callers sagemaker:InvokeEndpoint instead"
        )
    if scheme := unloadable_source(spec, ("hf", "s3")):
        problems["model.source"] = (
            f"{scheme}:// weights are not reachable from SageMaker; "
            "copy them to S3 (`aws s3 sync`) and use s3://, or use hf://"
        )
    return problems
