"""
Kubernetes conformance helpers, and the example × environment matrix the Azure, GCP and
Kubernetes conformance tests share.

Authority: the Kubernetes OpenAPI-derived JSON schemas that `kubernetes-validate` bundles
(installed from PyPI, the dev extra; strict mode refuses unknown fields), for every object
`synth --out` writes. The objects come from the real component under the recording mock engine.
What only a real cluster shows: admission webhooks and policies (PodSecurity, Kyverno), RBAC,
quota, whether a node with the requested GPU class and region exists (`up` checks the region,
mdeploy.targets.kubernetes.nodes), and the image pull itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdeploy.deploy.synth import SynthResult, synth, synth_args
from mdeploy.errors import PolicyError
from mdeploy.spec import LoadedSpec, load_spec
from mdeploy.targets.kubernetes.manifests import manifests

__all__ = [
    "EXAMPLES",
    "K8S_VERSION",
    "Case",
    "example_cases",
    "k8s_objects",
    "validate_objects",
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
K8S_VERSION = "1.30.0"  # a schema version kubernetes-validate bundles; CKS runs 1.30 and later


@dataclass(frozen=True)
class Case:
    """One example × environment, as `synth --target` would load it."""

    example: str
    env: str | None

    @property
    def id(self) -> str:
        return f"{self.example}[{self.env or 'default'}]"

    def load(self) -> LoadedSpec:
        return load_spec(EXAMPLES / self.example, self.env)


def example_cases() -> list[Case]:
    """Every example with its default environment and each environment it declares."""
    cases = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        envs = load_spec(path).spec.environments or {}
        cases += [Case(path.name, None), *(Case(path.name, env) for env in sorted(envs))]
    return cases


def synth_case(case: Case, target: str) -> SynthResult | None:
    """The graph `synth` would show for `case` on `target`, or None when nothing fits there."""
    try:
        return synth(case.load(), target)
    except PolicyError:
        return None


def variants(result: SynthResult) -> Iterator[tuple[str, SynthResult]]:
    """The main stack-config variants of one synthesized Kubernetes endpoint."""
    import dataclasses

    yield "defaults", result
    args = result.resolved.args  # type: ignore[union-attr]
    fixed = dataclasses.replace(args, replicas_min=2, replicas_max=2)
    config = {
        "mdeploy:ingressHost": "llm.example.com",
        "mdeploy:ingressTlsSecret": "llm-tls",
        "mdeploy:allowedNamespaces": "ingress-nginx,monitoring",
        "mdeploy:imagePullSecret": "regcred",
        "mdeploy:createNamespace": "false",
    }
    yield "ingress-tls-fixed-replicas", synth_args("kubernetes", fixed, config=config)
    yield (
        "hpa-pods-metric",
        synth_args(
            "kubernetes",
            args,
            config={"mdeploy:hpaPodsMetric": "vllm:num_requests_waiting", "mdeploy:hpaTarget": "4"},
        ),
    )
    pool = dataclasses.replace(args, region="cluster", extra={**args.extra, "gpu_class": "L40S"})
    yield "generic-pool", synth_args("kubernetes", pool)


def k8s_objects(result: SynthResult) -> list[dict[str, Any]]:
    return manifests(result.to_json())


def validate_objects(objects: list[dict[str, Any]]) -> list[str]:
    """Every schema violation, as 'Kind/name: message' (empty when all objects conform)."""
    import kubernetes_validate

    problems = []
    for obj in objects:
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name}: {exc.message} at {'.'.join(map(str, exc.path))}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name}: no schema ({exc})")
    return problems
