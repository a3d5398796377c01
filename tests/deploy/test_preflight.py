"""
`up`'s pre-flight, against the fake Pulumi CLI: secrets on every target, quota, the image.

Every refusal must come before the first Pulumi call (`fake_pulumi.calls() == []`): nothing
is created. The image checks run against a real Distribution registry on 127.0.0.1 and real
skopeo (made insecure through a registries.conf, as an operator would for a local registry).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from image.helpers import Registry, make_oci_image, need, push_oci, start_registry, stop

from mdeploy.errors import CloudError
from mdeploy.image.manifests import DOCKER_V2S2, OCI_MANIFEST
from mdeploy.targets.aws.target import AwsTarget
from mdeploy.targets.base import QuotaProblem
from mdeploy.targets.kubernetes.target import KubernetesTarget

stack_mod = importlib.import_module("mdeploy.deploy.stack")
replicate_mod = importlib.import_module("mdeploy.image.replicate")
image_mod = importlib.import_module("mdeploy.image")


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The image each `up` hands to the stack program (recorded as the stack is opened)."""
    seen: list[str] = []
    real = stack_mod.open_stack

    def spy(op: Any, **kwargs: Any) -> Any:
        seen.append(op.resolved.args.image)
        return real(op, **kwargs)

    monkeypatch.setattr(stack_mod, "open_stack", spy)
    return seen


@pytest.fixture
def aws_creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE12")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")


@pytest.fixture
def all_creds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_creds: None) -> None:
    """Offline-valid credentials for every target (files and variables only)."""
    key = tmp_path / "sa.json"
    key.write_text("{}")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "mock-project")
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-a-secret")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    need("docker-registry", "skopeo")
    reg = start_registry(tmp_path_factory.mktemp("preflight-registry"))
    yield reg
    stop(reg.proc)


@pytest.fixture
def insecure_registry(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """up reads the plain-HTTP test registry: the real skopeo inspect, with --tls-verify=false."""
    real = replicate_mod.inspect_image
    monkeypatch.setattr(replicate_mod, "inspect_image", functools.partial(real, insecure=True))
    monkeypatch.setenv("HOME", str(tmp_path))  # no auth file of the machine's user
    return registry


def _oci_image(registry: Registry, tmp_path: Path) -> tuple[str, str, str]:
    """(repo, tag, digest of one platform's OCI manifest) pushed to the registry."""
    layout = tmp_path / "layout"
    make_oci_image(layout, "v1", {"hello.txt": b"an OCI image\n"})
    repo = registry.repo("oci")
    push_oci(layout, "v1", f"{repo}:v1")
    index = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{repo}:v1"],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    child = json.loads(index)["manifests"][0]["digest"]
    return repo, "v1", child


def _with_image(spec_file: Path, image: str | None) -> None:
    text = spec_file.read_text()
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("image:"))
    value = "null" if image is None else image
    spec_file.write_text(text.replace(line, f"  image: {value}"))


# --- secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["aws", "azure", "gcp", "coreweave"])
@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_or_empty_env_secret_is_exit_3_on_every_target(
    cli, fake_pulumi, spec_file, monkeypatch, all_creds, target, value
):
    if value is None:
        monkeypatch.delenv("HF_TOKEN")
    else:
        monkeypatch.setenv("HF_TOKEN", value)
    result = cli("up", spec_file, "-t", target, "--yes")
    assert result.exit_code == 3, result.stderr
    assert "env:HF_TOKEN is" in result.stderr
    assert fake_pulumi.calls() == []


