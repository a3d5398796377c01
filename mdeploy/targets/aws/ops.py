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

__all__ = ["AwsOps", "EndpointStatus", "QuotaCheck", "VariantStatus", "quota_request_hint"]

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
}
_MESSAGE_MAX = 500  # characters of a container's error message worth showing


@dataclass(frozen=True)
class VariantStatus:
    """One production variant as DescribeEndpoint reports it."""

    name: str
    current_weight: float | None
    desired_weight: float | None
    current_instances: int | None
    desired_instances: int | None
    image: str | None  # the image SageMaker resolved (by digest), when reported

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EndpointStatus:
    """The endpoint's state, config and variants; `failure_reason` when it failed."""

    name: str
    status: str
    config_name: str | None
    failure_reason: str | None
    variants: tuple[VariantStatus, ...]

    @property
    def in_service(self) -> bool:
        return self.status == "InService"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "config_name": self.config_name,
            "failure_reason": self.failure_reason,
            "variants": [v.to_json() for v in self.variants],
        }


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

    def status(self) -> EndpointStatus:
        """DescribeEndpoint: status, failure reason, and each variant's weights and counts."""
        reply = self._call("sagemaker", "describe_endpoint", EndpointName=self.endpoint_name)
        return EndpointStatus(
            name=reply.get("EndpointName", self.endpoint_name),
            status=reply.get("EndpointStatus", "Unknown"),
            config_name=reply.get("EndpointConfigName"),
            failure_reason=reply.get("FailureReason"),
            variants=tuple(_variant(v) for v in reply.get("ProductionVariants") or []),
        )

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

    # -- traffic --------------------------------------------------------------------------

    def set_traffic(self, weights: Mapping[str, float]) -> EndpointStatus:
        """
        Set relative variant weights, e.g. {"v1": 90, "v2": 10}, and return the new status.

        Only the weights change (UpdateEndpointWeightsAndCapacities); instance counts stay.
        """
        _check_weights(weights)
        known = {v.name for v in self.status().variants}
        unknown = sorted(set(weights) - known)
        if unknown:
            raise InputError(
                f"{self.endpoint_name} has no variant {', '.join(unknown)}",
                hint=f"variants: {', '.join(sorted(known)) or 'none'}",
            )
        self._call(
            "sagemaker",
            "update_endpoint_weights_and_capacities",
            EndpointName=self.endpoint_name,
            DesiredWeightsAndCapacities=[
                {"VariantName": name, "DesiredWeight": float(weight)}
                for name, weight in sorted(weights.items())
            ],
        )
        return self.status()

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
            from mdeploy.targets.aws.target import AwsTarget

            return PrerequisiteError("no AWS credentials found", hint=AwsTarget.credentials_hint)
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
                return CloudError(
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


def _variant(raw: Mapping[str, Any]) -> VariantStatus:
    images = raw.get("DeployedImages") or [{}]
    return VariantStatus(
        name=raw.get("VariantName", "?"),
        current_weight=raw.get("CurrentWeight"),
        desired_weight=raw.get("DesiredWeight"),
        current_instances=raw.get("CurrentInstanceCount"),
        desired_instances=raw.get("DesiredInstanceCount"),
        image=images[0].get("ResolvedImage") or images[0].get("SpecifiedImage"),
    )


def _check_weights(weights: Mapping[str, float]) -> None:
    if not weights:
        raise InputError("no traffic weights given", hint='e.g. {"v1": 90, "v2": 10}')
    bad = sorted(n for n, w in weights.items() if not isinstance(w, int | float) or w < 0)
    if bad:
        raise InputError(f"traffic weight of {', '.join(bad)} must be a number ≥ 0")
    if sum(weights.values()) <= 0:
        raise InputError("traffic weights add up to 0: no variant would get traffic")


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
