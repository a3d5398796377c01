"""
AWS conformance: what the SageMaker component would send, checked against botocore's models.

The authority is the installed botocore service model (`botocore/data/<service>/*/service-2.json`,
the same JSON the AWS SDKs and CLI are generated from), not our own fakes. The chain is:

1. `aws_graph`: synth runs the real `mdeploy:aws:Endpoint` component under the recording mock
   engine (`mdeploy.deploy.synth.synth_args`), with provider outputs shaped like AWS's own
   (`realistic_outputs`: role, secret and repository ARNs in their documented forms), so that
   ARNs that flow from one resource into another are the ones a real account would produce.
2. `to_requests`: each recorded resource becomes the API request(s) the Pulumi AWS provider
   makes for it (CreateModel, CreateEndpointConfig, CreateEndpoint and UpdateEndpoint, ...).
   Pulumi input names are matched to the API's member names case-blind, with a short alias
   table where they differ; an input that maps to no member is an error, so a new component
   input cannot slip past the checker unmapped.
3. `check_request`: botocore's ParamValidator (types, required members, minimums), then a walk
   over the shape for what ParamValidator leaves out: enums, maximum lengths and values, and
   patterns (fullmatch, as the service applies them; the `regex` module reads the models'
   `\\p{...}` classes).
4. `check_policy`: IAM documents: version, effects, every action an operation of its service's
   botocore model (or a documented permission-only action), every ARN well formed for its
   service (IAM and S3 carry no region, everything else the endpoint's region and a 12-digit
   account).

What only a real account shows is left out: service-side rules that are not in the model
(quotas, instance availability per region, cross-field rules such as VolumeSizeInGB on NVMe
instance families), and the provider's own sequencing.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import regex
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from botocore.validate import ParamValidator

from mdeploy.deploy import mocks
from mdeploy.deploy.program import resolve
from mdeploy.deploy.synth import synth_args
from mdeploy.errors import PolicyError
from mdeploy.spec import list_environments, load_spec
from mdeploy.targets.aws.target import _MOCK_ACCOUNT
from mdeploy.targets.base import EndpointArgs

__all__ = [
    "ACCOUNT",
    "EXAMPLES",
    "STACK_VARIANTS",
    "Case",
    "Request",
    "aws_cases",
    "aws_graph",
    "check_policy",
    "check_request",
    "to_requests",
]

ACCOUNT = _MOCK_ACCOUNT  # the account id the offline fakes use
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Pulumi's name_prefix appends 26 characters (terraform-provider-aws `id.PrefixedUniqueId`:
# a 20-digit timestamp + an 8-digit counter, 26 hex-ish characters in all).
_PREFIX_SUFFIX = "2026120609000000000000000a"
# Secrets Manager appends "-" and six random characters to a secret's name in its ARN
# (https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_iam-permissions.html).
_SECRET_SUFFIX = "-AbC123"

# The main stack-config variants of the AWS target (mdeploy:* keys of aws/target.py).
STACK_VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "existing-vpc": {
        "mdeploy:vpcSubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
        "mdeploy:vpcSecurityGroupIds": "sg-0123456789abcdef0",
    },
    "existing-repository": {
        "mdeploy:existingRepositoryUrl": "{account}.dkr.ecr.{region}.amazonaws.com/team/vllm",
    },
    "kms-and-s3-weights": {
        "mdeploy:kmsKeyArn": "arn:aws:kms:{region}:{account}:key/1234abcd-12ab-34cd-56ef-"
        "1234567890ab",
        "mdeploy:modelS3Prefix": "s3://acme-models/mistral/v3/",
    },
    "model-tarball": {"mdeploy:modelDataUrl": "s3://acme-models/mistral/model.tar.gz"},
    "rollback-alarms": {
        "mdeploy:rollbackAlarmNames": "mdeploy-5xx,mdeploy-latency",
        "mdeploy:canaryPercent": "25",
        "mdeploy:bakeSeconds": "300",
    },
}


# -- the graph --------------------------------------------------------------------------------


def realistic_outputs(typ: str, name: str, inputs: dict[str, Any], aws_region: str) -> dict:
    """`mocks._fake_outputs`, with ARNs and names in the forms AWS documents for each type."""
    out = _ORIGINAL_FAKE_OUTPUTS(typ, name, inputs, aws_region)
    region = inputs.get("region") or aws_region
    given = inputs.get("name") or (inputs.get("namePrefix") or "") + _PREFIX_SUFFIX
    if typ == "aws:iam/role:Role":
        out.update(arn=f"arn:aws:iam::{ACCOUNT}:role/{given}", name=given)
    elif typ == "aws:secretsmanager/secret:Secret":
        out.update(arn=f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{given}{_SECRET_SUFFIX}")
        out["name"] = given
    elif typ == "aws:ecr/repository:Repository":
        out["arn"] = f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{given}"
    elif typ == "aws:sagemaker/model:Model":
        out["arn"] = f"arn:aws:sagemaker:{region}:{ACCOUNT}:model/{given}"
    return out


_ORIGINAL_FAKE_OUTPUTS = mocks._fake_outputs


@dataclass(frozen=True)
class Case:
    """One example × environment × stack-config variant, resolved for the aws target."""

    example: str
    env: str | None
    variant: str
    args: EndpointArgs
    config: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.example}:{self.env or 'default'}:{self.variant}"


def aws_cases() -> Iterator[Case]:
    """Every example × environment (planner's aws pick) × stack variant × auth mode."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for env in [None, *list_environments(path)]:
            try:
                args = resolve(load_spec(path, env), "aws").args
            except PolicyError:
                continue  # nothing fits on aws: nothing would be sent
            for variant, raw in STACK_VARIANTS.items():
                config = {k: v.format(account=ACCOUNT, region=args.region) for k, v in raw.items()}
                yield Case(path.name, env, variant, args, config)
            other = "iam" if args.auth == "key" else "key"
            yield Case(path.name, env, f"auth-{other}", _replace(args, auth=other), {})


def _replace(args: EndpointArgs, **changes: Any) -> EndpointArgs:
    return dataclasses.replace(args, **changes)


def aws_graph(args: EndpointArgs, config: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The synth resource graph (masked inputs) under AWS-shaped mock outputs."""
    mocks._fake_outputs = realistic_outputs
    try:
        return synth_args("aws", args, config=config).resources
    finally:
        mocks._fake_outputs = _ORIGINAL_FAKE_OUTPUTS


# -- translation: recorded inputs -> API requests ---------------------------------------------


@dataclass(frozen=True)
class Request:
    """One API call the provider would make: service, operation, parameters, and why."""

    service: str  # botocore service name
    operation: str
    params: dict[str, Any]
    source: str  # "<type> <name>", for messages

    def __str__(self) -> str:
        return f"{self.service}.{self.operation} (from {self.source})"


class UnmappedInput(AssertionError):
    """A Pulumi input with no member in the API shape: the translation must learn it."""


# Pulumi type -> (service, operation, top-level renames, provider-only inputs dropped).
_PLAIN: dict[str, tuple[str, str, dict[str, str], set[str]]] = {
    "aws:sagemaker/model:Model": ("sagemaker", "CreateModel", {"name": "ModelName"}, set()),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": (
        "sagemaker",
        "CreateEndpointConfig",
        {"name": "EndpointConfigName", "kmsKeyArn": "KmsKeyId"},
        set(),
    ),
    "aws:sagemaker/endpoint:Endpoint": (
        "sagemaker",
        "CreateEndpoint",
        {"name": "EndpointName"},
        set(),
    ),
    "aws:iam/rolePolicy:RolePolicy": (
        "iam",
        "PutRolePolicy",
        {"name": "PolicyName", "role": "RoleName", "policy": "PolicyDocument"},
        set(),
    ),
    "aws:secretsmanager/secretVersion:SecretVersion": (
        "secretsmanager",
        "PutSecretValue",
        {},
        set(),
    ),
    "aws:appautoscaling/target:Target": (
        "application-autoscaling",
        "RegisterScalableTarget",
        {},
        set(),
    ),
    "aws:appautoscaling/policy:Policy": (
        "application-autoscaling",
        "PutScalingPolicy",
        {"name": "PolicyName"},
        set(),
    ),
}
# Nested Pulumi names that differ from the API member beyond case.
_NESTED_ALIASES = {"routingConfigs": "RoutingConfig"}
_PROVIDER_ONLY = {"region"}  # chooses the endpoint host; never a request member
# Engine-side resources: nothing reaches AWS (the Stash orders scaling around updates).
_NOT_SENT = {"pulumi-python:dynamic:Resource", "mdeploy:aws:Endpoint", "pulumi:index:Stash"}


def to_requests(resource: dict[str, Any]) -> list[Request]:
    """The API requests the Pulumi AWS provider makes to create `resource`."""
    typ, inputs = resource["type"], dict(resource["inputs"])
    source = f"{typ} {resource['name']}"
    for key in _PROVIDER_ONLY:
        inputs.pop(key, None)
    if typ in _NOT_SENT:
        return []
    if typ in _PLAIN:
        service, operation, renames, dropped = _PLAIN[typ]
        params = _shape_params(service, operation, inputs, renames, dropped)
        requests = [Request(service, operation, params, source)]
        if operation == "CreateEndpoint":  # the same endpoint, updated to a new config
            update = {k: v for k, v in params.items() if k != "Tags"}
            requests.append(Request(service, "UpdateEndpoint", update, source))
        return requests
    special = _SPECIAL.get(typ)
    if special is None:
        raise UnmappedInput(f"{source}: no translation for this resource type; add one")
    return special(inputs, source)


def _ecr_repository(inputs: dict[str, Any], source: str) -> list[Request]:
    encryption = inputs.pop("encryptionConfigurations", None) or [None]
    inputs.pop("forceDelete", None)  # provider-side: whether destroy deletes images
    if len(encryption) > 1:
        raise UnmappedInput(f"{source}: ECR takes one encryption configuration")
    if encryption[0] is not None:
        inputs["encryptionConfiguration"] = encryption[0]
    params = _shape_params("ecr", "CreateRepository", inputs, {"name": "repositoryName"}, set())
    return [Request("ecr", "CreateRepository", params, source)]


def _iam_role(inputs: dict[str, Any], source: str) -> list[Request]:
    _name_from_prefix(inputs)
    renames = {"name": "RoleName", "assumeRolePolicy": "AssumeRolePolicyDocument"}
    params = _shape_params("iam", "CreateRole", inputs, renames, set())
    return [Request("iam", "CreateRole", params, source)]


def _secret(inputs: dict[str, Any], source: str) -> list[Request]:
    _name_from_prefix(inputs)
    params = _shape_params("secretsmanager", "CreateSecret", inputs, {}, set())
    return [Request("secretsmanager", "CreateSecret", params, source)]


def _log_group(inputs: dict[str, Any], source: str) -> list[Request]:
    retention = inputs.pop("retentionInDays", None)
    params = _shape_params("logs", "CreateLogGroup", inputs, {"name": "logGroupName"}, set())
    requests = [Request("logs", "CreateLogGroup", params, source)]
    if retention is not None:
        policy = {"logGroupName": params["logGroupName"], "retentionInDays": retention}
        requests.append(Request("logs", "PutRetentionPolicy", policy, source))
    return requests


_SPECIAL = {
    "aws:ecr/repository:Repository": _ecr_repository,
    "aws:iam/role:Role": _iam_role,
    "aws:secretsmanager/secret:Secret": _secret,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
}


def _name_from_prefix(inputs: dict[str, Any]) -> None:
    """`namePrefix` becomes the name the provider generates: the prefix + 26 characters."""
    prefix = inputs.pop("namePrefix", None)
    if prefix is not None and "name" not in inputs:
        inputs["name"] = prefix + _PREFIX_SUFFIX


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def operation_model(service: str, operation: str) -> OperationModel:
    return _session().get_service_model(service).operation_model(operation)


def _shape_params(
    service: str,
    operation: str,
    inputs: dict[str, Any],
    renames: dict[str, str],
    dropped: set[str],
) -> dict[str, Any]:
    shape = operation_model(service, operation).input_shape
    renamed = {renames.get(k, k): v for k, v in inputs.items() if k not in dropped}
    return _convert(renamed, shape, f"{service}.{operation}")


def _member(shape: StructureShape, key: str) -> str | None:
    wanted = _NESTED_ALIASES.get(key, key)
    for name in shape.members:
        if name.lower() == wanted.lower():
            return name
    return None


def _convert(value: Any, shape: Shape, where: str) -> Any:
    """A Pulumi input value as the API shape wants it (member names, tag lists, lists)."""
    if value is None:
        return None
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            return value  # ParamValidator reports the type
        out: dict[str, Any] = {}
        for key, item in value.items():
            member = _member(shape, key)
            if member is None and key.endswith("s") and isinstance(item, list) and len(item) == 1:
                # Pulumi lists a block the API takes once (s3DataSources -> S3DataSource).
                member, item = _member(shape, key[:-1]), item[0]
            if member is None:
                raise UnmappedInput(f"{where}: input {key!r} has no member in {shape.name}")
            converted = _convert(item, shape.members[member], f"{where}.{member}")
            if converted is not None:
                out[member] = converted
        return out
    if isinstance(shape, ListShape):
        if isinstance(value, dict) and _is_tag_list(shape):
            keys = list(shape.member.members)  # Key/Value, or key/value (ECR)
            return [{keys[0]: k, keys[1]: v} for k, v in value.items()]
        if isinstance(value, list):
            return [_convert(v, shape.member, f"{where}[]") for v in value]
        return value
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {k: _convert(v, shape.value, f"{where}.{k}") for k, v in value.items()}
    if shape.type_name in ("integer", "long") and isinstance(value, float) and value.is_integer():
        return int(value)
    if shape.type_name in ("float", "double") and isinstance(value, int):
        return float(value)
    return value


def _is_tag_list(shape: ListShape) -> bool:
    member = shape.member
    return isinstance(member, StructureShape) and [m.lower() for m in member.members] == [
        "key",
        "value",
    ]


# -- validation -------------------------------------------------------------------------------


def check_request(request: Request) -> list[str]:
    """Every way `request` breaks its botocore model: ParamValidator + enum/max/pattern walk."""
    shape = operation_model(request.service, request.operation).input_shape
    report = ParamValidator().validate(request.params, shape)
    problems = [f"{request}: {line}" for line in report.generate_report().splitlines() if line]
    problems += [f"{request}: {p}" for p in _walk(request.params, shape, "")]
    return problems


def _walk(value: Any, shape: Shape, path: str) -> Iterator[str]:
    """Constraints ParamValidator skips: enum, max length/size, max value, pattern."""
    meta = shape.metadata
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                yield from _walk(item, shape.members[key], f"{path}.{key}" if path else key)
        return
    if isinstance(shape, ListShape) and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path}: {len(value)} items, at most {meta['max']} allowed"
        for i, item in enumerate(value):
            yield from _walk(item, shape.member, f"{path}[{i}]")
        return
    if isinstance(shape, MapShape) and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path}: {len(value)} entries, at most {meta['max']} allowed"
        for key, item in value.items():
            yield from _walk(key, shape.key, f"{path} key {key!r}")
            yield from _walk(item, shape.value, f"{path}.{key}")
        return
    if isinstance(value, str):
        yield from _string_rules(value, shape, path)
    elif _is_number(value) and "max" in meta and value > meta["max"]:
        yield f"{path}: {value} is above the maximum {meta['max']}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _string_rules(value: str, shape: Shape, path: str) -> Iterator[str]:
    meta = shape.metadata
    if value == "[secret]":
        return  # a masked secret value: its shape is the cloud's concern, not ours to print
    enum = meta.get("enum")
    if enum and value not in enum:
        yield f"{path}: {value!r} is not one of {shape.name}'s {len(enum)} values"
    if "max" in meta and len(value) > meta["max"]:
        yield f"{path}: {len(value)} characters, at most {meta['max']} allowed"
    pattern = meta.get("pattern")
    if pattern and not _pattern(pattern).fullmatch(value):
        yield f"{path}: {value!r} does not match {shape.name}'s pattern {pattern}"


@cache
def _pattern(pattern: str) -> regex.Pattern[str]:
    """The model's (Java) regex for Python: a UTF-16 surrogate range means U+10000..U+10FFFF."""
    pattern = pattern.replace(r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF")
    return regex.compile(pattern)


# -- IAM policy documents ---------------------------------------------------------------------

# IAM action prefix -> botocore service name, for the services the execution role touches.
_IAM_SERVICES = {
    "cloudwatch": "cloudwatch",
    "ec2": "ec2",
    "ecr": "ecr",
    "kms": "kms",
    "logs": "logs",
    "s3": "s3",
    "secretsmanager": "secretsmanager",
    "sts": "sts",
}
# Permission-only actions (no operation of that name): AWS Service Authorization Reference.
# s3:ListBucket authorises ListObjects/ListObjectsV2
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html).
_PERMISSION_ONLY = {"s3:ListBucket"}
_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):(?P<service>[a-z0-9-]+):"
    r"(?P<region>[a-z0-9-]*):(?P<account>\d{12}|):(?P<resource>.+)"
)
# Resource types of the ARNs the role names (service authorization reference, per service).
_RESOURCE_FORMS = {
    "ecr": r"repository/[a-z0-9][a-z0-9._/-]*",
    "logs": r"log-group:[\w./#-]+(:log-stream:[\w.*/#-]+)?(:\*)?",
    "s3": r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?",
    "secretsmanager": r"secret:[\w/+=.@?*-]+",
    "kms": r"key/[0-9a-f-]{36}",
    "cloudwatch": r"alarm:[^:]+",
    "iam": r"role/[\w+=,.@/-]+",
}
_GLOBAL = {"iam", "s3"}  # no region in their ARNs


