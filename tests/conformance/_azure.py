"""
Azure ML conformance: the online endpoint and online deployment PUT bodies against ARM's own
REST model.

Authority: the validation keywords of Azure/azure-rest-api-specs machinelearningservices stable
2024-10-01 `mfe.json` (the Swagger the Azure SDKs, the `az ml` CLI and pulumi-azure-native are
generated from), vendored as schemas/azureml_online_2024-10-01.json with its commit. No
installable package carries these models without conflicting with our pins:
azure-mgmt-machinelearningservices 1.0.1 stops at api-version 2020-08-01 (no online
endpoints), and azure-ai-ml pins versions that clash with pulumi's.

The chain:
1. the real `mdeploy:azure:Endpoint` component under the recording mock engine (synth);
2. `arm_body`: a recorded OnlineEndpoint / OnlineDeployment becomes the PUT body the
   azure-native provider sends (location, tags, identity, sku, properties); the URL path
   parameters are dropped, and an input that is neither is an error, so a new input cannot
   slip past unmapped;
3. `check`: a walk of the Swagger definitions as autorest reads them: allOf inheritance,
   discriminators (x-ms-discriminator-value), required members, enums, integer formats,
   ISO 8601 durations, read-only members (the service rejects or ignores them), and
   `additionalProperties: false` (an unknown member is a typo the service would drop).

What only a real subscription shows: quota (AzureOps.quota_problem at `up`), SKU availability
per region, cross-field rules the Swagger does not state (e.g. the request timeout cap of
180 s, which AzureSettings checks), and secret-injection resolution at deployment creation.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["BODY_KEYS", "PATH_PARAMS", "arm_body", "check"]

SCHEMAS = Path(__file__).resolve().parent / "schemas"
PATH_PARAMS = {"resourceGroupName", "workspaceName", "endpointName", "deploymentName"}
BODY_KEYS = {"location", "tags", "identity", "kind", "sku", "properties"}
RESOURCES = {
    "azure-native:machinelearningservices:OnlineEndpoint": "OnlineEndpointTrackedResource",
    "azure-native:machinelearningservices:OnlineDeployment": "OnlineDeploymentTrackedResource",
}
_DURATION = re.compile(
    r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
)
_INT32 = (-(2**31), 2**31 - 1)


@cache
def _definitions() -> dict[str, Any]:
    doc = json.loads((SCHEMAS / "azureml_online_2024-10-01.json").read_text())
    return doc["definitions"]


def arm_body(resource: dict[str, Any]) -> tuple[str, dict[str, Any], list[str]]:
    """(definition name, PUT body, problems) for a recorded Azure ML resource."""
    definition = RESOURCES[resource["type"]]
    inputs = resource["inputs"]
    unmapped = sorted(set(inputs) - PATH_PARAMS - BODY_KEYS)
    problems = [f"input {k!r} is neither a URL path parameter nor a body member" for k in unmapped]
    return definition, {k: v for k, v in inputs.items() if k in BODY_KEYS}, problems


def check(value: Any, definition: str) -> list[str]:
    """Every way `value` breaks `definition` of the vendored Swagger, as 'path: problem'."""
    return _check(value, {"$ref": f"#/definitions/{definition}"}, "$")


def _check(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _check_definition(value, name, path)
    if value is None:
        return [] if schema.get("x-nullable") else [f"{path}: null is not allowed"]
    problems = _check_type(value, schema, path)
    if problems:
        return problems
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    if schema.get("type") == "object" or "properties" in schema:
        return _check_object(value, schema, path)
    return []


def _check_definition(value: Any, name: str, path: str) -> list[str]:
    definition = _definitions()[name]
    discriminator = definition.get("discriminator")
    if discriminator and isinstance(value, dict):
        sub = _subtype(name, value.get(discriminator))
        if sub is None:
            return [f"{path}.{discriminator}: {value.get(discriminator)!r} names no {name} type"]
        definition = _definitions()[sub]
    return _check(value, {**definition, "_name": name}, path)


def _subtype(base: str, tag: Any) -> str | None:
    """The definition whose x-ms-discriminator-value is `tag` and that inherits `base`."""
    for name, definition in _definitions().items():
        parents = [r["$ref"].rsplit("/", 1)[-1] for r in definition.get("allOf", [])]
        if base in parents and definition.get("x-ms-discriminator-value") == tag:
            return name
    return None


def _check_type(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    kind = schema.get("type")
    ok = {
        "object": isinstance(value, dict),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        None: True,
    }[kind]
    if not ok:
        return [f"{path}: {value!r} is not a {kind}"]
    fmt = schema.get("format")
    if fmt == "int32" and not _INT32[0] <= value <= _INT32[1]:
        return [f"{path}: {value} is outside int32"]
    if fmt == "duration" and not _DURATION.match(value):
        return [f"{path}: {value!r} is not an ISO 8601 duration"]
    return []


def _check_object(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    properties, required = _inherited(schema)
    problems = [f"{path}.{k}: required" for k in required if value.get(k) is None]
    closed = schema.get("additionalProperties") is False
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        member = properties.get(key)
        if member is None:
            if closed:
                problems.append(f"{path}.{key}: not a member of {schema.get('_name', 'object')}")
            elif isinstance(extra, dict):
                problems += _check(item, extra, f"{path}.{key}")
            continue
        if member.get("readOnly"):
            problems.append(f"{path}.{key}: read-only, never sent")
            continue
        problems += _check(item, member, f"{path}.{key}")
    return problems


def _inherited(schema: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Properties and required members of a definition and every allOf parent."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parent in schema.get("allOf", []):
        inherited, needs = _inherited(_definitions()[parent["$ref"].rsplit("/", 1)[-1]])
        properties.update(inherited)
        required += needs
    properties.update(schema.get("properties", {}))
    required += schema.get("required", [])
    return properties, required
