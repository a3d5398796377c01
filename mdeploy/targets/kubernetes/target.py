"""
The kubernetes `Target`: the light entry point `get_target("kubernetes")` returns.

The cloud's rules (names, tags, environment, settings, checks) live in `rules.py`; the Pulumi
resources in `component.py` and the day-2 client in `ops.py`, imported lazily by the methods
below, so that importing this module costs nothing and no module of the folder imports it back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from mdeploy.targets.base import EndpointArgs, Ops, Target, repository_of
from mdeploy.targets.kubernetes.rules import (
    check_context,
    kubeconfig_paths,
    unsupported,
)

if TYPE_CHECKING:
    from pathlib import Path

    from mdeploy.spec.models import Deployment

__all__ = ["TARGET", "KubernetesTarget"]


class KubernetesTarget(Target):
    """Deploy to a Kubernetes cluster with NVIDIA GPUs (CoreWeave CKS or your own)."""

    name: ClassVar[str] = "kubernetes"
    display_name: ClassVar[str] = "Kubernetes (CoreWeave)"
    catalog_targets: ClassVar[tuple[str, ...]] = ("coreweave", "kubernetes")
    # placement.kubernetes: the user's own cluster and pools, offered as target "kubernetes".
    pool_placement: ClassVar[str | None] = "kubernetes"
    replica_unit: ClassVar[Literal["instance", "pods"]] = "pods"  # pods on shared nodes
    secret_ref_forms: ClassVar[tuple[str, ...]] = ("k8s:SECRET/KEY",)  # a key of a Secret
    # Exact at load time, so `validate` points at the line: a DNS-1123 Secret name, a key.
    secret_ref_patterns: ClassVar[tuple[str, ...]] = (
        r"k8s:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-._A-Za-z0-9]+",
    )
    build_repository_keys: ClassVar[tuple[str, ...]] = ("mdeploy:registry",)
    pulumi_plugins: ClassVar[tuple[str, ...]] = ("kubernetes", "random")
    python_modules: ClassVar[tuple[str, ...]] = ("pulumi", "pulumi_kubernetes", "pulumi_random")
    generic_registry: ClassVar[bool] = True  # any OCI registry: the shared generic login
    output_names: ClassVar[tuple[str, ...]] = ("namespace", "service_name", "api_key")
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

    def check_credentials_for(self, args: EndpointArgs) -> tuple[bool, str]:
        """The kubeconfig, then the context the spec names (placement.kubernetes.context)."""
        ok, reason = self.check_credentials()
        context = args.extra.get("kube_context")
        if ok and context:
            return check_context(str(context))
        return ok, reason

    def args_extra(self, spec: Deployment) -> dict[str, Any]:
        """The namespace, GPU class label and kube context of `placement.kubernetes`."""
        cluster = spec.placement.clusters().get(self.pool_placement or "")
        if cluster is None:
            return {}
        extra: dict[str, Any] = {
            "namespace": cluster.namespace,
            "gpu_class_label": cluster.gpu_class_label,
        }
        if cluster.context:
            extra["kube_context"] = cluster.context
        return extra

    def stack_config(self, args: EndpointArgs) -> dict[str, str]:
        """The provider reads kubeconfig itself; only a named context goes to config."""
        context = args.extra.get("kube_context")
        return {"kubernetes:context": str(context)} if context else {}

    def unsupported(self, spec: Deployment) -> dict[str, str]:
        """Spec features this target cannot honour, mapped to a reason and what to do."""
        return unsupported(spec)

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

    def placement_note(self, region: str) -> str | None:
        """What `plan` says about the region: offline it cannot see the cluster's nodes."""
        from mdeploy.targets.kubernetes.nodes import GENERIC_REGION

        if region == GENERIC_REGION:
            return None
        return (
            f"region {region}: checked at up (a node of the kube context must carry "
            f"topology.kubernetes.io/region or topology.kubernetes.io/zone = {region})"
        )

    def cluster_problem(self, args: EndpointArgs) -> tuple[str, str] | None:
        """(problem, hint) when a multi-node replica's LeaderWorkerSet API is missing (up)."""
        from mdeploy.targets.kubernetes import lws

        if not lws.is_multi_node(args):
            return None
        context = str(args.extra.get("kube_context") or self.context or "") or None
        return lws.crd_check(context, [p for p in kubeconfig_paths() if p.is_file()])

    def ops(self, outputs: dict[str, Any]) -> Ops:
        from mdeploy.targets.kubernetes.ops import KubernetesTrafficOps

        return KubernetesTrafficOps(outputs, context=self.context)

    def write_artifacts(self, out_dir: Path, graph: Any) -> list[Path]:
        """`synth --out`: one YAML manifest per object, in apply order, under kubernetes/."""
        from mdeploy.targets.kubernetes.manifests import write_manifests

        return write_manifests(graph, out_dir / self.name)

    def fake_outputs(
        self, typ: str, name: str, inputs: dict[str, Any], region: str
    ) -> dict[str, Any]:
        """The generated API key (random provider) for offline synth."""
        del name, inputs, region  # Unused.
        if typ == "random:index/randomPassword:RandomPassword":
            return {"result": "mock-random-value"}
        return {}


TARGET = KubernetesTarget()
