"""
The Target hooks that replaced cloud names in the core (issue 12): what a target adds to the
endpoint args from the spec, its credential check for one deployment, where `up` may push a
build. The core calls the hooks; only the Kubernetes target implements them today.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mdeploy.deploy.prereqs import check_credentials
from mdeploy.errors import PrerequisiteError
from mdeploy.plan.models import Candidate
from mdeploy.spec.models import Deployment
from mdeploy.targets import all_targets, get_target
from mdeploy.targets.base import EndpointArgs

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: cw-dev
contexts: [{name: cw-dev, context: {cluster: c}}, {name: cw-prod, context: {cluster: c}}]
"""


def _spec(**cluster: object) -> Deployment:
    pool = {"name": "big", "gpu": "H100", "gpu_count": 8, "country": "DE"}
    return Deployment.model_validate(
        {
            "apiVersion": "mdeploy/v1",
            "kind": "Deployment",
            "metadata": {"name": "tiny"},
            "model": {"id": "acme/tiny-7b"},
            "placement": {
                "clouds": ["aws", "kubernetes"],
                "kubernetes": {**cluster, "pools": [pool]},
            },
        }
    )


def _candidate(target: str, **extra: str) -> Candidate:
    return Candidate(
        target=target, region="r", instance_type="big", gpu="H100", gpu_count=8,
        gpu_memory_gib=79.0, tensor_parallel=8, hourly_usd=1.0, monthly_usd=730.0,
        jurisdiction="EU", country="DE", price_source="test", estimate=False, engine_args=[],
        extra=dict(extra),
    )  # fmt: skip


def _args(spec: Deployment, target: str, **extra: str) -> EndpointArgs:
    candidate = _candidate(target, **extra)
    return EndpointArgs.from_plan(spec, candidate, env=None, image="r/x:1", weights_gib=1.0)


def test_the_cluster_settings_reach_the_args_of_the_target_that_deploys_the_pools() -> None:
    spec = _spec(context="cw-prod", namespace="ml", gpu_class_label="example.com/gpu")
    for name in ("kubernetes", "coreweave"):
        extra = _args(spec, name).extra
        assert extra["namespace"] == "ml" and extra["kube_context"] == "cw-prod"
        assert extra["gpu_class_label"] == "example.com/gpu"
    assert "kube_context" not in _args(_spec(), "kubernetes").extra  # no context: none set
    assert _args(spec, "kubernetes", namespace="plan").extra["namespace"] == "plan"  # plan wins


def test_a_managed_target_adds_nothing_from_the_cluster_settings() -> None:
    extra = _args(_spec(context="cw-prod", namespace="ml"), "aws").extra
    assert not {"namespace", "kube_context", "gpu_class_label"} & set(extra)
    assert _args(_spec(), "no-such-target").extra == {"max_concurrency": 16}


def test_the_spec_context_is_checked_with_the_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(config))
    target = get_target("kubernetes")
    assert check_credentials(target, _args(_spec(context="cw-prod"), "kubernetes"))
    assert target.check_credentials_for(_args(_spec(), "kubernetes"))[0]
    args = _args(_spec(context="gke-other"), "kubernetes")
    ok, reason = target.check_credentials_for(args)
    assert not ok and "gke-other" in reason
    with pytest.raises(PrerequisiteError, match="gke-other"):
        check_credentials(target, args)


def test_only_the_cluster_target_takes_a_build_pushed_to_its_registry_key() -> None:
    keys = {t.name: t.build_repository_keys for t in all_targets()}
    assert keys == {"aws": (), "azure": (), "gcp": (), "kubernetes": ("mdeploy:registry",)}
