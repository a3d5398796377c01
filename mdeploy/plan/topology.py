"""
Replica topology: how many GPUs and nodes one replica uses, and how the model is split.

A placement is `{nodes, gpus_per_node, tp, pp, dp, ep}` (docs/topology.md). The rule:

- tensor parallel (TP) stays inside a node (it all-reduces on every layer);
- pipeline parallel (PP) spans nodes, one stage per node; allowed over Ethernet with a warning;
- expert parallel (EP) across nodes only with RDMA (InfiniBand, RoCE, EFA): the all-to-all of
  every MoE layer crosses the fabric. The planner does not choose EP yet; `cross_node_problem`
  states the rule for the day it does.

Which shapes a target can run:

- managed targets (`replica_unit = "instance"`: SageMaker real-time, Azure ML managed, Vertex
  AI, each named by its `instance_label`): one instance, all its GPUs, TP = its GPU count;
- Kubernetes (`replica_unit = "pods"`: CoreWeave, own pools): a pod asks for the GPUs it
  needs (1, 2, 4 or 8, TP = that count), several replicas share a node and pay
  `node price × GPUs used / GPUs per node`; a model larger than a node spans 2..MAX_NODES
  whole nodes (TP = the node's GPUs, PP = nodes).

The smallest shape that fits is chosen per offer; ranking by price across offers then prefers
one bigger node (H200/B200) over two smaller ones unless two are cheaper. Sources for the
rule (vLLM "distributed serving": TP = GPUs per node, PP = nodes; LWS vLLM example; llm-d)
are cited in docs/topology.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mdeploy.plan.fit import (
    RESERVE_GIB,
    TENSOR_PARALLEL_SIZES,
    Fit,
    Sizing,
    precision_problem,
    tensor_parallel_problem,
)
from mdeploy.target_names import instance_labels, splittable_targets

__all__ = [
    "MAX_NODES",
    "Topology",
    "check_topology_fit",
    "cross_node_problem",
    "interconnect_warning",
    "managed_limit",
    "multi_node_args",
    "place",
    "price_share",
]

# Largest replica spread the planner proposes. Published deployments of the largest dense
# models (Llama-3.1-405B BF16) use 2 nodes; beyond 4 the pipeline bubbles and startup times are
# untested here, so the planner stops (a policy choice, not a vendor limit).
MAX_NODES = 4
IDLE_NOTE = "the node's idle GPUs are still paid for when the node is dedicated to this model"


class ShapeOffer(Protocol):
    target: str
    gpu: str
    gpu_count: int
    gpu_memory_gib: float

    @property
    def extra(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Topology:
    """One replica's shape: `nodes` pods of `gpus_per_node` GPUs on nodes of `node_gpus`."""

    nodes: int = 1
    gpus_per_node: int = 1
    node_gpus: int = 1
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    warnings: tuple[str, ...] = ()

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def fractional(self) -> bool:
        return self.gpus_per_node < self.node_gpus

    def label(self, gpu: str) -> str:
        """`2 × 8×H100, TP8·PP2`, `L40S×2 of 8, TP2` (part of a node) or `8×H100, TP8`."""
        split = f"TP{self.tp}" + (f"·PP{self.pp}" if self.pp > 1 else "")
        split += f"·DP{self.dp}" if self.dp > 1 else ""
        split += f"·EP{self.ep}" if self.ep > 1 else ""
        if self.nodes > 1:
            return f"{self.nodes} × {self.gpus_per_node}×{gpu}, {split}"
        if self.fractional:
            return f"{gpu}×{self.gpus_per_node} of {self.node_gpus}, {split}"
        return f"{self.gpus_per_node}×{gpu}, {split}"


def price_share(topology: Topology) -> float:
    """What fraction (or multiple) of one node's price a replica costs."""
    return topology.nodes * topology.gpus_per_node / topology.node_gpus


