"""The Vertex AI target's offline rules: names, labels, settings, credentials, stack config."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mdeploy.errors import InputError
from mdeploy.spec.models import Deployment
from mdeploy.targets import get_target
from mdeploy.targets.base import EndpointArgs
from mdeploy.targets.gcp.rules import (
    GcpSettings,
    accelerator_type,
    endpoint_id,
    gcp_labels,
    image_name,
    project_from_env,
    repository_id,
    secret_id,
    service_account_id,
)
from mdeploy.targets.gcp.target import GcpTarget

DIGEST = "sha256:" + "0123456789abcdef" * 4

SA_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
REPO_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
LONG_NAME = "a" * 20 + "-" + "b" * 19  # 40 characters, the spec's maximum
GCP_ENV = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
    "GCLOUD_PROJECT",
    "CLOUDSDK_CONFIG",
    "CLOUDSDK_ACTIVE_CONFIG_NAME",
    "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No GCP variables; gcloud's config dir is an empty temporary folder."""
    for var in GCP_ENV:
        monkeypatch.delenv(var, raising=False)
    gcloud = tmp_path / "gcloud"
    gcloud.mkdir()
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(gcloud))
    return gcloud


@pytest.fixture
def make_args(endpoint_args_gcp: EndpointArgs) -> Any:
    """EndpointArgs like the shared GCP fixture, with fields overridden."""
    return lambda **changes: dataclasses.replace(endpoint_args_gcp, **changes)


def _spec(**serving: object) -> Deployment:
    model = {"id": "mistralai/Mistral-7B-Instruct-v0.3"}
    if "source" in serving:
        model["source"] = str(serving.pop("source"))
    return Deployment.model_validate(
        {
            "apiVersion": "mdeploy/v1",
            "kind": "Deployment",
            "metadata": {"name": "m"},
            "model": model,
            "serving": serving,
        }
    )


def test_get_target_returns_the_gcp_target_without_heavy_imports() -> None:
    assert isinstance(get_target("gcp"), GcpTarget)
    code = (
        "import sys; before = set(sys.modules); from mdeploy.targets import get_target; "
        "get_target('gcp'); new = set(sys.modules) - before; "
        "print(sorted(m for m in new if m.split('.')[0] in ('pulumi', 'pulumi_gcp', 'google')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("env", ["default", "prod", "a-very-long-environment-name"])
def test_names_follow_gcp_rules_even_for_the_longest_spec_name(env: str, make_args: Any) -> None:
    args = make_args(name=LONG_NAME, env=env)
    assert SA_ID.match(service_account_id(args)), service_account_id(args)
    assert REPO_ID.match(repository_id(args)), repository_id(args)
    assert re.fullmatch(r"[a-z0-9-]{1,255}", secret_id(args, "HF_TOKEN"))


def test_cut_names_stay_distinct_per_environment(make_args: Any) -> None:
    staging = service_account_id(make_args(name=LONG_NAME, env="staging"))
    prod = service_account_id(make_args(name=LONG_NAME, env="prod"))
    assert staging != prod
    assert len(staging) == len(prod) == 30


def test_short_names_are_readable(make_args: Any) -> None:
    args = make_args(name="mistral-7b-chat", env="prod")
    assert service_account_id(args) == "md-mistral-7b-chat-prod"
    assert repository_id(args) == "mdeploy-mistral-7b-chat-prod"
    assert secret_id(args, "HF_TOKEN") == "mdeploy-mistral-7b-chat-prod-hf-token"


def test_endpoint_id_is_ten_digits_stable_and_changes_with_its_inputs() -> None:
    first = endpoint_id("p", "europe-west4", "m", "default", None)
    assert re.fullmatch(r"[1-9][0-9]{9}", first)
    assert endpoint_id("p", "europe-west4", "m", "default", None) == first
    assert endpoint_id("p", "europe-west4", "m", "default", "projects/1/global/networks/v") != first


def test_gcp_labels_are_rewritten_to_the_label_rules() -> None:
    labels = gcp_labels(
        {"Team": "Platform Eng", "1cost": "x" * 80, "mdeploy-name": "m"}, managed_by="mdeploy"
    )
    assert labels["team"] == "platform-eng"
    assert labels["managed-by"] == "mdeploy"
    assert all(LABEL.match(k) and LABEL_VALUE.match(v) for k, v in labels.items()), labels
    assert len(labels["l-1cost"]) == 63


def test_gcp_labels_keep_at_most_64() -> None:
    assert len(gcp_labels({f"k{i}": "v" for i in range(80)})) == 64


def test_image_name_drops_registry_tag_and_digest() -> None:
    assert image_name(f"registry.example.com/mdeploy/vllm@{DIGEST}") == "vllm"
    assert image_name("localhost:5000/team/vllm-openai:v0.6") == "vllm-openai"


def test_accelerator_type_from_offer_then_gpu_name(make_args: Any) -> None:
    assert accelerator_type(make_args(gpu="L4", extra={"accelerator_type": "NVIDIA_L4"})) == (
        "NVIDIA_L4"
    )
    assert accelerator_type(make_args(gpu="A100-80GB", extra={})) == "NVIDIA_A100_80GB"
    assert accelerator_type(make_args(gpu="h100", extra={})) == "NVIDIA_H100_80GB"
    with pytest.raises(InputError, match="MI300X"):
        accelerator_type(make_args(gpu="MI300X", extra={}))


def test_accelerator_names_exist_in_the_sdk_enum() -> None:
    from google.cloud.aiplatform_v1.types import accelerator_type as enum_module

    from mdeploy.targets.gcp import rules

    known = {member.name for member in enum_module.AcceleratorType}
    assert set(rules._ACCELERATORS.values()) <= known


def test_settings_parse_and_check() -> None:
    config = {
        "project": "p-123456",
        "dedicatedEndpoint": "true",
        "acceleratorDutyCycle": "70",
        "serviceAccountEmail": "run@p-123456.iam.gserviceaccount.com",
    }
    settings = GcpSettings.from_stack(config)
    assert settings.dedicated_endpoint is True
    assert settings.accelerator_duty_cycle == 70
    assert GcpSettings.from_stack({}) == GcpSettings()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"dedicatedEndpoint": "maybe"}, "dedicatedEndpoint"),
        ({"acceleratorDutyCycle": "150"}, "1–100"),
        ({"repositoryKeepVersions": "ten"}, "whole number"),
        ({"network": "default"}, "project number"),
        ({"serviceAccountEmail": "someone@gmail.com"}, "service account"),
        (
            {"network": "projects/123/global/networks/vpc", "dedicatedEndpoint": "true"},
            "exclude each other",
        ),
    ],
)
def test_settings_refuse_bad_values(config: dict[str, str], message: str) -> None:
    with pytest.raises(InputError) as err:
        GcpSettings.from_stack(config)
    assert message in err.value.message + (err.value.hint or "")


