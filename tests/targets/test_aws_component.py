"""The SageMaker component under Pulumi mocks: what it would ask AWS to create."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pulumi.runtime import rpc

from mdeploy.deploy.mocks import MockSession
from mdeploy.errors import InputError
from mdeploy.targets.aws.component import TYPE_TOKEN, AwsEndpoint
from mdeploy.targets.base import EndpointArgs

MODEL = "aws:sagemaker/model:Model"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
POLICY = "aws:iam/rolePolicy:RolePolicy"
SCALING_TARGET = "aws:appautoscaling/target:Target"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
TOKEN_VALUE = "hf_unit_test_value_that_must_never_leak_0123"
TAGGABLE = {
    "aws:iam/role:Role",
    "aws:ecr/repository:Repository",
    "aws:secretsmanager/secret:Secret",
    "aws:cloudwatch/logGroup:LogGroup",
    MODEL,
    CONFIG,
    ENDPOINT,
    SCALING_TARGET,
}


@pytest.fixture(autouse=True)
def hf_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HF_TOKEN", TOKEN_VALUE)
    return TOKEN_VALUE


def _run(session: Any, args: EndpointArgs, config: dict[str, str] | None = None) -> AwsEndpoint:
    if config:
        session.set_config({f"mdeploy:{k}": v for k, v in config.items()})
    return session.run(lambda: AwsEndpoint("ep", args))


def _policies(session: Any) -> dict[str, dict[str, Any]]:
    return {p.inputs["name"]: json.loads(p.inputs["policy"]) for p in session.by_type(POLICY)}


def _synth(args: EndpointArgs, config: dict[str, str] | None = None) -> dict[str, Any]:
    """A fresh mock run: the inputs of model, config and endpoint."""
    with MockSession(config={f"mdeploy:{k}": v for k, v in (config or {}).items()}) as s:
        s.run(lambda: AwsEndpoint("ep", args))
        return {t: s.one(t).inputs for t in (MODEL, CONFIG, ENDPOINT)}


def test_image_is_pulled_from_ecr_by_the_same_digest(pulumi_mocks, endpoint_args_aws) -> None:
    comp = _run(pulumi_mocks, endpoint_args_aws)
    repo_url = pulumi_mocks.resolve(comp.repository.repository_url)
    image = pulumi_mocks.one(MODEL).inputs["primaryContainer"]["image"]
    assert image == f"{repo_url}@{endpoint_args_aws.image_digest}"
    assert pulumi_mocks.resolve(comp.image) == image
    assert pulumi_mocks.resolve(comp.repository_url) == repo_url


def test_repository_is_immutable_scanned_and_encrypted(pulumi_mocks, endpoint_args_aws) -> None:
    _run(pulumi_mocks, endpoint_args_aws)
    repo = pulumi_mocks.one("aws:ecr/repository:Repository").inputs
    assert repo["name"] == "mdeploy/mistral-7b-chat"
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    assert repo["forceDelete"] is False


def test_existing_repository_is_used_and_scoped(pulumi_mocks, endpoint_args_aws) -> None:
    url = "210987654321.dkr.ecr.eu-west-3.amazonaws.com/team/vllm"
    comp = _run(pulumi_mocks, endpoint_args_aws, {"existingRepositoryUrl": url})
    assert comp.repository is None
    assert pulumi_mocks.by_type("aws:ecr/repository:Repository") == []
    image = pulumi_mocks.one(MODEL).inputs["primaryContainer"]["image"]
    assert image == f"{url}@{endpoint_args_aws.image_digest}"
    pull = _policies(pulumi_mocks)["ecr-pull"]["Statement"][1]
    assert pull["Resource"] == "arn:aws:ecr:eu-west-3:210987654321:repository/team/vllm"


def test_existing_repository_in_another_region_is_refused(pulumi_mocks, endpoint_args_aws) -> None:
    url = "210987654321.dkr.ecr.us-east-1.amazonaws.com/team/vllm"
    with pytest.raises(InputError, match="us-east-1"):
        _run(pulumi_mocks, endpoint_args_aws, {"existingRepositoryUrl": url})


def test_environment_carries_engine_args_and_no_secret_value(
    pulumi_mocks, endpoint_args_aws
) -> None:
    _run(pulumi_mocks, endpoint_args_aws)
    env = pulumi_mocks.one(MODEL).inputs["primaryContainer"]["environment"]
    assert json.loads(env["MDEPLOY_ENGINE_ARGS"]) == list(endpoint_args_aws.engine_args)
    assert env["MDEPLOY_MODEL_ID"] == endpoint_args_aws.model_id
    assert env["MDEPLOY_MODEL_REVISION"] == endpoint_args_aws.model_revision
    assert env["MDEPLOY_SERVED_MODEL_NAME"] == endpoint_args_aws.served_model_name
    assert "HF_TOKEN" not in env
    secret = pulumi_mocks.one("aws:secretsmanager/secret:Secret")
    secret_arn = f"arn:aws:secretsmanager:eu-west-3:123456789012:{secret.name}"
    # The image contract of every target: one JSON map of references, no value.
    assert json.loads(env["MDEPLOY_SECRET_REFS"]) == {"HF_TOKEN": f"aws-sm:{secret_arn}"}
    assert not [k for k in env if k.startswith("MDEPLOY_SECRET_") and k != "MDEPLOY_SECRET_REFS"]
    # The value appears in exactly one place, and there it is a Pulumi secret.
    holders = [r for r in pulumi_mocks.resources if TOKEN_VALUE in json.dumps(r.inputs)]
    assert [r.type for r in holders] == ["aws:secretsmanager/secretVersion:SecretVersion"]
    assert rpc.is_rpc_secret(holders[0].inputs["secretString"])
    assert holders[0].parent == secret.parent


def test_secret_is_readable_only_by_the_role_on_that_arn(pulumi_mocks, endpoint_args_aws) -> None:
    _run(pulumi_mocks, endpoint_args_aws)
    secret = pulumi_mocks.one("aws:secretsmanager/secret:Secret")
    assert secret.inputs["namePrefix"] == "mdeploy/mistral-7b-chat/HF_TOKEN-"
    statement = _policies(pulumi_mocks)["secrets"]["Statement"]
    assert statement == [
        {
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [f"arn:aws:secretsmanager:eu-west-3:123456789012:{secret.name}"],
        }
    ]


def test_aws_sm_reference_is_used_as_is(pulumi_mocks, endpoint_args_aws) -> None:
    arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:hf-AbCdEf"
    args = dataclasses.replace(endpoint_args_aws, secrets={"HF_TOKEN": f"aws-sm:{arn}"})
    _run(pulumi_mocks, args)
    assert pulumi_mocks.by_type("aws:secretsmanager/secret:Secret") == []
    env = pulumi_mocks.one(MODEL).inputs["primaryContainer"]["environment"]
    assert json.loads(env["MDEPLOY_SECRET_REFS"]) == {"HF_TOKEN": f"aws-sm:{arn}"}
    assert _policies(pulumi_mocks)["secrets"]["Statement"][0]["Resource"] == [arn]


def test_aws_sm_name_becomes_its_arn_and_refs_combine(pulumi_mocks, endpoint_args_aws) -> None:
    arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:hf-AbCdEf"
    secrets = {"HF_TOKEN": f"aws-sm:{arn}", "API_KEY": "aws-sm:team/api-key"}
    _run(pulumi_mocks, dataclasses.replace(endpoint_args_aws, secrets=secrets))
    env = pulumi_mocks.one(MODEL).inputs["primaryContainer"]["environment"]
    # A bare name: the container has no region to look it up in, so it gets the partial ARN.
    assert json.loads(env["MDEPLOY_SECRET_REFS"]) == {
        "API_KEY": "aws-sm:arn:aws:secretsmanager:eu-west-3:123456789012:secret:team/api-key",
        "HF_TOKEN": f"aws-sm:{arn}",
    }
    assert sorted(_policies(pulumi_mocks)["secrets"]["Statement"][0]["Resource"]) == [
        "arn:aws:secretsmanager:eu-west-3:123456789012:secret:hf-AbCdEf",
        "arn:aws:secretsmanager:eu-west-3:123456789012:secret:team/api-key-??????",
    ]


def test_no_secrets_no_reference_variable(pulumi_mocks, endpoint_args_aws) -> None:
    _run(pulumi_mocks, dataclasses.replace(endpoint_args_aws, secrets={}))
    env = pulumi_mocks.one(MODEL).inputs["primaryContainer"]["environment"]
    assert not [k for k in env if k.startswith("MDEPLOY_SECRET")]


def test_reference_map_over_sagemakers_value_limit_is_refused(
    pulumi_mocks, endpoint_args_aws
) -> None:
    arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:" + "s" * 90
    secrets = {f"KEY_{i}": f"aws-sm:{arn}{i}" for i in range(8)}
    with pytest.raises(InputError, match="1024"):
        _run(pulumi_mocks, dataclasses.replace(endpoint_args_aws, secrets=secrets))
    assert pulumi_mocks.by_type(MODEL) == []


def test_missing_env_secret_is_an_input_error(pulumi_mocks, endpoint_args_aws, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(InputError) as err:
        _run(pulumi_mocks, endpoint_args_aws)
    assert "HF_TOKEN" in err.value.message


def test_foreign_secret_reference_is_refused(pulumi_mocks, endpoint_args_aws) -> None:
    args = dataclasses.replace(endpoint_args_aws, secrets={"KEY": "gcp-sm:key"})
    with pytest.raises(InputError, match="gcp-sm"):
        _run(pulumi_mocks, args)


def test_role_is_trusted_by_sagemaker_only(pulumi_mocks, endpoint_args_aws) -> None:
    _run(pulumi_mocks, endpoint_args_aws)
    role = pulumi_mocks.one("aws:iam/role:Role").inputs
    trust = json.loads(role["assumeRolePolicy"])["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    assert "managedPolicyArns" not in role


def test_policies_are_scoped_to_exact_resources(pulumi_mocks, endpoint_args_aws) -> None:
    comp = _run(pulumi_mocks, endpoint_args_aws)
    policies = _policies(pulumi_mocks)
    assert set(policies) == {"ecr-pull", "logs", "secrets"}  # hf:// weights, no VPC, no alarms
    repo_arn = pulumi_mocks.resolve(comp.repository.arn)
    assert policies["ecr-pull"]["Statement"][1] == {
        "Effect": "Allow",
        "Action": [
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
        ],
        "Resource": repo_arn,
    }
    group = "arn:aws:logs:eu-west-3:123456789012:log-group:/aws/sagemaker/Endpoints/mistral-7b-chat"
    logs = policies["logs"]["Statement"]
    assert logs[0]["Resource"] == group
    assert logs[1]["Resource"] == f"{group}:log-stream:*"
    for statement in (s for p in policies.values() for s in p["Statement"]):
        if statement["Resource"] == "*":
            assert set(statement["Action"]) <= {
                "ecr:GetAuthorizationToken",
                "cloudwatch:PutMetricData",
            }
            if "cloudwatch:PutMetricData" in statement["Action"]:
                assert statement["Condition"] == {
                    "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}
                }


def test_s3_weights_are_mounted_and_readable_only_there(pulumi_mocks, endpoint_args_aws) -> None:
    args = dataclasses.replace(endpoint_args_aws, model_source="s3://weights-bucket/mistral/v3")
    _run(pulumi_mocks, args)
    container = pulumi_mocks.one(MODEL).inputs["primaryContainer"]
    assert container["modelDataSource"] == {
        "s3DataSources": [
            {
                "s3Uri": "s3://weights-bucket/mistral/v3/",
                "s3DataType": "S3Prefix",
                "compressionType": "None",
            }
        ]
    }
    read, listing = _policies(pulumi_mocks)["model-s3"]["Statement"]
    assert read["Action"] == ["s3:GetObject"]
    assert read["Resource"] == "arn:aws:s3:::weights-bucket/mistral/v3/*"
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == "arn:aws:s3:::weights-bucket"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["mistral/v3/", "mistral/v3/*"]}}


def test_model_tarball_from_config(pulumi_mocks, endpoint_args_aws) -> None:
    _run(pulumi_mocks, endpoint_args_aws, {"modelDataUrl": "s3://model-bucket/models/m.tar.gz"})
    assert pulumi_mocks.one(MODEL).inputs["primaryContainer"]["modelDataUrl"] == (
        "s3://model-bucket/models/m.tar.gz"
    )
    statements = _policies(pulumi_mocks)["model-s3"]["Statement"]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": "arn:aws:s3:::model-bucket/models/m.tar.gz",
        }
    ]


def test_vpc_config_brings_eni_rights_only_then(pulumi_mocks, endpoint_args_aws) -> None:
    _run(
        pulumi_mocks,
        endpoint_args_aws,
        {"vpcSubnetIds": "subnet-a,subnet-b", "vpcSecurityGroupIds": "sg-1"},
    )
    model = pulumi_mocks.one(MODEL).inputs
    assert model["vpcConfig"] == {"subnets": ["subnet-a", "subnet-b"], "securityGroupIds": ["sg-1"]}
    vpc = _policies(pulumi_mocks)["vpc"]["Statement"][0]
    assert "ec2:CreateNetworkInterface" in vpc["Action"]
    assert all(a.startswith("ec2:") for a in vpc["Action"])


def test_network_isolation_needs_s3_weights_and_no_secrets(pulumi_mocks, endpoint_args_aws) -> None:
    with pytest.raises(InputError, match="Hugging Face"):
        _run(pulumi_mocks, endpoint_args_aws, {"enableNetworkIsolation": "true"})


def test_network_isolation_with_s3_weights(endpoint_args_aws) -> None:
    args = dataclasses.replace(endpoint_args_aws, model_source="s3://weights-bucket/m", secrets={})
    model = _synth(args, {"enableNetworkIsolation": "true"})[MODEL]
    assert model["enableNetworkIsolation"] is True


def test_variant_uses_startup_timeouts_and_instance_shape(pulumi_mocks, endpoint_args_aws) -> None:
    _run(pulumi_mocks, endpoint_args_aws)
    (variant,) = pulumi_mocks.one(CONFIG).inputs["productionVariants"]
    assert variant["variantName"] == "primary"
    assert variant["instanceType"] == "ml.g5.2xlarge"
    assert variant["initialInstanceCount"] == endpoint_args_aws.replicas_min
    assert variant["modelName"] == pulumi_mocks.one(MODEL).inputs["name"]
    timeout = endpoint_args_aws.startup_timeout_s
    assert variant["containerStartupHealthCheckTimeoutInSeconds"] == timeout
    assert variant["modelDataDownloadTimeoutInSeconds"] == timeout
    assert "volumeSizeInGb" not in variant  # g5: NVMe instance storage only


def test_gpu_variant_names_the_host_ami_for_the_images_cuda(
    pulumi_mocks, endpoint_args_aws
) -> None:
    """Without it g5 hosts run driver 470 (CUDA 11.4) and the vLLM image cannot start."""
    _run(pulumi_mocks, endpoint_args_aws)
    (variant,) = pulumi_mocks.one(CONFIG).inputs["productionVariants"]
    assert variant["inferenceAmiVersion"] == "al2023-ami-sagemaker-inference-gpu-4-1"


def test_timeouts_are_clamped_to_sagemaker_range(endpoint_args_aws) -> None:
    args = dataclasses.replace(endpoint_args_aws, startup_timeout_s=7200)
    (variant,) = _synth(args)[CONFIG]["productionVariants"]
    assert variant["containerStartupHealthCheckTimeoutInSeconds"] == 3600
    assert variant["modelDataDownloadTimeoutInSeconds"] == 3600


def test_ebs_instance_gets_sized_volume_and_kms(endpoint_args_aws) -> None:
    key = "arn:aws:kms:eu-west-3:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    args = dataclasses.replace(endpoint_args_aws, instance_type="ml.p3.8xlarge")
    config = _synth(args, {"kmsKeyArn": key})[CONFIG]
    assert config["productionVariants"][0]["volumeSizeInGb"] == 39
    assert config["kmsKeyArn"] == key
    nvme = _synth(endpoint_args_aws, {"kmsKeyArn": key})[CONFIG]
    assert "kmsKeyArn" not in nvme  # SageMaker refuses a KmsKeyId on instance storage


def test_config_name_changes_with_what_shapes_the_endpoint(endpoint_args_aws) -> None:
    base = _synth(endpoint_args_aws)
    again = _synth(endpoint_args_aws)
    other_flags = _synth(
        dataclasses.replace(
            endpoint_args_aws, engine_args=(*endpoint_args_aws.engine_args, "--enforce-eager")
        )
    )
    more_replicas = _synth(dataclasses.replace(endpoint_args_aws, replicas_min=2, replicas_max=3))
    name = base[CONFIG]["name"]
    assert again[CONFIG]["name"] == name
    assert other_flags[CONFIG]["name"] != name
    assert other_flags[MODEL]["name"] != base[MODEL]["name"]
    assert more_replicas[CONFIG]["name"] != name
    assert more_replicas[MODEL]["name"] == base[MODEL]["name"]  # same container, new fleet
    # The endpoint keeps its name and follows the config: that is what triggers the update.
    assert {r[ENDPOINT]["name"] for r in (base, other_flags, more_replicas)} == {"mistral-7b-chat"}
    assert other_flags[ENDPOINT]["endpointConfigName"] == other_flags[CONFIG]["name"]


def test_single_instance_updates_all_at_once_without_rollback(endpoint_args_aws) -> None:
    deployment = _synth(endpoint_args_aws)[ENDPOINT]["deploymentConfig"]
    routing = deployment["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"]
    assert routing == {"type": "ALL_AT_ONCE", "waitIntervalInSeconds": 0}  # no alarm, no bake
    assert "autoRollbackConfiguration" not in deployment
    timeout = deployment["blueGreenUpdatePolicy"]["maximumExecutionTimeoutInSeconds"]
    assert timeout >= 2 * endpoint_args_aws.startup_timeout_s


def test_canary_and_rollback_alarms(pulumi_mocks, endpoint_args_aws) -> None:
    args = dataclasses.replace(endpoint_args_aws, replicas_min=4, replicas_max=4)
    config = {
        "rollbackAlarmNames": "ep-5xx,ep-latency",
        "canaryPercent": "25",
        "bakeSeconds": "900",
    }
    _run(pulumi_mocks, args, config)
    deployment = pulumi_mocks.one(ENDPOINT).inputs["deploymentConfig"]
    routing = deployment["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"]
    assert routing["type"] == "CANARY"
    assert routing["waitIntervalInSeconds"] == 900
    assert routing["canarySize"] == {"type": "CAPACITY_PERCENT", "value": 25}
    assert deployment["autoRollbackConfiguration"] == {
        "alarms": [{"alarmName": "ep-5xx"}, {"alarmName": "ep-latency"}]
    }
    alarms = _policies(pulumi_mocks)["rollback-alarms"]["Statement"][0]
    assert alarms["Action"] == ["cloudwatch:DescribeAlarms"]
    assert alarms["Resource"] == [
        "arn:aws:cloudwatch:eu-west-3:123456789012:alarm:ep-5xx",
        "arn:aws:cloudwatch:eu-west-3:123456789012:alarm:ep-latency",
    ]


def test_autoscaling_when_max_exceeds_min(pulumi_mocks, endpoint_args_aws) -> None:
    _run(pulumi_mocks, endpoint_args_aws)
    target = pulumi_mocks.one(SCALING_TARGET).inputs
    assert target["serviceNamespace"] == "sagemaker"
    assert target["resourceId"] == "endpoint/mistral-7b-chat/variant/primary"
    assert target["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target["minCapacity"], target["maxCapacity"]) == (1, 2)
    policy = pulumi_mocks.one(SCALING_POLICY).inputs
    assert policy["policyType"] == "TargetTrackingScaling"
    assert policy["resourceId"] == target["resourceId"]
    tracking = policy["targetTrackingScalingPolicyConfiguration"]
    assert tracking["predefinedMetricSpecification"] == {
        "predefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["targetValue"] == 30


def test_no_autoscaling_for_a_fixed_fleet(pulumi_mocks, endpoint_args_aws) -> None:
    _run(pulumi_mocks, dataclasses.replace(endpoint_args_aws, replicas_min=2, replicas_max=2))
    assert pulumi_mocks.by_type(SCALING_TARGET) == []
    assert pulumi_mocks.by_type(SCALING_POLICY) == []


STASH = "pulumi:index:Stash"


def _register_options(session: Any) -> dict[str, Any]:
    """Each resource's name -> the RegisterResource request the engine got (options too)."""
    seen: dict[str, Any] = {}
    original = session.monitor.RegisterResource

    def spy(request: Any) -> Any:
        seen[request.name] = request
        return original(request)

    session.monitor.RegisterResource = spy
    return seen


