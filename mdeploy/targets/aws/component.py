"""
The SageMaker endpoint as one Pulumi ComponentResource: `mdeploy:aws:Endpoint`.

What it declares (all children parented to the component, short local names):
ECR repository (unless `mdeploy:existingRepositoryUrl`), execution role with one inline policy
per concern, Secrets Manager secrets for `env:`/`file:` references, the endpoint log group,
Model, EndpointConfiguration, Endpoint, and Application Auto Scaling target + policy when
replicas.max > replicas.min. Stack config keys are listed in `target.py`.

Rules this module keeps:
- The image is pulled from the target's ECR repository by the spec's digest, never a tag.
- SageMaker applies a change only when the endpoint *config name* changes, so model and
  config names end in a hash of everything that shapes them (`EndpointArgs.short_hash`
  first); the endpoint name stays stable and updates are blue/green.
- Least privilege: ECR pull on that repository, S3 read on that prefix, logs on that
  endpoint's log group, GetSecretValue on those secrets, ENI rights only with a VPC,
  DescribeAlarms only on the rollback alarms. Resource "*" only where IAM has no resource
  (ecr:GetAuthorizationToken, ec2 ENI actions, cloudwatch:PutMetricData by namespace).
- Secrets never enter the model environment (SageMaker documents it as not for secrets): the
  container gets `MDEPLOY_SECRET_REFS`, a JSON object ENV_NAME -> `aws-sm:<secret ARN>` (the
  image contract of every target), and mdeploy/serve/boot.py reads each value from Secrets Manager
  with the execution role before the engine starts. `env:`/`file:` values are read at `up`
  time into a Secrets Manager secret whose value is a Pulumi secret; `aws-sm:` ARNs are used as
  they are, and an `aws-sm:` name becomes its partial ARN (region and account of the
  endpoint), since the container has no region to look a bare name up in.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi

from mdeploy.errors import InputError
from mdeploy.targets._config import stack_values
from mdeploy.targets._pulumi_imports import import_only
from mdeploy.targets.aws.iam import (
    VPC_ACTIONS,
    ecr_pull_policy,
    logs_policy,
    policy_document,
    s3_read_policy,
    secret_resource,
    statement,
)
from mdeploy.targets.aws.rules import (
    _ENV_VALUE_MAX,
    AwsSettings,
    ModelData,
    aws_tags,
    check_deployable,
    container_env,
    hashed_name,
    inference_ami_version,
    model_data,
    partition_of,
    repository_arn,
    repository_name,
    resource_names,
    runtime_url,
    volume_size_gb,
    volume_size_supported,
)
from mdeploy.targets.base import EndpointArgs, image_with_registry

__all__ = ["TYPE_TOKEN", "AwsEndpoint"]

# The resource modules used, not whole subpackages (each __init__ imports its API group).
sagemaker = import_only("pulumi_aws.sagemaker", "model", "endpoint_configuration", "endpoint")
iam = import_only("pulumi_aws.iam", "role", "role_policy")
ecr = import_only("pulumi_aws.ecr", "repository")
cloudwatch = import_only("pulumi_aws.cloudwatch", "log_group")
appautoscaling = import_only("pulumi_aws.appautoscaling", "target", "policy")
secretsmanager = import_only("pulumi_aws.secretsmanager", "secret", "secret_version")

TYPE_TOKEN = "mdeploy:aws:Endpoint"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"
# pulumi_aws 7.x argument classes of the endpoint deployment config, by short name.
_BlueGreen = sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyArgs
_Routing = sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgs
_CanarySize = (
    sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationCanarySizeArgs
)


class AwsEndpoint(pulumi.ComponentResource):
    """A vLLM endpoint on SageMaker real-time inference, pulled from ECR by digest."""

    endpoint_name: pulumi.Output[str]
    endpoint_url: pulumi.Output[str]
    image: pulumi.Output[str]
    repository_url: pulumi.Output[str]
    model_name: pulumi.Output[str]
    endpoint_config_name: pulumi.Output[str]
    variant_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    region: pulumi.Output[str]

    def __init__(
        self, name: str, args: EndpointArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, {}, opts)
        settings = AwsSettings.from_stack(stack_values())
        names = resource_names(args)
        data = model_data(args, settings)
        check_deployable(args, settings, data)
        self._args, self._settings, self._names = args, settings, names
        self._tags = aws_tags(args.labels)
        self._child = pulumi.ResourceOptions(parent=self)
        self._partition = partition_of(args.region)[0]
        # Residency visible per resource: every regional resource names its region (pulumi-aws
        # v7's per-resource `region`), not only the provider's stack config. IAM roles and their
        # inline policies are global (IAM has no region) and carry none.
        self._region = args.region

        repo_url, repo_arn = self._registry()
        image = pulumi.Output.from_input(repo_url).apply(
            lambda url: image_with_registry(args.image, url)
        )
        role = iam.Role(
            "role",
            name_prefix=f"mdeploy-{names.base}"[:37] + "-",
            description=f"SageMaker execution role of the mdeploy endpoint {names.endpoint}",
            assume_role_policy=policy_document(
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sagemaker.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ),
            tags=self._tags,
            opts=self._child,
        )
        # arn:<partition>:iam::<account>:role/<name>: the account without an invoke.
        self._account: pulumi.Output[str] = role.arn.apply(lambda arn: arn.split(":")[4])
        secret_env, secret_arns = self._secrets()
        policies = self._role_policies(role, repo_arn, data, secret_arns)
        logs = cloudwatch.LogGroup(
            "logs",
            region=self._region,
            name=f"/aws/sagemaker/Endpoints/{names.endpoint}",
            retention_in_days=settings.log_retention_days,
            tags=self._tags,
            opts=self._child,
        )
        model = self._model(role, image, data, secret_env, policies)
        config = self._endpoint_config(model, self._model_name(data))
        scaled = args.replicas_max > args.replicas_min
        epoch = self._scaling_epoch() if scaled else None
        endpoint = sagemaker.Endpoint(
            "endpoint",
            region=self._region,
            name=names.endpoint,
            endpoint_config_name=config.name,
            deployment_config=self._deployment_config(),
            tags=self._tags,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[logs, *policies, *([epoch] if epoch else [])]
            ),
        )
        if epoch is not None:
            self._autoscaling(endpoint, epoch)

        self.endpoint_name = endpoint.name
        self.endpoint_url = endpoint.name.apply(lambda n: runtime_url(args.region, n))
        self.image = image
        self.repository_url = pulumi.Output.from_input(repo_url)
        self.model_name = model.name
        self.endpoint_config_name = config.name
        self.variant_name = pulumi.Output.from_input(names.variant)
        self.role_arn = role.arn
        self.region = pulumi.Output.from_input(args.region)
        self.register_outputs(
            {
                "endpoint_name": self.endpoint_name,
                "endpoint_url": self.endpoint_url,
                "image": self.image,
                "repository_url": self.repository_url,
                "model_name": self.model_name,
                "endpoint_config_name": self.endpoint_config_name,
                "variant_name": self.variant_name,
                "role_arn": self.role_arn,
                "region": self.region,
            }
        )

    # -- registry -------------------------------------------------------------------------

    def _registry(self) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
        """The repository URL and ARN to pull from; creates the repository unless configured."""
        existing = self._settings.existing_repository_url
        if existing:
            self.repository: ecr.Repository | None = None
            return existing.rstrip("/"), repository_arn(existing, self._args.region)
        kms = self._settings.kms_key_arn
        self.repository = ecr.Repository(
            "repository",
            region=self._region,
            name=repository_name(self._args),
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            encryption_configurations=[
                ecr.RepositoryEncryptionConfigurationArgs(
                    encryption_type="KMS" if kms else "AES256", kms_key=kms
                )
            ],
            force_delete=False,
            tags=self._tags,
            opts=self._child,
        )
        return self.repository.repository_url, self.repository.arn

    # -- secrets --------------------------------------------------------------------------

    def _secrets(self) -> tuple[dict[str, pulumi.Input[str]], list[pulumi.Input[str]]]:
        """The `MDEPLOY_SECRET_REFS` variable (if any secret) and the IAM resources it needs."""
        arns: dict[str, pulumi.Input[str]] = {}
        resources: list[pulumi.Input[str]] = []
        part, region = self._partition, self._args.region
        self._check_refs_size()
        for env_name, ref in sorted(self._args.secrets.items()):
            scheme, _, target = ref.partition(":")
            if scheme == "aws-sm":
                arns[env_name] = (
                    target
                    if target.startswith("arn:")
                    else self._account.apply(
                        lambda acct, t=target: (
                            f"arn:{part}:secretsmanager:{region}:{acct}:secret:{t}"
                        )
                    )
                )
                resources.append(
                    self._account.apply(
                        lambda acct, t=target: secret_resource(t, part, region, acct)
                    )
                )
            elif scheme in ("env", "file"):
                secret = self._stored_secret(env_name, _read_local_secret(scheme, target, env_name))
                arns[env_name] = secret.arn
                resources.append(secret.arn)
            else:
                raise InputError(
                    f"serving.secrets.{env_name}: {scheme}: references cannot be read on SageMaker",
                    hint="use aws-sm:<secret ARN>, env:NAME or file:PATH",
                )
        if not arns:
            return {}, resources
        names = list(arns)
        refs = pulumi.Output.all(*arns.values()).apply(
            lambda values: json.dumps(
                {n: f"aws-sm:{v}" for n, v in zip(names, values, strict=True)}, sort_keys=True
            )
        )
        return {"MDEPLOY_SECRET_REFS": refs}, resources

    def _check_refs_size(self) -> None:
        """Refuse, before any resource exists, a reference map SageMaker would reject."""
        stored = f"arn:{self._partition}:secretsmanager:{self._args.region}:{'0' * 12}:secret:"
        longest: dict[str, str] = {}
        for name, ref in self._args.secrets.items():
            scheme, _, target = ref.partition(":")
            if scheme == "aws-sm":
                longest[name] = target if target.startswith("arn:") else stored + target
            else:  # created here: name_prefix, 26 random characters, then "-" and 6 more
                longest[name] = f"{stored}mdeploy/{self._names.base}/{name}-{'x' * 33}"
        size = len(json.dumps({n: f"aws-sm:{a}" for n, a in longest.items()}).encode())
        if size > _ENV_VALUE_MAX:
            raise InputError(
                f"serving.secrets: MDEPLOY_SECRET_REFS would be about {size} bytes; SageMaker "
                f"allows {_ENV_VALUE_MAX} per environment value",
                hint="use fewer secrets, or keep several values in one Secrets Manager secret",
            )

    def _stored_secret(self, env_name: str, value: pulumi.Output[str]) -> secretsmanager.Secret:
        """A Secrets Manager secret holding `value` (a Pulumi secret, never a plain input)."""
        local = env_name.lower().replace("_", "-")
        secret = secretsmanager.Secret(
            f"secret-{local}",
            region=self._region,
            name_prefix=f"mdeploy/{self._names.base}/{env_name}-",
            description=f"{env_name} for the mdeploy endpoint {self._names.endpoint}",
            kms_key_id=self._settings.kms_key_arn,
            tags=self._tags,
            opts=self._child,
        )
        secretsmanager.SecretVersion(
            f"secret-{local}-value",
            region=self._region,
            secret_id=secret.id,
            secret_string=value,
            opts=self._child,
        )
        return secret

    # -- IAM ------------------------------------------------------------------------------

    def _role_policies(
        self,
        role: iam.Role,
        repo_arn: pulumi.Input[str],
        data: ModelData,
        secret_arns: list[pulumi.Input[str]],
    ) -> list[iam.RolePolicy]:
        """One inline policy per concern, each scoped to the resources this endpoint uses."""
        region, part, endpoint = self._args.region, self._partition, self._names.endpoint
        docs: dict[str, pulumi.Input[str]] = {
            "ecr-pull": pulumi.Output.from_input(repo_arn).apply(ecr_pull_policy),
            "logs": self._account.apply(lambda a: logs_policy(part, region, a, endpoint)),
        }
        if data.s3_uri:
            docs["model-s3"] = s3_read_policy(data, part)
        if secret_arns:
            docs["secrets"] = pulumi.Output.all(*secret_arns).apply(
                lambda arns: policy_document(
                    statement(["secretsmanager:GetSecretValue"], sorted(set(arns)))
                )
            )
        if self._settings.vpc_subnet_ids:
            docs["vpc"] = policy_document(statement(VPC_ACTIONS, "*"))
        if self._settings.rollback_alarm_names:
            alarms = self._settings.rollback_alarm_names
            docs["rollback-alarms"] = self._account.apply(
                lambda a: policy_document(
                    statement(
                        ["cloudwatch:DescribeAlarms"],
                        [f"arn:{part}:cloudwatch:{region}:{a}:alarm:{n}" for n in alarms],
                    )
                )
            )
        if self._settings.kms_key_arn and (secret_arns or data.s3_uri):
            docs["kms"] = policy_document(
                statement(
                    ["kms:Decrypt"],
                    self._settings.kms_key_arn,
                    Condition={
                        "StringEquals": {
                            "kms:ViaService": [
                                f"secretsmanager.{region}.amazonaws.com",
                                f"s3.{region}.amazonaws.com",
                            ]
                        }
                    },
                )
            )
        return [
            iam.RolePolicy(f"policy-{key}", name=key, role=role.id, policy=doc, opts=self._child)
            for key, doc in docs.items()
        ]

    # -- SageMaker ------------------------------------------------------------------------

    def _model_name(self, data: ModelData) -> str:
        """Hash of everything that forces a new model: image, env, secrets, weights, network."""
        args, settings = self._args, self._settings
        shape = (
            args.short_hash,
            container_env(args),
            sorted(args.secrets.items()),
            settings.existing_repository_url,
            data,
            settings.enable_network_isolation,
            settings.vpc_subnet_ids,
            settings.vpc_security_group_ids,
        )
        return hashed_name(self._names.base, "model", *shape)

    def _model(
        self,
        role: iam.Role,
        image: pulumi.Output[str],
        data: ModelData,
        secret_env: dict[str, pulumi.Input[str]],
        policies: list[iam.RolePolicy],
    ) -> sagemaker.Model:
        """The container: image by digest, plain env + secret ARNs, weights from S3 if any."""
        args, settings = self._args, self._settings
        env = container_env(args)
        source = None
        if data.prefix:
            source = sagemaker.ModelPrimaryContainerModelDataSourceArgs(
                s3_data_sources=[
                    sagemaker.ModelPrimaryContainerModelDataSourceS3DataSourceArgs(
                        s3_uri=data.prefix, s3_data_type="S3Prefix", compression_type="None"
                    )
                ]
            )
        vpc = None
        if settings.vpc_subnet_ids:
            vpc = sagemaker.ModelVpcConfigArgs(
                subnets=list(settings.vpc_subnet_ids),
                security_group_ids=list(settings.vpc_security_group_ids),
            )
        return sagemaker.Model(
            "model",
            region=self._region,
            name=self._model_name(data),
            execution_role_arn=role.arn,
            primary_container=sagemaker.ModelPrimaryContainerArgs(
                image=image,
                environment={**env, **secret_env},
                model_data_url=data.url,
                model_data_source=source,
            ),
            enable_network_isolation=settings.enable_network_isolation,
            vpc_config=vpc,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=policies),
        )

    def _endpoint_config(
        self, model: sagemaker.Model, model_name: str
    ) -> sagemaker.EndpointConfiguration:
        """One production variant; its name hashes the model name and every variant setting."""
        args, settings = self._args, self._settings
        timeout = min(3600, max(60, args.startup_timeout_s))
        ebs = volume_size_supported(args.instance_type)
        variant: dict[str, Any] = {
            "variant_name": self._names.variant,
            "instance_type": args.instance_type,
            "initial_instance_count": args.replicas_min,
            "initial_variant_weight": 1.0,
            "container_startup_health_check_timeout_in_seconds": timeout,
            "model_data_download_timeout_in_seconds": timeout,
        }
        ami = inference_ami_version(args.instance_type, settings)
        if ami:
            variant["inference_ami_version"] = ami
        if ebs:
            variant["volume_size_in_gb"] = settings.volume_size_gb or volume_size_gb(
                args.weights_gib
            )
        kms = settings.kms_key_arn if ebs else None  # NVMe instance storage: hardware-encrypted
        return sagemaker.EndpointConfiguration(
            "config",
            region=self._region,
            # Plain strings only, so the name is known at preview and shown by `synth`.
            name=hashed_name(self._names.base, args.short_hash, model_name, variant, kms),
            production_variants=[
                sagemaker.EndpointConfigurationProductionVariantArgs(
                    model_name=model.name, **variant
                )
            ],
            kms_key_arn=kms,
            tags=self._tags,
            opts=self._child,
        )

    def _deployment_config(self) -> sagemaker.EndpointDeploymentConfigArgs:
        """
        Blue/green updates: a canary step when the fleet has 2+ instances (SageMaker caps the
        canary at 50 % of the fleet), else all at once. Auto-rollback and the `bakeSeconds`
        wait only with alarms: without one nothing can trip, so baking would only cost time.
        """
        args, settings = self._args, self._settings
        bake = settings.bake_seconds if settings.rollback_alarm_names else 0
        routing: dict[str, Any] = {"wait_interval_in_seconds": bake}
        if args.replicas_min >= 2:
            routing["type"] = "CANARY"
            routing["canary_size"] = _CanarySize(
                type="CAPACITY_PERCENT", value=settings.canary_percent
            )
        else:
            routing["type"] = "ALL_AT_ONCE"
        steps = 2 if routing["type"] == "CANARY" else 1
        budget = 2 * min(3600, max(60, args.startup_timeout_s)) + steps * bake
        rollback = None
        if settings.rollback_alarm_names:
            rollback = sagemaker.EndpointDeploymentConfigAutoRollbackConfigurationArgs(
                alarms=[
                    sagemaker.EndpointDeploymentConfigAutoRollbackConfigurationAlarmArgs(
                        alarm_name=n
                    )
                    for n in settings.rollback_alarm_names
                ]
            )
        return sagemaker.EndpointDeploymentConfigArgs(
            blue_green_update_policy=_BlueGreen(
                traffic_routing_configuration=_Routing(**routing),
                maximum_execution_timeout_in_seconds=min(28_800, max(600, budget + 600)),
            ),
            auto_rollback_configuration=rollback,
        )

    def _scaling_epoch(self) -> pulumi.Stash:
        """
        The autoscaling registration's epoch: replaced (deleted first) when the instance type
        changes, so that Pulumi deregisters the scalable target *before* the endpoint update.

        SageMaker refuses an UpdateEndpoint that changes the instance type of a variant that is
        a scalable target: "Before you update the endpoint, delete any scaling policies
        configured for it and deregister the variant as a scalable target ... After you update
        the endpoint, you can register the updated variant" (https://docs.aws.amazon.com/
        sagemaker/latest/dg/endpoint-scaling-update.html, read 2026-12-06). Changing only the
        model is allowed, so only the instance type (and the variant) are in the epoch.

        How Pulumi orders it: the epoch has no dependencies, so it is registered first; its
        delete-before-replace deletes every dependent that its replacement would replace, and
        the scaling target's `resource_id` depends on it (a ForceNew property), so the policy
        and the target are deleted (DeleteScalingPolicy, DeregisterScalableTarget) before the
        epoch is recreated. The endpoint depends on the epoch, so UpdateEndpoint runs after
        that; the target and the policy depend on the endpoint, so they are created again last.
        A scalable target hanging off the endpoint's own name alone would only be replaced after
        the endpoint update had already failed.
        """
        return pulumi.Stash(
            "scaling-epoch",
            input={"instanceType": self._args.instance_type, "variant": self._names.variant},
            opts=pulumi.ResourceOptions(
                parent=self, replace_on_changes=["input"], delete_before_replace=True
            ),
        )

    def _autoscaling(self, endpoint: sagemaker.Endpoint, epoch: pulumi.Stash) -> None:
        """Target tracking on invocations per instance, between replicas.min and .max."""
        args, settings, variant = self._args, self._settings, self._names.variant
        target = appautoscaling.Target(
            "scaling-target",
            region=self._region,
            service_namespace="sagemaker",
            # The epoch only orders the target (see _scaling_epoch); it adds nothing to the id.
            resource_id=pulumi.Output.all(endpoint.name, epoch.input).apply(
                lambda values: f"endpoint/{values[0]}/variant/{variant}"
            ),
            scalable_dimension=SCALABLE_DIMENSION,
            min_capacity=args.replicas_min,
            max_capacity=args.replicas_max,
            tags=self._tags,
            opts=self._child,
        )
        appautoscaling.Policy(
            "scaling-policy",
            region=self._region,
            name=f"{self._names.endpoint}-invocations-per-instance",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            target_tracking_scaling_policy_configuration=appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                target_value=float(settings.invocations_per_instance_target),
                predefined_metric_specification=appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type=SCALING_METRIC
                ),
                scale_in_cooldown=settings.scale_in_cooldown_s,
                scale_out_cooldown=settings.scale_out_cooldown_s,
            ),
            opts=self._child,
        )


def _read_local_secret(scheme: str, target: str, env_name: str) -> pulumi.Output[str]:
    """The value of an env:/file: reference as a Pulumi secret; missing is an error on `up`."""
    from mdeploy.targets._secrets import read_local_secret

    field = f"serving.secrets.{env_name}"
    value = read_local_secret(scheme, target, field=field)
    where = f"environment variable {target}" if scheme == "env" else f"file {target}"
    if value:
        return pulumi.Output.secret(value)
    if pulumi.runtime.is_dry_run():
        pulumi.log.warn(f"serving.secrets.{env_name}: {where} is not set; `up` will need it")
        return pulumi.Output.secret("")
    raise InputError(
        f"serving.secrets.{env_name}: {where} is empty or missing",
        hint="set it before `mdeploy up` (the value is stored in Secrets Manager, never printed)",
    )