def test_no_credentials(clean_env: Path) -> None:
    ok, reason = GcpTarget().check_credentials()
    assert not ok
    assert "Application Default Credentials" in reason


def test_credentials_file_missing(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(clean_env / "nope.json"))
    ok, reason = GcpTarget().check_credentials()
    assert not ok
    assert "nope.json" in reason


def test_credentials_without_project(clean_env: Path) -> None:
    (clean_env / "application_default_credentials.json").write_text("{}")
    ok, reason = GcpTarget().check_credentials()
    assert not ok
    assert "GOOGLE_CLOUD_PROJECT" in reason


def test_credentials_and_project_from_env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = clean_env / "key.json"
    key.write_text(json.dumps({"type": "service_account"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    ok, reason = GcpTarget().check_credentials()
    assert ok
    assert "env-project" in reason
    assert "{" not in reason  # the key file's content is never shown


def test_project_from_gcloud_active_configuration(clean_env: Path) -> None:
    (clean_env / "active_config").write_text("work\n")
    (clean_env / "configurations").mkdir()
    (clean_env / "configurations" / "config_work").write_text("[core]\nproject = from-gcloud\n")
    assert project_from_env() == "from-gcloud"


def test_stack_config_region_and_known_project(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, endpoint_args_gcp: EndpointArgs
) -> None:
    target = GcpTarget()
    assert target.stack_config(endpoint_args_gcp) == {"gcp:region": "europe-west4"}
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-proj-123")
    assert target.stack_config(endpoint_args_gcp) == {
        "gcp:region": "europe-west4",
        "gcp:project": "my-proj-123",
    }


def test_registry_repository_is_in_the_endpoint_region(
    clean_env: Path, endpoint_args_gcp: EndpointArgs
) -> None:
    target = GcpTarget()
    repo = target.registry_repository(endpoint_args_gcp, {"gcp:project": "my-proj-123"})
    assert repo == ("europe-west4-docker.pkg.dev/my-proj-123/mdeploy-mistral-7b-chat-default/vllm")
    existing = target.registry_repository(
        endpoint_args_gcp, {"gcp:project": "my-proj-123", "mdeploy:existingRepository": "shared"}
    )
    assert existing == "europe-west4-docker.pkg.dev/my-proj-123/shared/vllm"
    with pytest.raises(InputError, match="project"):
        target.registry_repository(endpoint_args_gcp, {})


def test_unsupported_features_come_with_reasons() -> None:
    target = GcpTarget()
    assert target.unsupported(_spec(auth="iam", secrets={"HF_TOKEN": "gcp-sm:hf"})) == {}
    problems = target.unsupported(
        _spec(auth="none", secrets={"K": "aws-sm:arn:aws:secretsmanager:x"}, source="s3://b/m")
    )
    assert set(problems) == {"serving.auth", "serving.secrets.K", "model.source"}
    assert "gcp-sm" in problems["serving.secrets.K"]
    assert "gs://" in problems["model.source"]


@pytest.mark.parametrize("ref", ["env:VLLM_KEY", "gcp-sm:vllm-key"])
def test_an_engine_api_key_is_refused_because_vertex_authenticates(ref: str) -> None:
    # Callers send a Google OAuth token as the bearer: vLLM checking its own key answers 401.
    problems = GcpTarget().unsupported(_spec(auth="iam", secrets={"VLLM_API_KEY": ref}))
    assert set(problems) == {"serving.secrets.VLLM_API_KEY"}
    assert "401" in problems["serving.secrets.VLLM_API_KEY"]