def _property_deps(request: Any, key: str) -> set[str]:
    return (
        set(request.propertyDependencies[key].urns)
        if key in request.propertyDependencies
        else set()
    )


def test_instance_change_deregisters_scaling_before_the_endpoint_update(
    pulumi_mocks, endpoint_args_aws
) -> None:
    """
    SageMaker refuses UpdateEndpoint changing the instance type of an autoscaled variant
    (endpoint-scaling-update.html). The graph must make Pulumi delete policy and target first.
    """
    requests = _register_options(pulumi_mocks)
    _run(pulumi_mocks, endpoint_args_aws)
    epoch = pulumi_mocks.one(STASH)
    assert epoch.inputs["input"] == {"instanceType": "ml.g5.2xlarge", "variant": "primary"}
    assert epoch.depends_on == []  # registered before anything it must precede
    options = requests["scaling-epoch"]
    assert options.deleteBeforeReplace and list(options.replaceOnChanges) == ["input"]
    # Its replacement deletes first what depends on it through a replace-forcing property...
    target = pulumi_mocks.one(SCALING_TARGET)
    assert epoch.urn in _property_deps(requests["scaling-target"], "resourceId")
    assert target.urn in _property_deps(requests["scaling-policy"], "resourceId")
    # ...and the endpoint update waits for it, while the target follows the endpoint.
    endpoint = pulumi_mocks.one(ENDPOINT)
    assert epoch.urn in endpoint.depends_on
    assert endpoint.urn in target.depends_on


