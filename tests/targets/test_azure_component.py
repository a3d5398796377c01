"""
AzureEndpoint under Pulumi mocks: the resource graph it declares, checked resource by resource.

The shared `pulumi_mocks` session answers with the inputs; `azure` adds what Azure computes
(the endpoint identity's principal id, the scoring URI, Key Vault and secret URIs) and records
what the component passes to `register_outputs`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pulumi.runtime import rpc

from mdeploy.deploy import mocks
from mdeploy.errors import InputError
from mdeploy.serve import contract
from mdeploy.targets.azure.component import (
    ACR_PULL_ROLE,
    KV_SECRETS_USER_ROLE,
    TYPE_TOKEN,
    AzureEndpoint,
    probe_settings,
)
from mdeploy.targets.azure.target import TARGET
from mdeploy.targets.base import EndpointArgs

ML = "azure-native:machinelearningservices"
ENDPOINT, DEPLOYMENT, ENVIRONMENT = (
    f"{ML}:OnlineEndpoint",
    f"{ML}:OnlineDeployment",
    f"{ML}:EnvironmentVersion",
)
WORKSPACE, REGISTRY = f"{ML}:Workspace", "azure-native:containerregistry:Registry"
SECRET, ROLE = "azure-native:keyvault:Secret", "azure-native:authorization:RoleAssignment"
TRAFFIC = "pulumi-python:dynamic/azure:EndpointTraffic"
PRINCIPAL = "11111111-2222-3333-4444-555555555555"
TOKEN_VALUE = "hf_abcdefghijklmnopqrstuvwxyz0123456789"  # shaped like a real token on purpose
SIG_KEY = rpc._special_sig_key  # Pulumi's wire marker for special values...
SECRET_SIG = rpc._special_secret_sig  # ...and the one meaning "secret"


def _computed(typ: str, inputs: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """What Azure fills in after creation, as plausible values."""
    if typ == ENDPOINT:
        out["identity"] = {**inputs.get("identity", {}), "principalId": PRINCIPAL}
        host = f"{inputs['endpointName']}.{inputs['location']}.inference.ml.azure.com"
        out["properties"] = {**inputs["properties"], "scoringUri": f"https://{host}/score"}
    elif typ == "azure-native:keyvault:Vault":
        out["name"] = "vaultmock01"
        out["properties"] = {"vaultUri": "https://vaultmock01.vault.azure.net/"}
    elif typ == SECRET:
        uri = f"https://vaultmock01.vault.azure.net/secrets/{inputs['secretName']}/0a1b2c"
        out["properties"] = {"secretUri": uri.rsplit("/", 1)[0], "secretUriWithVersion": uri}
    return out


@pytest.fixture
def azure(pulumi_mocks: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shared mock session, with Azure-computed outputs and recorded component outputs."""
    monkeypatch.setenv("HF_TOKEN", TOKEN_VALUE)
    original = pulumi_mocks.mocks.new_resource

    def new_resource(args: Any) -> tuple[str, dict]:
        id_, out = original(args)
        return id_, _computed(args.typ, dict(args.inputs), dict(out))

    monkeypatch.setattr(pulumi_mocks.mocks, "new_resource", new_resource)
    pulumi_mocks.registered = {}
    register = pulumi_mocks.monitor.RegisterResourceOutputs

    def record(request: Any) -> Any:
        pulumi_mocks.registered[request.urn] = rpc.deserialize_properties(request.outputs)
        return register(request)

    monkeypatch.setattr(pulumi_mocks.monitor, "RegisterResourceOutputs", record)
    return pulumi_mocks


def _run(azure: Any, args: EndpointArgs, config: dict[str, str] | None = None) -> AzureEndpoint:
    if config:
        azure.set_config({f"mdeploy:{k}": v for k, v in config.items()})
    return azure.run(lambda: AzureEndpoint("ep", args))


def _props(resource: Any) -> dict[str, Any]:
    return resource.inputs["properties"]