@cache
def _operations(service: str) -> frozenset[str]:
    return frozenset(_session().get_service_model(service).operation_names)


def check_policy(document: str, region: str, *, trust: bool = False) -> list[str]:
    """Problems with an IAM policy document (or a role trust policy with `trust`)."""
    try:
        policy = json.loads(document)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    problems = []
    if policy.get("Version") != "2012-10-17":
        problems.append(f"Version {policy.get('Version')!r}: use 2012-10-17")
    statements = policy.get("Statement")
    if not isinstance(statements, list) or not statements:
        return [*problems, "Statement: a non-empty list is required"]
    for i, stmt in enumerate(statements):
        problems += [f"Statement[{i}]: {p}" for p in _statement(stmt, region, trust)]
    return problems


def _statement(stmt: dict[str, Any], region: str, trust: bool) -> Iterator[str]:
    if stmt.get("Effect") not in ("Allow", "Deny"):
        yield f"Effect {stmt.get('Effect')!r}"
    actions = stmt.get("Action")
    for action in [actions] if isinstance(actions, str) else actions or []:
        yield from _action(action)
    if trust:
        if "Principal" not in stmt:
            yield "a trust policy statement needs a Principal"
        return
    resources = stmt.get("Resource")
    if resources is None:
        yield "Resource missing"
    for arn in [resources] if isinstance(resources, str) else resources or []:
        yield from _arn(arn, region)


def _action(action: str) -> Iterator[str]:
    prefix, sep, name = action.partition(":")
    service = _IAM_SERVICES.get(prefix)
    if not sep or service is None:
        yield f"action {action!r}: unknown service prefix"
    elif action not in _PERMISSION_ONLY and name not in _operations(service):
        yield f"action {action!r}: {service} has no operation {name}"


def _arn(arn: str, region: str) -> Iterator[str]:
    if arn == "*":
        return
    match = _ARN.fullmatch(arn)
    if match is None:
        yield f"resource {arn!r} is not an ARN"
        return
    service, where = match["service"], match["region"]
    if service in _GLOBAL and where:
        yield f"resource {arn!r}: {service} ARNs carry no region"
    if service not in _GLOBAL and where != region:
        yield f"resource {arn!r}: region {where!r}, the endpoint is in {region}"
    if service != "s3" and not match["account"]:
        yield f"resource {arn!r}: no account"
    form = _RESOURCE_FORMS.get(service)
    if form is None:
        yield f"resource {arn!r}: no known resource form for {service}"
    elif not re.fullmatch(form, match["resource"]):
        yield f"resource {arn!r}: {match['resource']!r} is not a {service} resource"