def rdma_of(offer: ShapeOffer) -> str:
    """'true', 'false' or 'unknown': whether the offer's nodes share an RDMA fabric."""
    value = str(offer.extra.get("rdma", "unknown")).lower()
    return value if value in ("true", "false") else "unknown"


def cross_node_problem(kind: str, rdma: str) -> str | None:
    """Why `kind` parallelism (tp, pp, ep) cannot span nodes over this fabric, or None."""
    if kind == "tp":
        return "tensor parallel stays inside a node (it all-reduces on every layer)"
    if kind == "ep" and rdma != "true":
        return "expert parallel across nodes needs RDMA (InfiniBand, RoCE or EFA)"
    return None


def interconnect_warning(rdma: str) -> str | None:
    """The warning a multi-node replica carries on a fabric without (known) RDMA."""
    if rdma == "true":
        return None
    what = "Ethernet" if rdma == "false" else "an interconnect of unknown kind"
    return (
        f"pipeline parallel across nodes over {what}: activations cross the network at every "
        "stage boundary; expect lower throughput than one node"
    )


def check_topology_fit(
    sizing: Sizing, *, tp: int, pp: int, gpu_memory_gib: float, utilization: float
) -> Fit:
    """
    `weights/(tp·pp) + KV/(split·pp) + reserve <= u × M`: each pipeline stage holds its own
    layers' weights and KV cache (vLLM splits layers evenly; embeddings and the LM head sit on
    the first and last stage, which the even split ignores: a few GiB on the largest models).
    """
    weights = sizing.weights_gib / (tp * pp)
    split = 1 if sizing.kv_replicated else min(tp, sizing.kv_heads)
    kv = sizing.kv_cache_gib / split / pp
    return Fit(
        tensor_parallel=tp,
        required_gib_per_gpu=weights + kv + RESERVE_GIB,
        usable_gib_per_gpu=utilization * gpu_memory_gib,
        weights_gib_per_gpu=weights,
        kv_gib_per_gpu=kv,
    )


def _pod_sizes(offer: ShapeOffer) -> list[int]:
    """GPUs one pod may ask for on this offer: all of them, or 1/2/4/8 dividing the node."""
    n = offer.gpu_count
    if offer.target not in splittable_targets():
        return [n]
    return [g for g in TENSOR_PARALLEL_SIZES if g <= n and n % g == 0] or [n]


def place(
    offer: ShapeOffer, sizing: Sizing, utilization: float
) -> tuple[str, str] | Fit | tuple[Topology, Fit]:
    """
    The smallest replica this offer can run: (Topology, Fit); else the refusal (code,
    reason), or the largest single-node Fit that ran out of memory (the caller explains it).
    """
    precision = precision_problem(offer.gpu, sizing)
    if precision:
        return "precision", precision
    mem = offer.gpu_memory_gib
    refusal: tuple[str, str] | None = None
    biggest: Fit | None = None
    for g in _pod_sizes(offer):
        problem = tensor_parallel_problem(g, sizing)
        if problem:
            refusal = refusal or ("tp", problem)
            continue
        fit = check_topology_fit(sizing, tp=g, pp=1, gpu_memory_gib=mem, utilization=utilization)
        if fit.fits:
            return Topology(gpus_per_node=g, node_gpus=offer.gpu_count, tp=g), fit
        biggest = fit
    if biggest is None:
        return refusal or ("tp", f"{offer.gpu_count} GPUs: no tensor-parallel size fits")
    if biggest.tensor_parallel == offer.gpu_count and offer.target in splittable_targets():
        spread = _multi_node(offer, sizing, utilization)
        if spread is not None:
            return spread
    return biggest