def _unwrap(value: Any) -> Any:
    """Recorded inputs with Pulumi's secret wrappers removed (for reading, not for checks)."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return _unwrap(value["value"])
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


# ---- image and routes -------------------------------------------------------------------


def test_environment_holds_the_image_by_digest_in_acr(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    comp = _run(azure, endpoint_args_azure)
    registry = azure.one(REGISTRY)
    login = f"{registry.inputs['registryName']}.azurecr.io"
    digest = endpoint_args_azure.image_digest
    image = _props(azure.one(ENVIRONMENT))["image"]
    assert image == f"{login}/mdeploy/vllm@{digest}"
    assert azure.resolve(comp.image) == image
    assert azure.resolve(comp.repository_url) == f"{login}/mdeploy/vllm"
    # The registry the image lands in is the one registry_repository() names offline.
    assert TARGET.registry_repository(endpoint_args_azure, {}) == f"{login}/mdeploy/vllm"
    assert comp.repository is not None
    assert registry.inputs["adminUserEnabled"] is False
    assert registry.inputs["anonymousPullEnabled"] is False


def test_routes_and_port_are_the_adapter_contract(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    _run(azure, endpoint_args_azure)
    config = _props(azure.one(ENVIRONMENT))["inferenceConfig"]
    azure_contract = contract.contract_for("azureml", {})
    assert config["livenessRoute"] == {"port": azure_contract.port, "path": azure_contract.liveness}
    assert config["readinessRoute"] == {
        "port": azure_contract.port,
        "path": azure_contract.readiness,
    }
    assert config["scoringRoute"] == {"port": azure_contract.port, "path": azure_contract.inference}
    env = _props(azure.one(DEPLOYMENT))["environmentVariables"]
    assert env["MDEPLOY_PLATFORM"] == "azureml"  # the adapter serves the Azure ML routes


def test_engine_settings_reach_the_container(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    _run(azure, endpoint_args_azure)
    env = _props(azure.one(DEPLOYMENT))["environmentVariables"]
    assert json.loads(env["MDEPLOY_ENGINE_ARGS"]) == list(endpoint_args_azure.engine_args)
    assert env["MDEPLOY_MODEL_ID"] == endpoint_args_azure.model_id
    assert env["MDEPLOY_MODEL_SOURCE"] == endpoint_args_azure.model_source
    assert env["MDEPLOY_MODEL_REVISION"] == endpoint_args_azure.model_revision
    assert env["MDEPLOY_SERVED_MODEL_NAME"] == endpoint_args_azure.served_model_name


# ---- endpoint and deployment --------------------------------------------------------------


@pytest.mark.parametrize(("auth", "mode"), [("key", "Key"), ("iam", "AADToken")])
def test_auth_mode_mapping(
    azure: Any, endpoint_args_azure: EndpointArgs, auth: str, mode: str
) -> None:
    comp = _run(azure, dataclasses.replace(endpoint_args_azure, auth=auth))
    endpoint = azure.one(ENDPOINT)
    assert _props(endpoint)["authMode"] == mode
    assert endpoint.inputs["identity"] == {"type": "SystemAssigned"}
    assert azure.resolve(comp.auth_mode) == mode


def test_auth_none_is_refused(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    with pytest.raises(InputError, match="always authenticate"):
        _run(azure, dataclasses.replace(endpoint_args_azure, auth="none"))


def test_public_access_is_on_by_default(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    _run(azure, endpoint_args_azure)
    assert _props(azure.one(ENDPOINT))["publicNetworkAccess"] == "Enabled"
    assert azure.one(REGISTRY).inputs["sku"] == {"name": "Standard"}
    assert "managedNetwork" not in azure.one(WORKSPACE).inputs


def test_private_endpoint_turns_public_access_off(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    _run(azure, endpoint_args_azure, {"privateEndpoint": "true"})
    assert _props(azure.one(ENDPOINT))["publicNetworkAccess"] == "Disabled"
    workspace = azure.one(WORKSPACE).inputs
    assert workspace["publicNetworkAccess"] == "Disabled"
    assert workspace["managedNetwork"]["isolationMode"] == "AllowInternetOutbound"
    assert azure.one(REGISTRY).inputs["sku"] == {"name": "Premium"}
    assert (
        azure.one("azure-native:storage:StorageAccount").inputs["publicNetworkAccess"] == "Disabled"
    )


def test_explicit_public_access_and_egress_settings(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    _run(azure, endpoint_args_azure,
         {"publicNetworkAccess": "disabled", "egressPublicNetworkAccess": "Disabled"})  # fmt: skip
    assert _props(azure.one(ENDPOINT))["publicNetworkAccess"] == "Disabled"
    assert _props(azure.one(DEPLOYMENT))["egressPublicNetworkAccess"] == "Disabled"


def test_deployment_shape(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    args = dataclasses.replace(endpoint_args_azure, replicas_min=3, model_version="2024.06")
    comp = _run(azure, args)
    deployment = azure.one(DEPLOYMENT)
    props = _props(deployment)
    assert deployment.inputs["deploymentName"] == "v2024-06" == azure.resolve(comp.deployment_name)
    assert deployment.inputs["sku"] == {"name": "Default", "capacity": 3}
    assert props["endpointComputeType"] == "Managed"
    assert props["instanceType"] == "Standard_NC24ads_A100_v4"
    assert props["scaleSettings"] == {"scaleType": "Default"}
    assert props["appInsightsEnabled"] is True
    assert props["environmentId"] == azure.one(ENVIRONMENT).urn.split("::")[-1] + "-id"


def test_request_settings_default_to_90_s_and_spec_concurrency(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    args = dataclasses.replace(endpoint_args_azure, extra={"max_concurrency": 32})
    _run(azure, args)
    settings = _props(azure.one(DEPLOYMENT))["requestSettings"]
    assert settings["requestTimeout"] == "PT90S"
    assert settings["maxConcurrentRequestsPerInstance"] == 32  # not Azure's default of 1


def test_request_settings_from_config(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    _run(azure, endpoint_args_azure,
         {"requestTimeoutMs": "180000", "maxConcurrentRequestsPerInstance": "8"})  # fmt: skip
    settings = _props(azure.one(DEPLOYMENT))["requestSettings"]
    assert settings == {
        **settings,
        "requestTimeout": "PT180S",
        "maxConcurrentRequestsPerInstance": 8,
    }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("requestTimeoutMs", "200000", "1000-180000"),
        ("privateEndpoint", "maybe", "true or false"),
        ("publicNetworkAccess", "Open", "Enabled or Disabled"),
        ("maxConcurrentRequestsPerInstance", "-3", "at least 1"),
        ("maxConcurrentRequestsPerInstance", "1.5", "whole number"),
        ("privateEndpoints", "true", "unknown stack config"),
    ],
)
def test_bad_config_is_refused_with_its_key(
    azure: Any, endpoint_args_azure: EndpointArgs, key: str, value: str, message: str
) -> None:
    with pytest.raises(InputError, match=message) as err:
        _run(azure, endpoint_args_azure, {key: value})
    assert f"mdeploy:{key}" in err.value.message
    assert azure.resources[1:] == []  # refused before any child resource


@pytest.mark.parametrize("startup", [600, 1800, 3600])
def test_probes_are_sized_from_the_startup_budget(
    azure: Any, endpoint_args_azure: EndpointArgs, startup: int
) -> None:
    _run(azure, dataclasses.replace(endpoint_args_azure, startup_timeout_s=startup))
    props = _props(azure.one(DEPLOYMENT))
    live, ready = props["livenessProbe"], props["readinessProbe"]

    def seconds(duration: str) -> float:
        return float(duration.removeprefix("PT").removesuffix("S"))

    # No liveness probe (no restart) before the model has had its whole budget to load...
    assert seconds(live["initialDelay"]) >= startup
    # ...and readiness keeps trying for at least as long before Azure gives up.
    window = seconds(ready["initialDelay"]) + seconds(ready["period"]) * ready["failureThreshold"]
    assert window >= startup
    assert seconds(ready["initialDelay"]) < 60  # a model that loads fast is routable fast
    assert seconds(live["timeout"]) > 2  # Azure's 2 s default is tight under load


def test_probe_settings_scale_with_the_budget() -> None:
    short, long = probe_settings(600), probe_settings(3600)
    assert short[1].failure_threshold < long[1].failure_threshold
    assert short[0].initial_delay == "PT600S" and long[0].initial_delay == "PT3600S"


# ---- secrets ----------------------------------------------------------------------------


def test_env_secret_lives_in_key_vault_and_the_deployment_only_references_it(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    _run(azure, endpoint_args_azure)
    secret = azure.one(SECRET)
    assert secret.inputs["properties"][SIG_KEY] == SECRET_SIG
    assert _unwrap(secret.inputs["properties"])["value"] == TOKEN_VALUE
    env = _props(azure.one(DEPLOYMENT))["environmentVariables"]
    uri = f"https://vaultmock01.vault.azure.net/secrets/{secret.inputs['secretName']}/0a1b2c"
    assert env["HF_TOKEN"] == f"${{{{keyvault:{uri}}}}}"


def test_no_secret_value_appears_outside_a_secret(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    _run(azure, endpoint_args_azure)
    for resource in azure.resources:
        plain = json.dumps(_strip_secrets(resource.inputs))
        assert TOKEN_VALUE not in plain, f"{resource.type} {resource.name} holds the token"
    for outputs in azure.registered.values():
        assert TOKEN_VALUE not in json.dumps(outputs, default=str)


def _strip_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return "[secret]"
        return {k: _strip_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_secrets(v) for v in value]
    return value


def test_endpoint_identity_reads_the_vault(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    _run(azure, endpoint_args_azure)
    (grant,) = [
        r for r in azure.by_type(ROLE) if KV_SECRETS_USER_ROLE in r.inputs["roleDefinitionId"]
    ]
    assert grant.inputs["principalId"] == PRINCIPAL
    assert grant.inputs["principalType"] == "ServicePrincipal"
    assert grant.inputs["scope"] == "vault-id"
    assert grant.inputs["roleDefinitionId"].startswith("/subscriptions/")
    # Injection happens when the deployment is created: the grant must exist by then.
    assert grant.urn in azure.one(DEPLOYMENT).depends_on


def test_key_vault_references_stay_in_their_vault(
    azure: Any, endpoint_args_azure: EndpointArgs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ARM's secret GET (no value) names the current version; the mock answers like ARM.
    current = "https://corp-vault.vault.azure.net/secrets/hf-token/0a1b2c"
    monkeypatch.setitem(
        mocks._INVOKES,
        "azure-native:keyvault:getSecret",
        {"properties": {"secretUriWithVersion": current}},
    )
    args = dataclasses.replace(
        endpoint_args_azure,
        secrets={
            "HF_TOKEN": "azure-kv:corp-vault/hf-token",
            "API_KEY": "azure-kv:corp-vault/api/9f8e",
        },
    )
    _run(azure, args, {"resourceGroupName": "rg-shared"})
    assert azure.by_type(SECRET) == []
    env = _props(azure.one(DEPLOYMENT))["environmentVariables"]
    # Only the versioned URI is a documented secret-injection pattern (azure-ai-docs
    # how-to-deploy-online-endpoint-with-secret-injection): an unversioned one is resolved.
    assert env["HF_TOKEN"] == "${{keyvault:" + current + "}}"
    assert env["API_KEY"] == "${{keyvault:https://corp-vault.vault.azure.net/secrets/api/9f8e}}"
    (lookup,) = [a for t, a in azure.mocks.calls if t == "azure-native:keyvault:getSecret"]
    assert lookup == {
        "resourceGroupName": "rg-shared",
        "vaultName": "corp-vault",
        "secretName": "hf-token",
    }
    (grant,) = [
        r for r in azure.by_type(ROLE) if KV_SECRETS_USER_ROLE in r.inputs["roleDefinitionId"]
    ]
    assert grant.inputs["scope"].endswith(
        "/resourceGroups/rg-shared/providers/Microsoft.KeyVault/vaults/corp-vault"
    )


def test_missing_local_secret_is_left_out_with_a_warning(
    azure: Any, endpoint_args_azure: EndpointArgs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    _run(azure, endpoint_args_azure)
    assert azure.by_type(SECRET) == []
    assert "HF_TOKEN" not in _props(azure.one(DEPLOYMENT))["environmentVariables"]


def test_secret_managers_of_other_clouds_are_refused(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    args = dataclasses.replace(endpoint_args_azure, secrets={"HF_TOKEN": "aws-sm:arn:aws:x"})
    with pytest.raises(InputError, match=r"serving\.secrets\.HF_TOKEN"):
        _run(azure, args)


# ---- traffic, graph, outputs ------------------------------------------------------------


def test_traffic_is_set_only_after_the_deployment_exists(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    _run(azure, endpoint_args_azure)
    endpoint, deployment, traffic = azure.one(ENDPOINT), azure.one(DEPLOYMENT), azure.one(TRAFFIC)
    assert "traffic" not in _props(endpoint)  # never set at endpoint creation
    assert deployment.urn in traffic.depends_on
    assert endpoint.urn in traffic.depends_on
    assert traffic.inputs["traffic"] == {deployment.inputs["deploymentName"]: 100}
    assert traffic.inputs["endpoint_id"] == "endpoint-id"
    order = [r.urn for r in azure.resources]
    assert order.index(deployment.urn) < order.index(traffic.urn)


def test_every_child_is_parented_to_the_component(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    comp = _run(azure, endpoint_args_azure)
    urn = azure.resolve(comp.urn)
    (component,) = [r for r in azure.resources if r.type == TYPE_TOKEN]
    children = [r for r in azure.resources if r is not component]
    assert len(children) >= 12
    assert all(r.parent == urn for r in children), [r.name for r in children if r.parent != urn]


def test_outputs_are_registered(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    comp = _run(azure, endpoint_args_azure)
    outputs = azure.registered[azure.resolve(comp.urn)]
    assert outputs["endpoint_name"] == "mistral-7b-chat"
    assert (
        outputs["endpoint_url"]
        == "https://mistral-7b-chat.francecentral.inference.ml.azure.com/score"
    )
    assert outputs["image"] == azure.resolve(comp.image)
    assert outputs["repository_url"] == azure.resolve(comp.repository_url)
    assert outputs["deployment_name"] == "v-1"
    assert outputs["workspace_name"] == "mlw-mistral-7b-chat"
    assert outputs["resource_group_name"] == "mdeploy-mistral-7b-chat"
    assert outputs["auth_mode"] == "Key"
    assert outputs["endpoint_id"] == "endpoint-id"


def test_created_workspace_has_secure_dependencies(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    _run(azure, endpoint_args_azure)
    storage = azure.one("azure-native:storage:StorageAccount").inputs
    assert storage["enableHttpsTrafficOnly"] is True
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert storage["allowBlobPublicAccess"] is False
    vault = azure.one("azure-native:keyvault:Vault").inputs["properties"]
    assert vault["enableRbacAuthorization"] is True and vault["enableSoftDelete"] is True
    assert "enablePurgeProtection" not in vault  # default env: Azure refuses an explicit false
    insights = azure.one("azure-native:applicationinsights:Component").inputs
    assert insights["workspaceResourceId"] == "logs-id"
    workspace = azure.one(WORKSPACE).inputs
    assert workspace["containerRegistry"] == "registry-id"
    # Azure ML grants AcrPull on the workspace's registry itself; a second grant would clash.
    assert not [r for r in azure.by_type(ROLE) if ACR_PULL_ROLE in r.inputs["roleDefinitionId"]]


def test_prod_turns_on_purge_protection(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    comp = _run(azure, dataclasses.replace(endpoint_args_azure, env="prod"))
    vault = azure.one("azure-native:keyvault:Vault").inputs["properties"]
    assert vault["enablePurgeProtection"] is True
    assert azure.resolve(comp.endpoint_name) == "mistral-7b-chat-prod"


def test_existing_workspace_and_registry_are_used_not_created(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    config = {
        "resourceGroupName": "rg-ml",
        "workspaceName": "mlw-shared",
        "registryName": "corpacr",
    }
    comp = _run(azure, endpoint_args_azure, config)
    created = {r.type for r in azure.resources if not r.read}
    assert not created & {WORKSPACE, "azure-native:storage:StorageAccount",
                          "azure-native:resources:ResourceGroup"}  # fmt: skip
    (registry,) = azure.by_type(REGISTRY)
    assert registry.read is True
    assert comp.repository is not None
    assert azure.one(DEPLOYMENT).inputs["workspaceName"] == "mlw-shared"
    assert azure.one(DEPLOYMENT).inputs["resourceGroupName"] == "rg-ml"
    (pull,) = [r for r in azure.by_type(ROLE) if ACR_PULL_ROLE in r.inputs["roleDefinitionId"]]
    assert pull.inputs["principalId"] == PRINCIPAL
    assert pull.inputs["scope"].endswith(
        "/resourceGroups/rg-ml/providers/Microsoft.ContainerRegistry/registries/corpacr"
    )


def test_acr_pull_can_be_turned_off(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    config = {"resourceGroupName": "rg-ml", "workspaceName": "mlw-shared", "acrPull": "false"}
    _run(azure, endpoint_args_azure, config)
    assert not [r for r in azure.by_type(ROLE) if ACR_PULL_ROLE in r.inputs["roleDefinitionId"]]


# ---- names ------------------------------------------------------------------------------


def test_too_long_a_name_is_a_clear_error(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    long_name = "mistral-7b-instruct-chat-assistant"  # 34 characters
    with pytest.raises(InputError, match="34 characters; Azure ML allows 3-32") as err:
        _run(azure, dataclasses.replace(endpoint_args_azure, name=long_name))
    assert "mdeploy:endpointName" in (err.value.hint or "")


def test_environment_suffix_counts_toward_the_limit(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    args = dataclasses.replace(endpoint_args_azure, name="a" * 28, env="staging")
    with pytest.raises(InputError, match="36 characters"):
        _run(azure, args)


def test_endpoint_name_override(azure: Any, endpoint_args_azure: EndpointArgs) -> None:
    comp = _run(azure, endpoint_args_azure, {"endpointName": "mistral-fr-01"})
    assert azure.one(ENDPOINT).inputs["endpointName"] == "mistral-fr-01"
    assert azure.resolve(comp.endpoint_name) == "mistral-fr-01"


def test_replicas_beyond_azure_limit_are_refused(
    azure: Any, endpoint_args_azure: EndpointArgs
) -> None:
    with pytest.raises(InputError, match="1-50 instances"):
        _run(azure, dataclasses.replace(endpoint_args_azure, replicas_min=60, replicas_max=60))
