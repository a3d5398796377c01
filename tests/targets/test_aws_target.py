"""The AWS target's offline rules: names, sizing, stack settings, credentials, Target glue."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest

from mdeploy.errors import InputError
from mdeploy.spec.models import Deployment
from mdeploy.targets import get_target
from mdeploy.targets.aws.rules import (
    GPU_INFERENCE_AMIS,
    IMAGE_CUDA,
    AwsSettings,
    aws_tags,
    check_deployable,
    container_env,
    hashed_name,
    inference_ami_version,
    is_gpu_instance,
    model_data,
    partition_of,
    repository_arn,
    repository_name,
    resource_names,
    runtime_url,
    volume_size_gb,
    volume_size_supported,
)
from mdeploy.targets.aws.target import TARGET, AwsTarget

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def test_get_target_returns_the_module_level_target() -> None:
    assert get_target("aws") is TARGET
    assert isinstance(TARGET, AwsTarget)
    assert TARGET.name == "aws" and TARGET.catalog_targets == ("aws",)


def test_target_module_imports_no_sdk() -> None:
    code = (
        "import sys, mdeploy.targets.aws.target as t; t.TARGET.stack_config; "
        "heavy = [m for m in ('pulumi', 'pulumi_aws', 'boto3', 'botocore') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stack_config_sets_the_region(endpoint_args_aws) -> None:
    assert TARGET.stack_config(endpoint_args_aws) == {"aws:region": "eu-west-3"}


def test_variant_name_survives_a_new_model_version(endpoint_args_aws) -> None:
    """Blue/green updates need the same variant name in the old and the new config."""
    v2 = dataclasses.replace(endpoint_args_aws, model_version="2")
    assert resource_names(endpoint_args_aws).variant == resource_names(v2).variant


def test_names_fit_sagemaker_limits(endpoint_args_aws) -> None:
    long = dataclasses.replace(endpoint_args_aws, name="a" * 40, env="staging-europe-west")
    names = resource_names(long)
    config = hashed_name(names.base, "anything")
    for name in (names.endpoint, config, names.variant):
        assert SAGEMAKER_NAME.match(name) and len(name) <= 63, name
    assert resource_names(endpoint_args_aws).endpoint == "mistral-7b-chat"
    assert resource_names(dataclasses.replace(endpoint_args_aws, env="prod")).endpoint == (
        "mistral-7b-chat-prod"
    )


def test_hashed_name_changes_exactly_with_its_parts() -> None:
    assert hashed_name("ep", "a", {"x": 1}) == hashed_name("ep", "a", {"x": 1})
    assert hashed_name("ep", "a", {"x": 1}) != hashed_name("ep", "a", {"x": 2})
    assert re.fullmatch(r"ep-[0-9a-f]{8}", hashed_name("ep", "a"))


@pytest.mark.parametrize(
    ("instance_type", "allowed"),
    [
        ("ml.g5.2xlarge", False),
        ("ml.g6.xlarge", False),
        ("ml.g6e.12xlarge", False),
        ("ml.p4d.24xlarge", False),
        ("ml.p5.48xlarge", False),
        ("ml.g4dn.xlarge", False),
        ("ml.p3.2xlarge", True),
        ("ml.inf2.xlarge", True),
        ("ml.m5.large", True),
    ],
)
def test_volume_size_only_on_ebs_instance_types(instance_type: str, allowed: bool) -> None:
    assert volume_size_supported(instance_type) is allowed


def test_volume_size_is_sized_from_weights() -> None:
    assert volume_size_gb(0) is None
    assert volume_size_gb(5) == 30  # the floor
    assert volume_size_gb(13.5) == 39  # ceil(13.5 GiB in GB × 2 + 10)
    assert volume_size_gb(200) == 440
    assert volume_size_gb(300) == 512  # SageMaker's maximum
    with pytest.raises(InputError):
        volume_size_gb(600)


def test_partition_and_runtime_url() -> None:
    assert partition_of("eu-west-3") == ("aws", "amazonaws.com")
    assert partition_of("cn-north-1") == ("aws-cn", "amazonaws.com.cn")
    assert partition_of("us-gov-west-1")[0] == "aws-us-gov"
    assert runtime_url("eu-west-3", "ep") == (
        "https://runtime.sagemaker.eu-west-3.amazonaws.com/endpoints/ep/invocations"
    )


def test_repository_name_is_ecr_safe(endpoint_args_aws) -> None:
    assert repository_name(endpoint_args_aws) == "mdeploy/mistral-7b-chat"


def test_settings_defaults_and_parsing() -> None:
    assert AwsSettings.from_stack({}) == AwsSettings()
    cfg = {
        "vpcSubnetIds": '["subnet-1", "subnet-2"]',
        "vpcSecurityGroupIds": "sg-1, sg-2",
        "enableNetworkIsolation": "true",
        "rollbackAlarmNames": "errors-5xx",
        "canaryPercent": "25",
    }
    settings = AwsSettings.from_stack(cfg)
    assert settings.vpc_subnet_ids == ("subnet-1", "subnet-2")
    assert settings.vpc_security_group_ids == ("sg-1", "sg-2")
    assert settings.enable_network_isolation is True
    assert settings.rollback_alarm_names == ("errors-5xx",)
    assert settings.canary_percent == 25


@pytest.mark.parametrize(
    ("cfg", "fragment"),
    [
        ({"vpcSubnetIds": "subnet-1"}, "vpcSecurityGroupIds"),
        ({"canaryPercent": "80"}, "canaryPercent"),
        ({"canaryPercent": "ten"}, "canaryPercent"),
        ({"enableNetworkIsolation": "maybe"}, "enableNetworkIsolation"),
        ({"modelDataUrl": "https://x/y"}, "modelDataUrl"),
        ({"modelDataUrl": "s3://b/m.tar.gz", "modelS3Prefix": "s3://b/p/"}, "exclude"),
        ({"rollbackAlarmNames": ",".join(f"a{i}" for i in range(11))}, "10 alarms"),
        ({"vpcSubnetIds": "[1, 2]", "vpcSecurityGroupIds": "sg"}, "vpcSubnetIds"),
    ],
)
def test_settings_refuse_bad_values_naming_the_key(cfg: dict[str, str], fragment: str) -> None:
    with pytest.raises(InputError) as err:
        AwsSettings.from_stack(cfg)
    assert fragment in err.value.message


def test_an_unknown_key_is_refused_with_a_suggestion() -> None:
    with pytest.raises(InputError, match="unknown stack config mdeploy:canaryPercnt") as err:
        AwsSettings.from_stack({"mdeploy:canaryPercnt": "20", "aws:region": "eu-west-3"})
    assert "did you mean mdeploy:canaryPercent?" in (err.value.hint or "")
    common = {"mdeploy:imageRepository": "r/m", "mdeploy:spec": "s.yaml", "mdeploy:env": "prod"}
    assert AwsSettings.from_stack(common) == AwsSettings()


def test_model_data_prefers_config_then_s3_source(endpoint_args_aws) -> None:
    hub = model_data(endpoint_args_aws, AwsSettings())
    assert hub.s3_uri is None
    s3_args = dataclasses.replace(endpoint_args_aws, model_source="s3://weights/mistral")
    assert model_data(s3_args, AwsSettings()).prefix == "s3://weights/mistral/"
    tarball = AwsSettings(model_data_url="s3://weights/model.tar.gz")
    assert model_data(s3_args, tarball).url == "s3://weights/model.tar.gz"


def test_container_env_contract(endpoint_args_aws) -> None:
    env = container_env(endpoint_args_aws)
    assert json.loads(env["MDEPLOY_ENGINE_ARGS"]) == list(endpoint_args_aws.engine_args)
    assert env["MDEPLOY_MODEL_ID"] == endpoint_args_aws.model_id
    assert env["MDEPLOY_MODEL_REVISION"] == endpoint_args_aws.model_revision
    assert env["MDEPLOY_SERVED_MODEL_NAME"] == endpoint_args_aws.served_model_name
    assert env["MDEPLOY_MODEL_SOURCE"] == endpoint_args_aws.model_source
    assert env["MDEPLOY_PLATFORM"] == "sagemaker"
    huge = dataclasses.replace(endpoint_args_aws, engine_args=("--x",) * 300)
    with pytest.raises(InputError, match="MDEPLOY_ENGINE_ARGS"):
        container_env(huge)


def _spec(**serving: object) -> Deployment:
    return Deployment.model_validate(
        {
            "apiVersion": "mdeploy/v1",
            "kind": "Deployment",
            "metadata": {"name": "m"},
            "model": {"id": "x/y", "source": serving.pop("source", None)},
            "serving": serving,
        }
    )


def test_unsupported_names_secret_refs_and_foreign_sources() -> None:
    assert TARGET.unsupported(_spec(secrets={"HF_TOKEN": "env:HF_TOKEN"})) == {}
    problems = TARGET.unsupported(
        _spec(secrets={"A": "azure-kv:vault/a", "B": "aws-sm:arn:x"}, source="gs://b/m")
    )
    assert set(problems) == {"serving.secrets.A", "model.source"}
    assert "aws-sm:" in problems["serving.secrets.A"]
    assert "s3://" in problems["model.source"]


def test_vllm_api_key_is_refused_because_sagemaker_authenticates() -> None:
    """SageMaker strips Authorization: a key-protected vLLM would answer every call 401."""
    problems = TARGET.unsupported(
        _spec(secrets={"HF_TOKEN": "env:HF_TOKEN", "VLLM_API_KEY": "aws-sm:arn:key"})
    )
    assert set(problems) == {"serving.secrets.VLLM_API_KEY"}
    assert "401" in problems["serving.secrets.VLLM_API_KEY"]
    assert "sagemaker:InvokeEndpoint" in problems["serving.secrets.VLLM_API_KEY"]


@pytest.fixture
def no_aws_env(monkeypatch, tmp_path):
    """An environment with no AWS credentials anywhere (HOME points at an empty folder)."""
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_credentials_missing_gives_a_reason(no_aws_env) -> None:
    ok, reason = TARGET.check_credentials()
    assert not ok and "no AWS credentials" in reason
    assert "aws configure" in TARGET.credentials_hint


def test_credentials_from_environment(no_aws_env, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    assert TARGET.check_credentials()[0] is False  # the secret half is missing
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    assert TARGET.check_credentials()[0] is True


def test_credentials_from_profile_files(no_aws_env, monkeypatch) -> None:
    aws_dir = no_aws_env / ".aws"
    aws_dir.mkdir()
    (aws_dir / "config").write_text("[profile dev]\nrole_arn = arn:aws:iam::1:role/r\n")
    monkeypatch.setenv("AWS_PROFILE", "dev")
    ok, reason = TARGET.check_credentials()
    assert ok and "dev" in reason
    monkeypatch.setenv("AWS_PROFILE", "prod")
    ok, reason = TARGET.check_credentials()
    assert not ok and "prod" in reason
    (aws_dir / "credentials").write_text("[default]\naws_access_key_id = AKID\n")
    monkeypatch.delenv("AWS_PROFILE")
    assert TARGET.check_credentials()[0] is True


def test_credentials_from_web_identity(no_aws_env, monkeypatch) -> None:
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/ci")
    assert TARGET.check_credentials() == (
        True,
        "web identity token (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)",
    )


def test_registry_repository_offline_paths(endpoint_args_aws) -> None:
    existing = "210987654321.dkr.ecr.eu-west-3.amazonaws.com/team/vllm/"
    assert TARGET.registry_repository(
        endpoint_args_aws, {"mdeploy:existingRepositoryUrl": existing}
    ) == existing.rstrip("/")
    assert TARGET.registry_repository(
        endpoint_args_aws, {"mdeploy:awsAccountId": "123456789012"}
    ) == ("123456789012.dkr.ecr.eu-west-3.amazonaws.com/mdeploy/mistral-7b-chat")


def test_ops_from_outputs() -> None:
    ops = TARGET.ops(
        {
            "endpoint_name": "ep",
            "endpoint_url": "https://runtime.sagemaker.eu-west-3.amazonaws.com/endpoints/ep/invocations",
        }
    )
    assert (ops.endpoint_name, ops.region) == ("ep", "eu-west-3")
    with pytest.raises(InputError):
        TARGET.ops({})


def test_aws_tags_refuse_reserved_and_oversized_keys() -> None:
    assert aws_tags({"team": "platform"}) == {"team": "platform"}
    for labels in ({"aws:owner": "x"}, {"k" * 129: "v"}, {"k": "v" * 257}):
        with pytest.raises(InputError):
            aws_tags(labels)


@pytest.mark.parametrize(
    "url",
    [
        "registry.example.com/team/vllm",
        "210987654321.dkr.ecr.eu-west-3.amazonaws.com",
        "210987654321.dkr.ecr.eu-west-3.amazonaws.com/team/vllm:latest",
    ],
)
def test_existing_repository_must_be_a_plain_ecr_repository(endpoint_args_aws, url: str) -> None:
    settings = AwsSettings(existing_repository_url=url)
    with pytest.raises(InputError, match="not an ECR repository"):
        check_deployable(endpoint_args_aws, settings, model_data(endpoint_args_aws, settings))


def test_repository_arn_of_a_url() -> None:
    url = "210987654321.dkr.ecr.eu-west-3.amazonaws.com/team/vllm"
    assert repository_arn(url, "eu-west-3") == (
        "arn:aws:ecr:eu-west-3:210987654321:repository/team/vllm"
    )


# -- InferenceAmiVersion ----------------------------------------------------------------------


def _botocore_ami_docs() -> tuple[list[str], str]:
    """The enum and the documentation of ProductionVariant.InferenceAmiVersion (the authority)."""
    botocore = pytest.importorskip("botocore.session")
    model = botocore.get_session().get_service_model("sagemaker")
    member = model.shape_for("ProductionVariant").members["InferenceAmiVersion"]
    return list(member.enum), re.sub(r"<[^>]+>", " ", member.documentation)


def test_ami_table_matches_botocores_enum_and_documented_drivers() -> None:
    enum, doc = _botocore_ami_docs()
    for name, driver, (major, minor) in GPU_INFERENCE_AMIS:
        assert name in enum, name
        # "<name> Accelerator: GPU NVIDIA driver version: 580 CUDA version: 13.0 ..."
        block = re.search(rf"{re.escape(name)}\s+Accelerator: GPU(.*?)(?=al2|$)", doc, re.S)
        assert block, name
        assert re.search(rf"NVIDIA driver version: {driver}\b", block.group(1)), name
        assert re.search(rf"CUDA version: {major}\.{minor}\b", block.group(1)), name
    gpu_amis = {e for e in enum if "-gpu-" in e}
    assert gpu_amis == {name for name, _, _ in GPU_INFERENCE_AMIS}, "botocore knows a new AMI"


def test_the_image_gets_the_oldest_ami_whose_driver_runs_its_cuda() -> None:
    settings = AwsSettings()
    assert IMAGE_CUDA >= (12, 8)  # vLLM >= 0.11.1 images; 550 (CUDA 12.4) is too old for them
    assert inference_ami_version("ml.g6e.xlarge", settings) == (
        "al2023-ami-sagemaker-inference-gpu-4-1"
    )
    assert inference_ami_version("ml.g5.2xlarge", settings, (12, 4)) == (
        "al2-ami-sagemaker-inference-gpu-3-1"
    )
    assert inference_ami_version("ml.p4d.24xlarge", settings, (12, 1)) == (
        "al2-ami-sagemaker-inference-gpu-2"
    )
    assert inference_ami_version("ml.inf2.xlarge", settings) is None
    assert inference_ami_version("ml.m5.xlarge", settings) is None
    with pytest.raises(InputError, match=r"CUDA 13\.1"):
        inference_ami_version("ml.g5.2xlarge", settings, (13, 1))


def test_configured_ami_is_checked_against_the_image() -> None:
    newest = AwsSettings.from_stack(
        {"inferenceAmiVersion": "al2023-ami-sagemaker-inference-gpu-4-1"}
    )
    assert inference_ami_version("ml.g5.2xlarge", newest) == newest.inference_ami_version
    old = AwsSettings.from_stack({"inferenceAmiVersion": "al2-ami-sagemaker-inference-gpu-3-1"})
    with pytest.raises(InputError, match="would not start"):
        inference_ami_version("ml.g5.2xlarge", old)
    with pytest.raises(InputError, match="mdeploy:inferenceAmiVersion"):
        AwsSettings.from_stack({"inferenceAmiVersion": "al2-ami-typo"})


@pytest.mark.parametrize(
    ("instance_type", "gpu"),
    [("ml.g6e.xlarge", True), ("ml.p5.48xlarge", True), ("ml.inf2.xlarge", False),
     ("ml.trn1.2xlarge", False), ("ml.c5.xlarge", False)],
)  # fmt: skip
def test_gpu_instance_families(instance_type: str, gpu: bool) -> None:
    assert is_gpu_instance(instance_type) is gpu
