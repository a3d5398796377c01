"""
A replica larger than one node: a LeaderWorkerSet (leaderworkerset.x-k8s.io/v1) instead of a
Deployment (issue 14, docs/topology.md).

Each replica is a group of `nodes` pods, one per node, created and restarted together
(`RecreateGroupOnPodRestart`: a lost rank breaks the NCCL world, so the whole group restarts).
The leader (worker index 0) is the Deployment's pod as it is: the adapter starts vLLM with the
leader's flags and serves the API. Workers run `vllm serve ... --headless` with the workers'
flags (`--node-rank $(LWS_WORKER_INDEX)`, `--master-addr $(LWS_LEADER_ADDRESS)`); both
variables are set by LWS at the front of every container's env (kubernetes-sigs/lws v0.10.0
pkg/utils/pod/pod_utils.go addEnvVarsIfNotExists), so `$(...)` in later env values and args
expands. The Service selects the leaders only; a second NetworkPolicy lets the pods of the
endpoint reach each other (the torch.distributed store and NCCL ports) while the first still
limits the API port to the allowed namespaces.

RDMA: on an offer whose catalog row says rdma true (CoreWeave's InfiniBand classes), every
pod requests `rdma/ib: 1`: CoreWeave uses it as a flag that schedules the pod onto an
InfiniBand node and exposes the HCAs (docs.coreweave.com/products/networking/hpc-interconnect/
use-gpudirect-rdma, "Configure the Pods", read 2026-12-06). NCCL then finds the IB devices
itself; no NCCL variable is set here (none is documented as required).

The LWS controller is a cluster add-on: `up` checks its CRD first (`crd_problem`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource

from mdeploy.errors import InputError
from mdeploy.targets.base import EndpointArgs
from mdeploy.targets.kubernetes.api import core, meta, networking
from mdeploy.targets.kubernetes.podspec import deployment_spec
from mdeploy.targets.kubernetes.settings import KubernetesSettings

__all__ = [
    "API_VERSION",
    "CRD_NAME",
    "INSTALL_HINT",
    "KIND",
    "Workload",
    "crd_check",
    "crd_problem",
    "is_multi_node",
    "leader_selector",
    "leader_worker_set",
    "lws_spec",
    "workload_ref",
]

API_VERSION = "leaderworkerset.x-k8s.io/v1"
KIND = "LeaderWorkerSet"
CRD_NAME = "leaderworkersets.leaderworkerset.x-k8s.io"
LWS_VERSION = "v0.10.0"  # the release whose CRD the conformance test validates against
INSTALL_HINT = (
    "install LeaderWorkerSet in the cluster: kubectl apply --server-side -f "
    f"https://github.com/kubernetes-sigs/lws/releases/download/{LWS_VERSION}/manifests.yaml"
)
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"  # lws api/.../types.go
RDMA_RESOURCE = "rdma/ib"


def nodes_of(args: EndpointArgs) -> int:
    """Nodes per replica, from the plan (candidate extra `nodes`); 1 when absent."""
    try:
        return max(1, int(str(args.extra.get("nodes", "1"))))
    except ValueError:
        return 1


def is_multi_node(args: EndpointArgs) -> bool:
    return nodes_of(args) > 1


def workload_ref(args: EndpointArgs) -> tuple[str, str]:
    """(apiVersion, kind) of the object an HPA scales for this endpoint."""
    return (API_VERSION, KIND) if is_multi_node(args) else ("apps/v1", "Deployment")


def leader_selector(args: EndpointArgs, labels: dict[str, str]) -> dict[str, str]:
    """The Service's selector: every pod, or only the group leaders of a LeaderWorkerSet."""
    return {**labels, WORKER_INDEX_LABEL: "0"} if is_multi_node(args) else dict(labels)


def _worker_args(args: EndpointArgs) -> list[str]:
    raw = args.extra.get("worker_engine_args")  # a JSON list (candidate extra is str → str)
    try:
        flags = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        flags = None
    if isinstance(flags, (list, tuple)) and flags:
        return [str(a) for a in flags]
    raise InputError(
        f"{args.name}: a {nodes_of(args)}-node replica without worker flags in the plan",
        hint="re-run `mdeploy plan`: multi-node candidates carry worker_engine_args",
    )


def _model_arg(args: EndpointArgs) -> str:
    """What a worker's `vllm serve` loads: the Hugging Face id or a mounted path."""
    source = args.model_source or ""
    if source.startswith(("s3://", "gs://")):
        raise InputError(
            f"model.source: {source}: multi-node replicas load the weights on every node "
            "through vLLM, which reads Hugging Face ids and mounted paths only",
            hint="use an hf:// source or a path on a volume every node mounts",
        )
    if source.startswith("hf://"):
        return source.removeprefix("hf://")
    return source or args.model_id


