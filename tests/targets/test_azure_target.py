"""
The Azure target object: Azure's naming rules, stack config parsing, the offline credential
check, `unsupported()` reasons, and that importing it loads neither Pulumi nor an Azure SDK.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mdeploy.errors import InputError
from mdeploy.spec.models import Deployment
from mdeploy.targets import get_target
from mdeploy.targets.azure.rules import (
    AzureSettings,
    default_registry_name,
    deployment_name_for,
    endpoint_name_for,
    name_problem,
    parse_secret_ref,
    repository_name,
)
from mdeploy.targets.azure.target import TARGET, AzureTarget
from mdeploy.targets.base import EndpointArgs

_CREDENTIAL_VARS = (
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_CERTIFICATE_PATH", "ARM_CLIENT_ID", "ARM_TENANT_ID", "ARM_CLIENT_SECRET",
    "ARM_OIDC_TOKEN", "ARM_USE_OIDC", "ARM_USE_MSI", "IDENTITY_ENDPOINT", "MSI_ENDPOINT",
)  # fmt: skip


def _spec(**serving: Any) -> Deployment:
    doc = {
        "apiVersion": "mdeploy/v1",
        "kind": "Deployment",
        "metadata": {"name": serving.pop("name", "mistral-7b-chat")},
        "model": {"id": "mistralai/Mistral-7B-Instruct-v0.3"},
        "serving": serving,
    }
    return Deployment.model_validate(doc)


# ---- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("mistral-7b-chat", None),
        ("abc", None),
        ("ab", "2 characters"),
        ("a" * 33, "33 characters"),
        ("7b-chat", "begin with a letter"),
        ("chat--v1", "single dashes"),
        ("chat_v1", "single dashes"),
    ],
)
def test_name_rules(name: str, problem: str | None) -> None:
    found = name_problem(name)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_endpoint_name_adds_the_environment() -> None:
    assert endpoint_name_for("mistral-7b-chat", "default") == "mistral-7b-chat"
    assert endpoint_name_for("mistral-7b-chat", "prod") == "mistral-7b-chat-prod"
    assert endpoint_name_for("x" * 40, "prod", override="short-name") == "short-name"
    with pytest.raises(InputError, match="allows 3-32"):
        endpoint_name_for("x" * 30, "prod")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1", "v-1"),
        ("12", "v12"),
        ("2024.06-rc1", "v2024-06-rc1"),
        ("V2 beta", "v2-beta"),
        ("v2", "v-2"),
    ],
)
def test_deployment_names_meet_azure_rules(version: str, expected: str) -> None:
    name = deployment_name_for(version)
    assert name == expected
    assert name_problem(name, "deployment") is None


def test_deployment_name_is_cut_to_32() -> None:
    name = deployment_name_for("1" * 60)
    assert len(name) == 32 and name_problem(name) is None
    with pytest.raises(InputError):
        deployment_name_for("...")


def test_registry_and_repository_names(endpoint_args_azure: EndpointArgs) -> None:
    name = default_registry_name(endpoint_args_azure)
    assert name.startswith("mdeploymistral7bchat") and name.isalnum() and 5 <= len(name) <= 50
    other_env = dataclasses.replace(endpoint_args_azure, env="prod")
    assert default_registry_name(other_env) != name  # one registry per stack
    assert default_registry_name(endpoint_args_azure, "sub-1") != name
    assert repository_name(endpoint_args_azure.image) == "mdeploy/vllm"
    assert repository_name("ghcr.io/acme/My_Image:1.0") == "mdeploy/my_image"


def test_registry_repository_uses_config_or_derived_name(endpoint_args_azure: EndpointArgs) -> None:
    derived = TARGET.registry_repository(endpoint_args_azure, {})
    assert derived == f"{default_registry_name(endpoint_args_azure)}.azurecr.io/mdeploy/vllm"
    chosen = TARGET.registry_repository(endpoint_args_azure, {"mdeploy:registryName": "CorpACR"})
    assert chosen == "corpacr.azurecr.io/mdeploy/vllm"


# ---- config -----------------------------------------------------------------------------


def test_settings_defaults(endpoint_args_azure: EndpointArgs) -> None:
    s = AzureSettings.from_config({}, endpoint_args_azure)
    assert (s.public_access, s.request_timeout_ms, s.max_concurrent) == ("Enabled", 90_000, 16)
    assert s.app_insights is True and s.purge_protection is False and s.acr_pull is None


def test_settings_private_and_prod(endpoint_args_azure: EndpointArgs) -> None:
    prod = dataclasses.replace(endpoint_args_azure, env="prod", extra={"max_concurrency": 64})
    s = AzureSettings.from_config({"privateEndpoint": "true", "appInsights": "false"}, prod)
    assert s.private and s.public_access == "Disabled" and s.app_insights is False
    assert s.purge_protection is True and s.max_concurrent == 64


def test_workspace_needs_its_resource_group(endpoint_args_azure: EndpointArgs) -> None:
    with pytest.raises(InputError, match="needs mdeploy:resourceGroupName"):
        AzureSettings.from_config({"workspaceName": "mlw"}, endpoint_args_azure)


# ---- secrets ----------------------------------------------------------------------------


def test_secret_reference_forms() -> None:
    assert parse_secret_ref("A", "env:HF_TOKEN") == ("env", {"where": "HF_TOKEN"})
    assert parse_secret_ref("A", "azure-kv:corp-kv/hf/1a2b") == (
        "azure-kv", {"vault": "corp-kv", "name": "hf", "version": "1a2b"},
    )  # fmt: skip
    with pytest.raises(InputError, match="malformed azure-kv"):
        parse_secret_ref("A", "azure-kv:corp_kv/hf")
    with pytest.raises(InputError, match="cannot be resolved by Azure ML"):
        parse_secret_ref("A", "gcp-sm:projects/p/secrets/s")


# ---- unsupported ------------------------------------------------------------------------


def test_unsupported_lists_every_reason_with_a_fix() -> None:
    spec = _spec(
        name="mistral-7b-instruct-chat-assistant-eu",
        auth="none",
        secrets={"HF_TOKEN": "aws-sm:arn:aws:secretsmanager:eu-west-3:1:secret:hf"},
    )
    reasons = TARGET.unsupported(spec)
    # A long name is not a reason here: mdeploy:endpointName can fix it (checked at synth/up).
    assert set(reasons) == {"serving.auth", "serving.secrets.HF_TOKEN"}
    assert "auth: key" in reasons["serving.auth"]
    assert "azure-kv:VAULT/NAME" in reasons["serving.secrets.HF_TOKEN"]


def test_supported_spec_has_no_reasons() -> None:
    assert TARGET.unsupported(_spec(auth="iam", secrets={"HF_TOKEN": "env:HF_TOKEN"})) == {}


@pytest.mark.parametrize("ref", ["env:VLLM_KEY", "azure-kv:corp-kv/vllm-key/1a2b"])
def test_an_engine_api_key_is_refused_because_azure_authenticates(ref: str) -> None:
    # Callers send the endpoint key as the bearer: vLLM checking its own key answers 401.
    reasons = TARGET.unsupported(_spec(auth="key", secrets={"VLLM_API_KEY": ref}))
    assert set(reasons) == {"serving.secrets.VLLM_API_KEY"}
    assert "401" in reasons["serving.secrets.VLLM_API_KEY"]
    assert "auth: key" in reasons["serving.secrets.VLLM_API_KEY"]


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        # No model asset is attached: the image fetches the weights, and it has no az://
        # download, and gs:// needs the GCE metadata server, which Azure does not have.
        ("az://account/container/model", True),
        ("gs://bucket/model", True),
        ("hf://mistralai/Mistral-7B-Instruct-v0.3", False),
        ("s3://bucket/model", False),
        (None, False),
    ],
)
def test_weights_the_image_cannot_fetch_on_azure_are_unsupported(
    source: str | None, refused: bool
) -> None:
    spec = _spec()
    if source:
        spec = spec.model_copy(update={"model": spec.model.model_copy(update={"source": source})})
    reasons = TARGET.unsupported(spec)
    assert ("model.source" in reasons) is refused
    if refused:
        assert "hf://" in reasons["model.source"]


# ---- credentials ------------------------------------------------------------------------


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in _CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))
    return tmp_path


def test_no_credentials_says_what_was_looked_for(no_credentials: Path) -> None:
    ok, reason = TARGET.check_credentials()
    assert ok is False
    assert "azureProfile.json" in reason


def test_service_principal_from_environment(
    no_credentials: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", "id")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant")
    assert TARGET.check_credentials()[0] is False  # an id without a secret is not enough
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token")
    assert TARGET.check_credentials() == (
        True, "service principal from AZURE_CLIENT_ID + AZURE_FEDERATED_TOKEN_FILE",
    )  # fmt: skip


def test_pulumi_arm_variables_count(no_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sp-secret-value-8842"
    monkeypatch.setenv("ARM_CLIENT_ID", "i")
    monkeypatch.setenv("ARM_TENANT_ID", "t")
    monkeypatch.setenv("ARM_CLIENT_SECRET", secret)
    ok, reason = TARGET.check_credentials()
    assert ok and "ARM_CLIENT_SECRET" in reason
    assert secret not in reason  # names the variable, never its value


def test_az_login_profile_with_bom(no_credentials: Path) -> None:
    profile = no_credentials / "azureProfile.json"
    profile.write_text(json.dumps({"subscriptions": []}), encoding="utf-8-sig")
    assert TARGET.check_credentials()[0] is False
    profile.write_text(json.dumps({"subscriptions": [{"id": "s"}]}), encoding="utf-8-sig")
    ok, reason = TARGET.check_credentials()
    assert ok and "Azure CLI login" in reason


# ---- the target object ------------------------------------------------------------------


def test_target_registration_and_stack_config(endpoint_args_azure: EndpointArgs) -> None:
    target = get_target("azure")
    assert isinstance(target, AzureTarget) and target is TARGET
    assert target.stack_config(endpoint_args_azure) == {"azure-native:location": "francecentral"}
    assert "az login" in target.credentials_hint
    assert target.pulumi_plugins == ("azure-native",)


def test_ops_from_stack_outputs() -> None:
    endpoint_id = (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
        "/workspaces/ws/onlineEndpoints/ep"
    )
    ops = TARGET.ops({"endpoint_id": endpoint_id, "endpoint_url": "https://ep/score"})
    assert (ops.ref.workspace, ops.ref.endpoint, ops.scoring_uri) == (
        "ws",
        "ep",
        "https://ep/score",
    )


def test_importing_the_target_loads_no_cloud_sdk() -> None:
    code = (
        "import sys, mdeploy.targets.azure.target as t; t.TARGET.check_credentials(); "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_azure_native', "
        "'azure')]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