def test_unreadable_file_secret_is_exit_3(cli, fake_pulumi, spec_file, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("x")
    secret.chmod(0)
    spec_file.write_text(spec_file.read_text().replace("env:HF_TOKEN", f"file:{secret}"))
    if os.access(secret, os.R_OK):  # root reads anything
        pytest.skip("running as root: every file is readable")
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 3 and "is not readable" in result.stderr
    assert fake_pulumi.calls() == []


# --- quota -------------------------------------------------------------------------------


def test_quota_problem_is_exit_3_before_anything_is_created(
    cli, fake_pulumi, spec_file, monkeypatch
):
    problem = QuotaProblem("GPUs per cluster", 2, 0, "ask your cluster admin")
    monkeypatch.setattr(KubernetesTarget, "quota_problem", lambda self, args: problem)
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 3, result.stderr
    assert "quota 'GPUs per cluster': needs 2, 0 available" in result.stderr
    assert "ask your cluster admin" in result.stderr
    assert fake_pulumi.calls() == []


def test_secrets_are_checked_before_the_quota(cli, fake_pulumi, spec_file, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    problem = QuotaProblem("GPUs", 2, 0, "ask")
    monkeypatch.setattr(KubernetesTarget, "quota_problem", lambda self, args: problem)
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 3 and "HF_TOKEN" in result.stderr
    assert "quota" not in result.stderr


def _unknown(self: Any, args: Any) -> None:
    raise CloudError("service quotas unreachable")


def test_unknown_quota_warns_and_strict_quota_refuses(cli, fake_pulumi, spec_file, monkeypatch):
    monkeypatch.setattr(KubernetesTarget, "quota_problem", _unknown)
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "warning: quota unknown (service quotas unreachable)" in result.stderr
    fake_pulumi.state.joinpath("calls.jsonl").unlink()
    strict = cli("up", spec_file, "-t", "coreweave", "--yes", "--strict-quota")
    assert strict.exit_code == 3 and "quota unknown" in strict.stderr
    assert fake_pulumi.calls() == []


# --- the image ---------------------------------------------------------------------------


@pytest.mark.tools
def test_oci_manifest_is_refused_for_aws_and_accepted_for_kubernetes(
    cli, fake_pulumi, spec_file, insecure_registry, tmp_path, aws_creds, deployed
):
    repo, _, digest = _oci_image(insecure_registry, tmp_path)
    _with_image(spec_file, f"{repo}@{digest}")
    refused = cli("up", spec_file, "-t", "aws", "--yes", "-c", "mdeploy:awsAccountId=123456789012")
    assert refused.exit_code == 4, refused.stderr
    assert f"refuses manifest media type {OCI_MANIFEST}" in refused.stderr
    assert DOCKER_V2S2 in refused.stderr and "mdeploy image build --push" in refused.stderr
    assert fake_pulumi.calls() == [] and deployed == []

    accepted = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert accepted.exit_code == 0, accepted.stderr
    assert deployed == [f"{repo}@{digest}"]


@pytest.mark.tools
def test_a_tag_is_deployed_as_its_digest(
    cli, fake_pulumi, spec_file, insecure_registry, tmp_path, deployed
):
    repo, tag, _ = _oci_image(insecure_registry, tmp_path)
    _with_image(spec_file, f"{repo}:{tag}")
    index_digest = replicate_mod.inspect_image(f"{repo}:{tag}")[0]
    result = cli("up", spec_file, "-t", "coreweave", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert deployed == [f"{repo}@{index_digest}"]
    assert json.loads(result.stdout)["image"] == f"{repo}@{index_digest}"  # CI can read it


def test_a_tag_that_cannot_be_resolved_is_exit_3(cli, fake_pulumi, spec_file, monkeypatch):
    def unreachable(ref: str) -> Any:
        raise CloudError("dial tcp: connection refused")

    monkeypatch.setattr(replicate_mod, "inspect_image", unreachable)
    _with_image(spec_file, "registry.example/team/vllm:latest")
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 3, result.stderr
    assert "cannot be read from its registry" in result.stderr
    assert fake_pulumi.calls() == []


def test_no_image_and_no_repository_prints_the_build_line(cli, fake_pulumi, spec_file):
    _with_image(spec_file, None)
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 3, result.stderr
    assert f"mdeploy image build --spec {spec_file} --push REGISTRY/REPO:TAG" in result.stderr
    assert "mdeploy:imageRepository" in result.stderr
    assert fake_pulumi.calls() == []


def test_no_image_with_a_repository_builds_pushes_and_deploys_the_digest(
    cli, fake_pulumi, spec_file, monkeypatch, deployed
):
    built: list[Any] = []
    digest = "sha256:" + "c0" * 32

    def fake_build(request: Any) -> Any:
        built.append(request)
        from mdeploy.image import BuildResult

        return BuildResult(
            tool="buildah", tag=request.tag, image_id="sha256:" + "1" * 64, digest=None,
            base="b", labels={}, pushed=request.push, pushed_digest=digest,
            pushed_media_type=DOCKER_V2S2,
        )  # fmt: skip

    monkeypatch.setattr(image_mod, "build_image", fake_build)
    _with_image(spec_file, None)
    repo = "registry.example/team/vllm"
    result = cli(
        "up", spec_file, "-t", "coreweave", "--yes", "-c", f"mdeploy:imageRepository={repo}"
    )
    assert result.exit_code == 0, result.stderr
    (request,) = built
    assert request.push == f"{repo}:mistral-7b-chat-default"
    assert request.labels.model_id == "mistralai/Mistral-7B-Instruct-v0.3"
    assert deployed == [f"{repo}@{digest}"]


def test_aws_accepts_docker_v2_schema_2(cli, fake_pulumi, spec_file, monkeypatch, aws_creds):
    assert AwsTarget.accepted_manifest_types == (DOCKER_V2S2,)
    seen: list[str] = []

    def inspect(ref: str) -> tuple[str, str]:
        seen.append(ref)
        return ref.rsplit("@", 1)[1], DOCKER_V2S2

    monkeypatch.setattr(replicate_mod, "inspect_image", inspect)
    monkeypatch.setattr(replicate_mod, "replicate", _fake_replicate)
    account = "--config=mdeploy:awsAccountId=123456789012"
    result = cli("up", spec_file, "-t", "aws", "--yes", account)
    assert result.exit_code == 0, result.stderr
    assert len(seen) == 1  # read once, before anything was created


def _fake_replicate(source: str, targets: list[str], **kwargs: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(to_json=lambda: {"copies": list(targets)})