def _epoch(args: EndpointArgs) -> Any:
    with MockSession() as s:
        s.run(lambda: AwsEndpoint("ep", args))
        return s.one(STASH).inputs["input"]


def test_epoch_changes_with_the_instance_type_only(endpoint_args_aws) -> None:
    """A new model on the same instances is allowed with autoscaling: no re-registration."""
    base = _epoch(endpoint_args_aws)
    assert _epoch(dataclasses.replace(endpoint_args_aws, instance_type="ml.g6.2xlarge")) != base
    new_image = endpoint_args_aws.image.replace("0123", "4567")
    assert _epoch(dataclasses.replace(endpoint_args_aws, image=new_image)) == base


def test_no_epoch_without_autoscaling(pulumi_mocks, endpoint_args_aws) -> None:
    _run(pulumi_mocks, dataclasses.replace(endpoint_args_aws, replicas_min=2, replicas_max=2))
    assert pulumi_mocks.by_type(STASH) == []


def test_every_child_is_parented_and_tagged(pulumi_mocks, endpoint_args_aws) -> None:
    comp = _run(pulumi_mocks, endpoint_args_aws)
    urn = pulumi_mocks.resolve(comp.urn)
    (component,) = [r for r in pulumi_mocks.resources if r.type == TYPE_TOKEN]
    children = [r for r in pulumi_mocks.resources if r is not component]
    assert children and all(r.parent == urn for r in children)
    tagged = [r for r in children if r.type in TAGGABLE]
    assert {r.type for r in tagged} == TAGGABLE
    assert all(r.inputs["tags"] == endpoint_args_aws.labels for r in tagged)


