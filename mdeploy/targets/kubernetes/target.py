"""
The Kubernetes target: CoreWeave (catalog offers) or any GPU cluster in your kubeconfig.

Light module: no Pulumi or Kubernetes client at import. `component()` imports the Pulumi
component lazily; `check_credentials()` reads kubeconfig files only (no API call).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from mdeploy.targets.base import EndpointArgs, Ops, Target, repository_of

if TYPE_CHECKING:
    from mdeploy.spec.models import Deployment

__all__ = [
    "TARGET",
    "KubernetesTarget",
    "check_context",
    "kube_contexts",
    "kubeconfig_paths",
]

_CLOUD_REFS = ("aws-sm:", "azure-kv:", "gcp-sm:")


def kubeconfig_paths(environ: dict[str, str] | None = None) -> list[Path]:
    """The kubeconfig files kubectl would read: $KUBECONFIG (path list) or ~/.kube/config."""
    env = os.environ if environ is None else environ
    raw = env.get("KUBECONFIG", "")
    if raw:
        return [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
    return [Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"]


def kube_contexts(paths: list[Path]) -> tuple[set[str], str | None]:
    """Context names defined across `paths`, and the first current-context found."""
    names: set[str] = set()
    current: str | None = None
    for path in paths:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict):
            continue
        names |= {c.get("name") for c in doc.get("contexts") or [] if isinstance(c, dict)}
        current = current or doc.get("current-context") or None
    names.discard(None)
    return names, current


def check_context(context: str | None = None) -> tuple[bool, str]:
    """Whether a kubeconfig defines `context` (or a current context); files only, no API."""
    paths = kubeconfig_paths()
    existing = [p for p in paths if p.is_file()]
    if not existing:
        return False, f"no kubeconfig at {', '.join(str(p) for p in paths)}"
    names, current = kube_contexts(existing)
    wanted = context or current
    if not wanted:
        return False, "the kubeconfig sets no current-context"
    if wanted not in names:
        return False, f"kube context {wanted!r} is not in {', '.join(map(str, existing))}"
    return True, f"kube context {wanted!r}"


class KubernetesTarget(Target):
    """Deploy to a Kubernetes cluster with NVIDIA GPUs (CoreWeave CKS or your own)."""

    name: ClassVar[str] = "kubernetes"
    display_name: ClassVar[str] = "Kubernetes (CoreWeave)"
    catalog_targets: ClassVar[tuple[str, ...]] = ("coreweave", "kubernetes")
    pulumi_plugins: ClassVar[tuple[str, ...]] = ("kubernetes", "random")
    credentials_hint: ClassVar[str] = (
        "point KUBECONFIG at a kubeconfig with a context for the cluster (CoreWeave: download "
        "it from the console), or set placement.kubernetes.context to an existing context"
    )

    def __init__(self, context: str | None = None) -> None:
        self.context = context  # set by the deploy layer from placement.kubernetes.context

    def component(self, resource_name: str, args: EndpointArgs, opts: Any = None) -> Any:
        from mdeploy.targets.kubernetes.component import KubernetesEndpoint

        return KubernetesEndpoint(resource_name, args, opts)

    def registry_repository(self, args: EndpointArgs, stack_config: dict[str, str]) -> str:
        """`mdeploy:registry` when set, else the image's own repository (pulled as is)."""
        from mdeploy.targets.kubernetes.settings import KubernetesSettings

        registry = KubernetesSettings.from_stack(stack_config).registry
        return registry or repository_of(args.image)

    def check_credentials(self) -> tuple[bool, str]:
        return check_context(self.context)

    def stack_config(self, args: EndpointArgs) -> dict[str, str]:
        """The provider reads kubeconfig itself; only a named context goes to config."""
        context = args.extra.get("kube_context")
        return {"kubernetes:context": str(context)} if context else {}

    def unsupported(self, spec: Deployment) -> dict[str, str]:
        out = {}
        for var, ref in spec.serving.secrets.items():
            if ref.startswith(_CLOUD_REFS):
                out[f"serving.secrets.{var}"] = (
                    "cloud secret managers are not read by the cluster; use k8s:SECRET/KEY "
                    "(e.g. synced by External Secrets Operator), env:NAME or file:PATH"
                )
        # templates/entrypoint.sh fetches hf://, s3:// and gs:// only; any other scheme stops
        # the container at start, so the pod would only crash-loop.
        source = spec.model.source or ""
        if source.startswith("az://"):
            out["model.source"] = (
                "az:// weights are not downloaded by the image; use hf://, s3:// or gs://, "
                "or leave model.source out (the engine downloads model.id from the Hub)"
            )
        return out

    def placement_problem(self, args: EndpointArgs) -> tuple[str, str] | None:
        """
        (problem, hint) when no node of the kube context is in the placement's region.

        Reads the cluster's node list (one API call), so only `up` runs it, after the
        credential check. A pool whose region is the generic "cluster" is not checked.
        """
        from mdeploy.targets.kubernetes.nodes import (
            GENERIC_REGION,
            NodeListError,
            labels_hint,
            list_node_labels,
            region_problem,
        )

        if args.region == GENERIC_REGION:
            return None
        context = str(args.extra.get("kube_context") or self.context or "") or None
        hint = (
            f"see where the nodes are with `{labels_hint(context)}`; point "
            "placement.kubernetes.context at the cluster in that region, or declare the "
            "pool's real region"
        )
        try:
            labels = list_node_labels(context, [p for p in kubeconfig_paths() if p.is_file()])
        except NodeListError as exc:
            return f"cannot check that the nodes are in {args.region!r}: {exc}", hint
        problem = region_problem(args.region, labels)
        return (problem, hint) if problem else None

    def ops(self, outputs: dict[str, Any]) -> Ops:
        from mdeploy.targets.kubernetes.ops import KubernetesOps

        return KubernetesOps(outputs)


TARGET = KubernetesTarget()