def _multi_node(
    offer: ShapeOffer, sizing: Sizing, utilization: float
) -> tuple[Topology, Fit] | None:
    """Whole nodes, TP = GPUs per node, PP = nodes: the fewest nodes that fit, if any."""
    tp, layers = offer.gpu_count, sizing.full_layers + sizing.sliding_layers
    for nodes in range(2, MAX_NODES + 1):
        if layers and nodes > layers:
            return None
        fit = check_topology_fit(
            sizing, tp=tp, pp=nodes, gpu_memory_gib=offer.gpu_memory_gib, utilization=utilization
        )
        if fit.fits:
            warning = interconnect_warning(rdma_of(offer))
            topology = Topology(
                nodes=nodes,
                gpus_per_node=tp,
                node_gpus=tp,
                tp=tp,
                pp=nodes,
                warnings=(warning,) if warning else (),
            )
            return topology, fit
    return None


def multi_node_args(base: list[str], topology: Topology) -> tuple[list[str], list[str]]:
    """
    vLLM flags for the leader (node rank 0, serves the API) and the workers (`--headless`).

    vLLM's multiprocessing backend across nodes: `--nnodes`, `--node-rank`, `--master-addr`
    (vllm/config/parallel.py ParallelConfig.nnodes/node_rank/master_addr, "for multi-node
    distributed inference when distributed_executor_backend is mp", vllm-project/vllm@00193b82,
    read 2026-12-06; the leader/worker command lines of vLLM's multi-node Kubernetes example,
    vllm-project/vllm@4642e44d docs/deployment/integrations/kthena.md). `$(VAR)` is expanded
    by the kubelet from the pod's env: LeaderWorkerSet sets LWS_LEADER_ADDRESS and
    LWS_WORKER_INDEX in every pod of a group.
    """
    if topology.nodes <= 1:
        return list(base), []
    shared = [
        *base,
        "--pipeline-parallel-size", str(topology.pp),
        "--nnodes", str(topology.nodes),
        "--master-addr", "$(LWS_LEADER_ADDRESS)",
        "--distributed-executor-backend", "mp",
    ]  # fmt: skip
    leader = [*shared, "--node-rank", "0"]
    workers = [*shared, "--node-rank", "$(LWS_WORKER_INDEX)", "--headless"]
    return leader, workers


def _sku_size(offer: ShapeOffer) -> tuple[float, tuple[int, int], float]:
    """Order SKUs by nominal memory, then the newest GPU, then usable memory."""
    from mdeploy.catalog import GPUS

    spec = GPUS.get(offer.gpu)
    nominal = spec.nominal_gb if spec else offer.gpu_memory_gib
    cc = spec.compute_capability if spec else (0, 0)
    return offer.gpu_count * nominal, cc, offer.gpu_count * offer.gpu_memory_gib


def _largest_sku(target: str) -> ShapeOffer | None:
    """
    The target's largest SKU in the catalog. Regions repeat the same instance types, so a
    group whose types were all seen is skipped unread (a 100× catalog stays cheap).
    """
    from mdeploy.catalog._store import offer_groups

    seen: set[str] = set()
    best: ShapeOffer | None = None
    for group in offer_groups([target], include_flagged=True):
        if seen.issuperset(group.names):
            continue
        seen.update(group.names)
        for view in group.views():
            if best is None or _sku_size(view) > _sku_size(best):
                best = view
    return best


def managed_limit(target: str, sizing: Sizing, utilization: float) -> str | None:
    """
    On a managed target a replica is one instance: when even the catalog's largest SKU of
    the target cannot hold the model, say which it is and where to go instead.
    """
    label = instance_labels().get(target)
    if label is None:
        return None
    best = _largest_sku(target)
    if best is None:
        return None
    fit = check_topology_fit(
        sizing, tp=best.gpu_count, pp=1, gpu_memory_gib=best.gpu_memory_gib,
        utilization=utilization,
    )  # fmt: skip
    if fit.fits:
        return None
    total = _sku_size(best)[0]
    return (
        f"largest {label} SKU is {best.gpu_count}×{best.gpu} ({total:g} GB): use a target "
        f"where a replica may span nodes ({', '.join(sorted(splittable_targets()))})"
    )