GLOBAL_TYPES = {"aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"}  # IAM has no region


def test_every_regional_resource_names_its_region(pulumi_mocks, endpoint_args_aws) -> None:
    """Residency visible in the graph, not only in the provider's stack config (issue 9 §10)."""
    args = dataclasses.replace(endpoint_args_aws, region="eu-central-1")
    _run(pulumi_mocks, args)
    placed = [r for r in pulumi_mocks.resources if r.type.startswith("aws:")]
    regional = [r for r in placed if r.type not in GLOBAL_TYPES]
    assert {r.type for r in placed} - {r.type for r in regional} == GLOBAL_TYPES
    assert regional and {r.name: r.inputs.get("region") for r in regional} == {
        r.name: "eu-central-1" for r in regional
    }
    assert all("region" not in r.inputs for r in placed if r.type in GLOBAL_TYPES)


def test_outputs_are_registered(pulumi_mocks, endpoint_args_aws, monkeypatch) -> None:
    registered: dict[str, Any] = {}
    monkeypatch.setattr(AwsEndpoint, "register_outputs", lambda self, o: registered.update(o))
    comp = _run(pulumi_mocks, endpoint_args_aws)
    assert {"endpoint_name", "endpoint_url", "image", "repository_url"} <= set(registered)
    for key, value in registered.items():
        assert pulumi_mocks.resolve(value) == pulumi_mocks.resolve(getattr(comp, key)), key
    assert pulumi_mocks.resolve(comp.endpoint_url) == (
        "https://runtime.sagemaker.eu-west-3.amazonaws.com/endpoints/mistral-7b-chat/invocations"
    )
    assert pulumi_mocks.resolve(comp.endpoint_name) == "mistral-7b-chat"


def test_preview_without_the_env_secret_warns_instead_of_failing(
    endpoint_args_aws, monkeypatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with MockSession(preview=True) as session:
        session.run(lambda: AwsEndpoint("ep", endpoint_args_aws))
        version = session.one("aws:secretsmanager/secretVersion:SecretVersion")
        assert rpc.is_rpc_secret(version.inputs["secretString"])
        env = session.one(MODEL).inputs["primaryContainer"]["environment"]
        assert "MDEPLOY_SECRET_REFS" in env  # unknown until the secret exists