def _with_rdma(resources: core.ResourceRequirementsArgs, rdma: bool) -> None:
    if not rdma:
        return
    resources.requests = {**(resources.requests or {}), RDMA_RESOURCE: "1"}
    resources.limits = {**(resources.limits or {}), RDMA_RESOURCE: "1"}


def lws_spec(
    args: EndpointArgs,
    settings: KubernetesSettings,
    image: str,
    account: pulumi.Input[str],
    secret_env: list[core.EnvVarArgs],
) -> dict[str, Any]:
    """The LeaderWorkerSet spec: the Deployment's pod as leader, headless vLLM workers."""
    rdma = str(args.extra.get("rdma", "")).lower() == "true"
    leader = deployment_spec(args, settings, image, account, secret_env)
    worker = deployment_spec(args, settings, image, account, secret_env)
    (lead,) = leader.template.spec.containers
    (work,) = worker.template.spec.containers
    _with_rdma(lead.resources, rdma)
    _with_rdma(work.resources, rdma)
    work.name = "worker"
    work.command = ["vllm", "serve", _model_arg(args), *_worker_args(args)]
    work.ports = None  # headless: no API server
    # No HTTP probes: a headless rank serves nothing. The group is restarted as a whole when
    # the leader (which has the probes) fails, or when any worker's process exits.
    work.startup_probe = work.readiness_probe = work.liveness_probe = None
    return {
        "replicas": leader.replicas,
        "startupPolicy": "LeaderCreated",
        "rolloutStrategy": {
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "leaderWorkerTemplate": {
            "size": nodes_of(args),
            "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": leader.template,
            "workerTemplate": worker.template,
        },
    }


@dataclass(frozen=True)
class _Meta:
    name: pulumi.Output[str]


@dataclass(frozen=True)
class Workload:
    """The LeaderWorkerSet with a typed `metadata.name`, as the component reads a Deployment's
    (a CustomResource's metadata is an untyped dict output)."""

    resource: CustomResource
    metadata: _Meta


def leader_worker_set(
    args: EndpointArgs,
    settings: KubernetesSettings,
    image: str,
    account: pulumi.Input[str],
    secret_env: list[core.EnvVarArgs],
    metadata: meta.ObjectMetaArgs,
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> Workload:
    """The LeaderWorkerSet, and the NetworkPolicy that lets its pods reach each other."""
    lws = CustomResource(
        "lws",
        api_version=API_VERSION,
        kind=KIND,
        metadata=metadata,
        spec=lws_spec(args, settings, image, account, secret_env),
        opts=opts,
    )
    same = networking.NetworkPolicyPeerArgs(
        pod_selector=meta.LabelSelectorArgs(match_labels=labels)
    )
    networking.NetworkPolicy(
        "netpol-group",
        metadata=meta.ObjectMetaArgs(
            name=f"{args.name}-group", namespace=metadata.namespace, labels=labels
        ),
        spec=networking.NetworkPolicySpecArgs(
            pod_selector=meta.LabelSelectorArgs(match_labels=labels),
            policy_types=["Ingress"],
            ingress=[networking.NetworkPolicyIngressRuleArgs(from_=[same])],
        ),
        opts=opts,
    )
    name = lws.metadata.apply(lambda m: m["name"] if isinstance(m, dict) else m.name)
    return Workload(lws, _Meta(name))


def crd_problem(crd_names: set[str] | None) -> str | None:
    """Why `up` cannot create a LeaderWorkerSet (its CRD is missing), or None; None = unknown."""
    if crd_names is None or CRD_NAME in crd_names:
        return None
    return f"the LeaderWorkerSet CRD ({CRD_NAME}) is not installed in the cluster"


def crd_check(context: str | None, paths: list[Path]) -> tuple[str, str] | None:
    """
    At `up` of a multi-node endpoint: (problem, hint) when the cluster does not serve the
    LeaderWorkerSet API. Reads API discovery (`/apis/leaderworkerset.x-k8s.io/v1`), which
    every authenticated user may read, rather than the CRD object (cluster-scoped, often
    forbidden to namespace users).
    """
    from mdeploy.targets.kubernetes.nodes import ApiError, NodeListError, api_call, cluster_of

    try:
        cluster, user = cluster_of(context, paths)
        api_call(cluster, user, "GET", f"/apis/{API_VERSION}")
    except ApiError as exc:
        if exc.status == 404:
            return crd_problem(set()) or "", INSTALL_HINT
        return f"cannot check for the LeaderWorkerSet API: {exc}", INSTALL_HINT
    except NodeListError as exc:
        return f"cannot check for the LeaderWorkerSet API: {exc}", INSTALL_HINT
    return None
