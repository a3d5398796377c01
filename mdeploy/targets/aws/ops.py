"""
Day-2 operations on a deployed SageMaker endpoint: status, invoke, traffic weights, quotas.

boto3 is imported inside the methods, so importing this module costs nothing. Endpoint
overrides come from botocore itself (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SAGEMAKER`, …),
which is how the tests point it at a moto server. Every failure leaves as an mdeploy error
with a hint: AccessDenied names the IAM action to grant, ValidationError says what is wrong.
No state is kept beyond the lazily built clients; request bodies and replies are never logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mdeploy.errors import CloudError, InputError, PrerequisiteError
from mdeploy.targets.base import (
    REVISION_ENV,
    EndpointHealth,
    NotFoundError,
    VersionHealth,
    VersionSpec,
    base_version,
    percentages,
    refuse_removal,
    total_replicas,
    validate_weights,
)

__all__ = ["AwsOps", "QuotaCheck", "quota_request_hint"]

_CONTENT_TYPE = "application/json"
_ACCESS_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
_IAM_ACTION = {
    "describe_endpoint": "sagemaker:DescribeEndpoint",
    "invoke_endpoint": "sagemaker:InvokeEndpoint",
    # The API reference names sagemaker:InvokeEndpoint for the streaming call, but IAM also
    # knows sagemaker:InvokeEndpointWithResponseStream, and AWS's own managed policies grant
    # both for streaming (Sid "BedrockEndpointInvokingOperations"): a policy written against
    # the action list alone denies the stream, so the hint names both (issue 9 §11).
    "invoke_endpoint_with_response_stream": (
        "sagemaker:InvokeEndpoint and sagemaker:InvokeEndpointWithResponseStream"
    ),
    "update_endpoint_weights_and_capacities": "sagemaker:UpdateEndpointWeightsAndCapacities",
    "describe_endpoint_config": "sagemaker:DescribeEndpointConfig",
    "describe_model": "sagemaker:DescribeModel",
    "create_model": "sagemaker:CreateModel (and iam:PassRole on the execution role)",
    "create_endpoint_config": "sagemaker:CreateEndpointConfig",
    "update_endpoint": "sagemaker:UpdateEndpoint",
}
# EndpointStatus (botocore sagemaker model) → the one health vocabulary of targets/base.py.
_STATE = {
    "InService": "ready",
    "Creating": "updating",
    "Updating": "updating",
    "SystemUpdating": "updating",
    "RollingBack": "updating",
    "UpdateRollbackFailed": "failed",
    "Deleting": "updating",
    "Failed": "failed",
    "OutOfService": "unhealthy",
}
_MESSAGE_MAX = 500  # characters of a container's error message worth showing


@dataclass(frozen=True)
class QuotaCheck:
    """
    Whether `requested` more instances fit the account's "<type> for endpoint usage" quota.

    `in_use` counts the instances of that type that the region's endpoints hold now (this
    endpoint's too: a blue/green update runs the old and the new fleet side by side), so
    `available` is the applied limit minus that. `ok` is None when the quota or the usage could
    not be read; `reason` then says why.
    """

    instance_type: str
    requested: int
    limit: float | None
    quota_code: str | None
    ok: bool | None
    reason: str
    in_use: int | None = None

    @property
    def available(self) -> float | None:
        if self.limit is None or self.in_use is None:
            return None
        return max(0.0, self.limit - self.in_use)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "available": self.available}


# Endpoints in these states hold no instances (EndpointStatus enum, botocore sagemaker model).
_IDLE_STATES = ("OutOfService", "Failed", "Deleting")
# Documented entry point for SageMaker quota requests (sagemaker/latest/dg, "Quotas" pages).
QUOTA_CONSOLE = "https://console.aws.amazon.com/servicequotas/home/services/sagemaker/quotas"


def quota_request_hint(quota_code: str | None, desired: float, region: str) -> str:
    """The CLI line (and console page) that asks AWS for `desired` instances."""
    if not quota_code:
        return f"{QUOTA_CONSOLE} (region {region})"
    return (
        "aws service-quotas request-service-quota-increase --service-code sagemaker "
        f"--quota-code {quota_code} --desired-value {desired:g} --region {region}"
        f" (or {QUOTA_CONSOLE})"
    )


class AwsOps:
    """
    Day-2 client for one endpoint.

    >>> ops = AwsOps("mistral-7b-chat", "eu-west-3")  # doctest: +SKIP
    >>> ops.invoke({"messages": [{"role": "user", "content": "hi"}]})  # doctest: +SKIP
    """

    def __init__(self, endpoint_name: str, region: str, *, session: Any = None) -> None:
        self.endpoint_name = endpoint_name
        self.region = region
        self._session = session
        self._clients: dict[str, Any] = {}
        self._models: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> AwsOps:
        """Build from a stack's outputs (`endpoint_name`, `region` or `endpoint_url`)."""
        name = outputs.get("endpoint_name")
        region = outputs.get("region") or _region_of(str(outputs.get("endpoint_url") or ""))
        if not name or not region:
            raise InputError(
                "the stack outputs lack endpoint_name or region",
                hint="run `mdeploy up` for this spec and target first",
            )
        return cls(str(name), str(region))

    def __repr__(self) -> str:
        return f"AwsOps(endpoint_name={self.endpoint_name!r}, region={self.region!r})"

    # -- status ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint's invocation URL (SigV4-signed; SageMaker's runtime host)."""
        host = f"runtime.sagemaker.{self.region}.amazonaws.com"
        return f"https://{host}/endpoints/{self.endpoint_name}/invocations"

    def status(self) -> EndpointHealth:
        """DescribeEndpoint (+ its config and models): state, variants, weights, counts."""
        reply = self._describe()
        raw = reply.get("EndpointStatus", "Unknown")
        versions = self._versions(reply)
        return EndpointHealth(
            state=_STATE.get(raw, "unknown"),
            url=self.url,
            region=self.region,
            versions=versions,
            replicas=total_replicas(versions),
            details={
                "endpoint_name": reply.get("EndpointName", self.endpoint_name),
                "status": raw,
                "config_name": reply.get("EndpointConfigName"),
                "failure_reason": reply.get("FailureReason"),
            },
            detail=reply.get("FailureReason"),
        )

    def versions(self) -> list[VersionHealth]:
        """The endpoint's production variants as versions, weights as whole percentages."""
        return self._versions(self._describe())

    def _describe(self) -> dict[str, Any]:
        return self._call("sagemaker", "describe_endpoint", EndpointName=self.endpoint_name)

    def _versions(self, reply: Mapping[str, Any]) -> list[VersionHealth]:
        live = reply.get("ProductionVariants") or []
        weights = percentages({v["VariantName"]: _weight(v) for v in live})
        config = self._config_variants(reply.get("EndpointConfigName"))
        return [
            VersionHealth(
                name=v["VariantName"],
                traffic_percent=weights[v["VariantName"]],
                image=_image(v) or self._model_image(config.get(v["VariantName"])),
                model_revision=self._model_revision(config.get(v["VariantName"])),
                replicas=v.get("CurrentInstanceCount"),
                state=(v.get("VariantStatus") or [{}])[0].get("Status"),
            )
            for v in live
        ]

    def _config_variants(self, config_name: str | None) -> dict[str, dict[str, Any]]:
        """The endpoint config's variants by name ({} when there is no config yet)."""
        if not config_name:
            return {}
        config = self._call("sagemaker", "describe_endpoint_config", EndpointConfigName=config_name)
        return {v["VariantName"]: v for v in config.get("ProductionVariants") or []}

    def _model(self, variant: Mapping[str, Any] | None) -> dict[str, Any]:
        if not variant or not variant.get("ModelName"):
            return {}
        if variant["ModelName"] not in self._models:
            self._models[variant["ModelName"]] = self._call(
                "sagemaker", "describe_model", ModelName=variant["ModelName"]
            )
        return self._models[variant["ModelName"]]

    def _model_image(self, variant: Mapping[str, Any] | None) -> str | None:
        return (self._model(variant).get("PrimaryContainer") or {}).get("Image")

    def _model_revision(self, variant: Mapping[str, Any] | None) -> str | None:
        container = self._model(variant).get("PrimaryContainer") or {}
        return (container.get("Environment") or {}).get(REVISION_ENV)

    # -- invoke ---------------------------------------------------------------------------

    def invoke(
        self,
        body: bytes | str | Mapping[str, Any],
        *,
        stream: bool = False,
        variant: str | None = None,
        accept: str | None = None,
    ) -> bytes | Iterator[bytes]:
        """
        Send one JSON request to the endpoint's `/invocations`.

        Returns the reply body, or with `stream=True` an iterator of the streamed chunks
        (InvokeEndpointWithResponseStream; the container must stream `/invocations`).
        `variant` pins one production variant, bypassing the traffic weights.
        """
        params: dict[str, Any] = {
            "EndpointName": self.endpoint_name,
            "ContentType": _CONTENT_TYPE,
            "Body": _encode(body),
        }
        if variant:
            params["TargetVariant"] = variant
        if accept:
            params["Accept"] = accept
        if not stream:
            reply = self._call("sagemaker-runtime", "invoke_endpoint", **params)
            return reply["Body"].read()
        reply = self._call("sagemaker-runtime", "invoke_endpoint_with_response_stream", **params)
        return self._chunks(reply["Body"])

    def _chunks(self, events: Any) -> Iterator[bytes]:
        """Yield payload parts; a stream error event (botocore raises it) becomes a CloudError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            for event in events:
                if "PayloadPart" in event:
                    yield event["PayloadPart"].get("Bytes", b"")
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "invoke_endpoint_with_response_stream") from None

    # -- traffic (TrafficOps: production variants) ---------------------------------------

    def set_traffic(self, weights: dict[str, int]) -> EndpointHealth:
        """
        Route traffic between variants, e.g. {"v1": 90, "v2": 10}, and return the new health.

        Only the weights change (UpdateEndpointWeightsAndCapacities); instance counts stay.
        Variants left out get weight 0.
        """
        validate_weights(weights)
        known = [v.name for v in self.versions()]
        wanted = validate_weights(weights, known)
        self._call(
            "sagemaker",
            "update_endpoint_weights_and_capacities",
            EndpointName=self.endpoint_name,
            DesiredWeightsAndCapacities=[
                {"VariantName": name, "DesiredWeight": float(pct)}
                for name, pct in sorted(wanted.items())
            ],
        )
        return self.status()

    def deploy_version(self, spec_version: VersionSpec) -> EndpointHealth:
        """
        A new production variant beside the live ones, with weight 0.

        SageMaker changes variants only through a new EndpointConfig: this copies the base
        variant's model (role, network, environment) with the new image and revision, writes
        a config holding every current variant at its current weight plus the new one, and
        UpdateEndpoint switches to it. The config is named after the endpoint and a hash of
        its variants, so a retry after a crash reuses it. A later `mdeploy up` puts back
        the config Pulumi knows: promotion state is the caller's (issue 13).
        """
        reply = self._describe()
        health = self.status()
        if spec_version.name in health.traffic:
            raise InputError(f"{self.endpoint_name} already has a variant {spec_version.name}")
        config = self._config_variants(reply.get("EndpointConfigName"))
        base = config[base_version(health, spec_version.base).name]
        model_name = self._copy_model(base, spec_version)
        current = {v["VariantName"]: _weight(v) for v in reply.get("ProductionVariants") or []}
        variants = [
            {**_writable(config[name]), "InitialVariantWeight": weight}
            for name, weight in sorted(current.items())
        ]
        variants.append(
            {
                **_writable(base),
                "VariantName": spec_version.name,
                "ModelName": model_name,
                "InitialInstanceCount": spec_version.replicas,
                "InitialVariantWeight": 0.0,
            }
        )
        self._switch_config(variants)
        return self.status()

    def remove_version(self, name: str) -> EndpointHealth:
        """Drop a variant that takes no traffic: a new EndpointConfig without it."""
        reply = self._describe()
        refuse_removal(self.status(), name)
        config = self._config_variants(reply.get("EndpointConfigName"))
        variants = [
            {**_writable(config[v["VariantName"]]), "InitialVariantWeight": _weight(v)}
            for v in reply.get("ProductionVariants") or []
            if v["VariantName"] != name
        ]
        self._switch_config(variants)
        return self.status()

    def _copy_model(self, base: Mapping[str, Any], spec_version: VersionSpec) -> str:
        """CreateModel: the base variant's model with the new image, revision and env."""
        model = self._model(base)
        container = dict(model.get("PrimaryContainer") or {})
        env = {**(container.get("Environment") or {}), **spec_version.env}
        if spec_version.model_revision:
            env[REVISION_ENV] = spec_version.model_revision
        container.update(Image=spec_version.image, Environment=env)
        name = _fit(f"{self.endpoint_name}-{spec_version.name}", container)
        params: dict[str, Any] = {
            "ModelName": name,
            "ExecutionRoleArn": model["ExecutionRoleArn"],
            "PrimaryContainer": container,
        }
        for key in ("VpcConfig", "EnableNetworkIsolation"):
            if model.get(key) not in (None, {}):
                params[key] = model[key]
        self._call("sagemaker", "create_model", **params)
        return name

    def _switch_config(self, variants: list[dict[str, Any]]) -> None:
        """CreateEndpointConfig with `variants`, then UpdateEndpoint onto it."""
        name = _fit(f"{self.endpoint_name}-cfg", variants)
        self._call(
            "sagemaker",
            "create_endpoint_config",
            EndpointConfigName=name,
            ProductionVariants=variants,
        )
        self._call(
            "sagemaker", "update_endpoint", EndpointName=self.endpoint_name, EndpointConfigName=name
        )

    # -- quotas ---------------------------------------------------------------------------

    def quota_check(self, instance_type: str, count: int) -> QuotaCheck:
        """Compare `count` new instances with the quota left after what endpoints hold now."""
        from botocore.exceptions import BotoCoreError, ClientError

        wanted = f"{instance_type} for endpoint usage"
        try:
            quota = self._find_quota(wanted)
        except (ClientError, BotoCoreError) as exc:
            why = self._unreadable(
                exc,
                "servicequotas:ListServiceQuotas and ListAWSDefaultServiceQuotas",
                "Service Quotas",
            )
            return QuotaCheck(instance_type, count, None, None, None, f"unknown: {why}")
        if quota is None:
            return QuotaCheck(
                instance_type, count, None, None, None, f"unknown: no quota named {wanted!r}"
            )
        limit, code = float(quota["Value"]), quota.get("QuotaCode")
        try:
            in_use = self.instances_in_use(instance_type)
        except (ClientError, BotoCoreError) as exc:
            why = self._unreadable(
                exc,
                "sagemaker:ListEndpoints, DescribeEndpoint and DescribeEndpointConfig",
                "SageMaker",
            )
            return QuotaCheck(instance_type, count, limit, code, None, f"unknown usage: {why}")
        ok = in_use + count <= limit
        reason = (
            f"{count} new + {in_use} in use ≤ {limit:g} allowed"
            if ok
            else f"{count} new + {in_use} in use > {limit:g} allowed; "
            + quota_request_hint(code, in_use + count, self.region)
        )
        return QuotaCheck(instance_type, count, limit, code, ok, reason, in_use)

    def instances_in_use(self, instance_type: str) -> int:
        """Instances of `instance_type` that the region's endpoints hold (or are starting)."""
        sagemaker = self._client("sagemaker")
        total = 0
        for page in sagemaker.get_paginator("list_endpoints").paginate():
            for summary in page.get("Endpoints", []):
                if summary.get("EndpointStatus") in _IDLE_STATES:
                    continue
                endpoint = sagemaker.describe_endpoint(EndpointName=summary["EndpointName"])
                config = sagemaker.describe_endpoint_config(
                    EndpointConfigName=endpoint["EndpointConfigName"]
                )
                types = {
                    v["VariantName"]: v.get("InstanceType")
                    for v in config.get("ProductionVariants", [])
                }
                for variant in endpoint.get("ProductionVariants") or []:
                    if types.get(variant.get("VariantName")) == instance_type:
                        total += max(
                            variant.get("CurrentInstanceCount") or 0,
                            variant.get("DesiredInstanceCount") or 0,
                        )
        return total

    @staticmethod
    def _unreadable(exc: Exception, actions: str, service: str) -> str:
        code = _code(exc)
        if code in _ACCESS_DENIED:
            return f"needs {actions}"
        return f"{service} did not answer ({code or type(exc).__name__})"

    def _find_quota(self, wanted: str) -> dict[str, Any] | None:
        """The applied quota, else the AWS default, whose name is `wanted` (case-blind)."""
        client = self._client("service-quotas")
        for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
            for page in client.get_paginator(operation).paginate(ServiceCode="sagemaker"):
                for quota in page.get("Quotas", []):
                    if str(quota.get("QuotaName", "")).lower() == wanted.lower():
                        return quota
        return None

    # -- plumbing -------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise PrerequisiteError(
                    "boto3 is needed for AWS operations", hint="pip install 'mdeploy[aws]'"
                ) from None
            session = self._session or boto3.session.Session()
            # SageMaker answers an invocation within 60 s; leave room for the network.
            config = Config(
                connect_timeout=10,
                read_timeout=75,
                retries={"mode": "standard", "max_attempts": 3},
            )
            self._clients[service] = session.client(service, region_name=self.region, config=config)
        return self._clients[service]

    def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client(service), operation)(**params)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, operation) from None

    def _error(self, exc: Exception, operation: str) -> Exception:
        """Map a botocore failure to an mdeploy error with an actionable hint."""
        from botocore.exceptions import (
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            from mdeploy.targets.aws.rules import CREDENTIALS_HINT

            return PrerequisiteError("no AWS credentials found", hint=CREDENTIALS_HINT)
        if isinstance(exc, EndpointConnectionError):
            return CloudError(
                f"cannot reach AWS for {operation}: {exc}",
                hint="check the network, the region and AWS_ENDPOINT_URL if it is set",
            )
        code, message = _code(exc), _short(_message(exc))
        action = _IAM_ACTION.get(operation, operation)
        arn_hint = f"arn:aws:sagemaker:{self.region}:<account>:endpoint/{self.endpoint_name}"
        if code in _ACCESS_DENIED:
            return CloudError(
                f"access denied: {operation} on {self.endpoint_name}",
                hint=f"grant {action} on {arn_hint} to the identity you run as",
            )
        if code in ("ValidationError", "ValidationException"):
            if "could not find" in message.lower():
                return NotFoundError(
                    f"endpoint {self.endpoint_name} not found in {self.region}",
                    hint="run `mdeploy up` first, or check the region and the --env name",
                )
            return CloudError(f"{operation} rejected: {message}", hint=_validation_hint(operation))
        if code in ("ModelStreamError", "InternalStreamFailure"):
            return CloudError(
                f"{self.endpoint_name}: the response stream broke ({code}): {message}",
                hint=f"see the log group /aws/sagemaker/Endpoints/{self.endpoint_name}",
            )
        if code == "ModelError":
            return CloudError(
                f"the model container answered with an error: {message}",
                hint="check the request body and the endpoint's CloudWatch logs",
            )
        if code in ("ModelNotReadyException", "ServiceUnavailable", "ThrottlingException"):
            return CloudError(
                f"{self.endpoint_name} is busy or not ready ({code})", hint="retry in a minute"
            )
        return CloudError(f"{operation} failed: {code or type(exc).__name__}: {message}")


def _weight(variant: Mapping[str, Any]) -> float:
    """A live variant's weight: the current one, else the one asked for."""
    weight = variant.get("CurrentWeight")
    return float(weight if weight is not None else variant.get("DesiredWeight") or 0.0)


def _image(variant: Mapping[str, Any]) -> str | None:
    images = variant.get("DeployedImages") or [{}]
    return images[0].get("ResolvedImage") or images[0].get("SpecifiedImage")


# ProductionVariant fields CreateEndpointConfig accepts (botocore sagemaker model), copied
# from the live config so that a new config changes nothing but the variants' list.
_VARIANT_FIELDS = (
    "VariantName", "ModelName", "InitialInstanceCount", "InstanceType", "AcceleratorType",
    "InitialVariantWeight", "VolumeSizeInGB", "ModelDataDownloadTimeoutInSeconds",
    "ContainerStartupHealthCheckTimeoutInSeconds", "EnableSSMAccess", "ManagedInstanceScaling",
    "RoutingConfig", "InferenceAmiVersion", "CoreDumpConfig", "ServerlessConfig",
)  # fmt: skip


def _writable(variant: Mapping[str, Any]) -> dict[str, Any]:
    return {k: variant[k] for k in _VARIANT_FIELDS if variant.get(k) is not None}


def _fit(base: str, *parts: object) -> str:
    """`base-<8 hex>` within SageMaker's 63 characters; the hash covers `parts`."""
    import hashlib

    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"{base[:54].rstrip('-')}-{digest[:8]}"


def _validation_hint(operation: str) -> str:
    if operation == "update_endpoint_weights_and_capacities":
        return "weights go to existing variants only, and the endpoint must be InService"
    if operation.startswith("invoke"):
        return "the body must be JSON the container accepts (chat or completion request)"
    return "check the endpoint name and region"


def _encode(body: bytes | str | Mapping[str, Any]) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _message(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    return str(response.get("OriginalMessage") or error.get("Message") or exc)


def _short(text: Any) -> str:
    text = str(text or "").strip()
    return text if len(text) <= _MESSAGE_MAX else text[:_MESSAGE_MAX] + "…"


def _region_of(url: str) -> str | None:
    """The region in https://runtime.sagemaker.<region>.amazonaws.com/…, else None."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    return parts[2] if len(parts) > 3 and parts[:2] == ["runtime", "sagemaker"] else None
