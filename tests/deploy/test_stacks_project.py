"""stacks/: the plain Pulumi project runs the same plan + component code as `mdeploy up`."""

from __future__ import annotations

import runpy
from pathlib import Path

import pulumi
import pytest
import yaml

from mdeploy.deploy.mocks import MockSession
from mdeploy.deploy.program import resolve
from mdeploy.spec import load_spec

STACKS = Path(__file__).resolve().parents[2] / "stacks"


def _run(config: dict[str, str]) -> MockSession:
    session = MockSession(stack="dev", config=config)
    with session as s:
        s.run(lambda: runpy.run_path(str(STACKS / "__main__.py")))
    return session


def test_program_declares_the_target_component(spec_file, monkeypatch, facts):
    monkeypatch.setenv("HF_TOKEN", facts.canary)
    session = _run({"mdeploy:spec": str(spec_file), "mdeploy:target": "coreweave"})
    types = [r.type for r in session.resources]
    assert types.count("mdeploy:kubernetes:Endpoint") == 1
    assert "kubernetes:apps/v1:Deployment" in types


def test_provider_region_must_match_the_plan(spec_file, monkeypatch, facts):
    monkeypatch.setenv("HF_TOKEN", facts.canary)
    config = {"mdeploy:spec": str(spec_file), "mdeploy:target": "aws", "aws:region": "us-east-1"}
    with pytest.raises(pulumi.RunError, match="aws:region") as err:
        _run(config)
    assert "pulumi config set aws:region" in str(err.value)


def test_guardrails_apply_to_prod(spec_file):
    config = {"mdeploy:spec": str(spec_file), "mdeploy:env": "prod", "mdeploy:target": "aws"}
    with pytest.raises(pulumi.RunError, match=r"model\.revision"):
        _run(config)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_stack_files_point_at_real_specs(stack):
    config = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text())["config"]
    spec = (STACKS / config["mdeploy:spec"]).resolve()
    loaded = load_spec(spec, config.get("mdeploy:env") or None)
    resolved = resolve(loaded, config["mdeploy:target"])
    from mdeploy.targets import get_target

    wanted = get_target(resolved.target).stack_config(resolved.args)
    for key, value in wanted.items():
        assert config.get(key) == value, f"Pulumi.{stack}.yaml: {key} should be {value}"


def test_project_file_declares_the_config_keys():
    project = yaml.safe_load((STACKS / "Pulumi.yaml").read_text())
    assert project["name"] == "mdeploy"
    assert project["runtime"]["name"] == "python"
    assert {"spec", "env", "target"} <= set(project["config"])
