"""
Placement: check every offer of the allowed targets, rank what fits, explain the rest.

Checks run in a fixed order (residency, target, region access, region, GPU, host CPU, price,
budget, tensor parallel, memory) so an offer's rejection names the first rule it breaks: the
one to act on. `blocked` maps a target that cannot deploy the spec at all to why (the caller
asks the targets: this layer does not import them). `access` maps (target, region) to the
catalog's region access (open, opt-in, restricted, partition): only open regions are ranked
unless placement.regions names the region.

The first four rules depend on the region alone, so they are decided once per region and
their reason shared; `rank_catalog` rejects a whole region of the catalog without building an
Offer per row. That keeps a plan over a catalog 100× the bundled one cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from operator import itemgetter

import mdeploy.plan.policy as policy
import mdeploy.plan.topology as topo
from mdeploy.catalog._store import OfferGroup, OfferView
from mdeploy.catalog.models import Offer
from mdeploy.plan.engine import engine_args
from mdeploy.plan.fit import Fit, Sizing
from mdeploy.plan.models import Candidate, Rejection
from mdeploy.spec.models import Deployment
from mdeploy.target_names import pool_placements, splittable_targets

__all__ = ["HOURS_PER_MONTH", "evaluate", "rank", "rank_catalog"]

HOURS_PER_MONTH = 730  # 365 × 24 / 12, the cloud billing convention
OfferLike = Offer | OfferView  # the planner only reads offers: a catalog row view will do
_REJECTION_ORDER = itemgetter(0, 1, 2)  # a Rejection's (target, region, instance_type)


def _candidate_order(c: Candidate) -> tuple:
    """Priced first, cheapest first; ties: published price, fewer nodes, fewer GPUs."""
    return (not c.priced, c.hourly_usd, c.estimate, c.nodes, c.gpu_count, c.target, c.region,
            c.instance_type)  # fmt: skip


def _reject(offer: OfferLike, code: str, reason: str | Callable[[], str]) -> Rejection:
    return Rejection(offer.target, offer.region, offer.instance_type, reason, code)


RegionKey = tuple[str, str, str, str]  # target, region, country, jurisdiction
_ACCESS_REASON = {
    "opt-in": "opt-in region: enable it first, or name it in placement.regions",
    "restricted": "restricted-access region: request access first, or name it in placement.regions",
    "partition": "region of a separate partition (its own account): used only when "
    "placement.regions names it",
}


class _Rules:
    """The region-level rules for one spec, decided once per (target, region, place)."""

    def __init__(
        self, spec: Deployment, blocked: Mapping[str, str], access: Mapping[tuple[str, str], str]
    ) -> None:
        self.spec, self.blocked, self.access = spec, blocked, access
        self.named = set(spec.placement.regions)
        self.memo: dict[RegionKey, tuple[str, str] | None] = {}
        self.allowed: dict[tuple[str, str], bool] = {}
        # The same GPU shape recurs in every region: its verdict and flags are computed once.
        self.shapes: dict[tuple, tuple[str, str] | Fit | tuple[topo.Topology, Fit]] = {}
        self.splittable = splittable_targets()  # asked for every offer: read once
        self.args: dict[int, list[str]] = {}
        self.largest: dict[str, str | None] = {}

    def shape(
        self, offer: OfferLike, sizing: Sizing
    ) -> tuple[str, str] | Fit | tuple[topo.Topology, Fit]:
        """
        The replica topology this offer runs (topology.place): (Topology, Fit), or a refusal
        (code, reason), or the largest Fit that ran out of memory; memoised per GPU shape.
        """
        splittable = offer.target in self.splittable
        key = (id(sizing), offer.gpu, offer.gpu_count, offer.gpu_memory_gib, splittable,
               topo.rdma_of(offer) if splittable else "")  # fmt: skip
        if key not in self.shapes:
            self.shapes[key] = topo.place(offer, sizing, self.spec.serving.gpu_memory_utilization)
        return self.shapes[key]

    def managed_limit(self, target: str, sizing: Sizing) -> str | None:
        """'largest Azure ML managed SKU is 8×H100 (640 GB)...' when even it cannot fit."""
        if target not in self.largest:
            utilization = self.spec.serving.gpu_memory_utilization
            self.largest[target] = topo.managed_limit(target, sizing, utilization)
        return self.largest[target]

    def engine_args(self, tp: int) -> list[str]:
        if tp not in self.args:
            self.args[tp] = engine_args(self.spec, tp)
        return list(self.args[tp])

    def region_problem(self, key: RegionKey) -> tuple[str, str] | None:
        """(code, reason) of the first region-level rule broken, or None; memoised."""
        if key not in self.memo:
            self.memo[key] = self._decide(*key)
        return self.memo[key]

    def _decide(
        self, target: str, region: str, country: str, jurisdiction: str
    ) -> tuple[str, str] | None:
        placement = self.spec.placement
        where = (country, jurisdiction)
        if where not in self.allowed:
            self.allowed[where] = policy.allows(
                placement.residency, country=country, jurisdiction=jurisdiction
            )
        if not self.allowed[where]:
            return "residency", (
                f"residency: {region} is in {country} ({jurisdiction}), "
                f"outside {policy.describe(placement.residency)}"
            )
        if target in self.blocked:
            return "target", f"{target} cannot deploy this spec: {self.blocked[target]}"
        kind = self.access.get((target, region), "open")
        if kind != "open" and region not in self.named:
            return "access", _ACCESS_REASON.get(
                kind, f"{kind} region: name it in placement.regions"
            )
        if self.named and region not in self.named:
            return "region", "region not in placement.regions"
        return None


def _rule_problem(offer: OfferLike, spec: Deployment, rules: _Rules) -> Rejection | None:
    """The first placement rule (not memory) that `offer` breaks, if any."""
    placement = spec.placement
    problem = rules.region_problem((offer.target, offer.region, offer.country, offer.jurisdiction))
    if problem is not None:
        return _reject(offer, *problem)
    if placement.gpus and offer.gpu.lower() not in {g.lower() for g in placement.gpus}:
        return _reject(offer, "gpu", f"GPU {offer.gpu} not in placement.gpus")
    if offer.extra.get("cpu_arch", "amd64") != "amd64":
        return _reject(
            offer,
            "arch",
            f"{offer.extra['cpu_arch']} hosts; the inference image is built for amd64",
        )
    if offer.flagged:
        return _reject(offer, "price", f"price flagged in the catalog: {offer.flagged}")
    if offer.hourly_usd is None and offer.target not in pool_placements():  # own pools: free
        return _reject(offer, "price", "no list price to rank by")
    return None


def _budget_problem(
    offer: OfferLike, replica_usd: float | None, spec: Deployment
) -> Rejection | None:
    """A replica (its share of a node, or its nodes) priced over placement.max_hourly_usd."""
    budget = spec.placement.max_hourly_usd
    if budget is not None and replica_usd is not None and replica_usd > budget:
        return _reject(
            offer,
            "budget",
            f"${replica_usd:.2f}/h per replica exceeds placement.max_hourly_usd ${budget:.2f}",
        )
    return None


def _memory_reason(
    offer: OfferLike, fit_required: float, fit_usable: float, spec: Deployment
) -> str:
    hints = []
    if spec.serving.kv_cache_dtype != "fp8":
        hints.append("kv_cache_dtype: fp8")
    hints.append("a lower max_concurrency or max_context")
    return (
        f"needs {fit_required:.1f} GiB per GPU, {offer.gpu}×{offer.gpu_count} gives "
        f"{spec.serving.gpu_memory_utilization:g} × {offer.gpu_memory_gib:g} = "
        f"{fit_usable:.1f} GiB; "
        f"try more or larger GPUs, {' or '.join(hints)}"
    )


def evaluate(
    offer: OfferLike,
    spec: Deployment,
    sizing: Sizing,
    blocked: Mapping[str, str] | None = None,
    access: Mapping[tuple[str, str], str] | None = None,
    *,
    rules: _Rules | None = None,
) -> Candidate | Rejection:
    """Turn one offer into a candidate, or a rejection that says why and what to change."""
    rules = rules or _Rules(spec, blocked or {}, access or {})
    problem = _rule_problem(offer, spec, rules)
    if problem is not None:
        return problem
    verdict = rules.shape(offer, sizing)
    if isinstance(verdict, Fit):
        return _reject(offer, "memory", _memory_text(offer, verdict, spec, rules, sizing))
    if isinstance(verdict[0], str):
        return _reject(offer, *verdict)
    shape, fit = verdict
    assert isinstance(shape, topo.Topology) and isinstance(fit, Fit)
    share = topo.price_share(shape)
    replica = None if offer.hourly_usd is None else offer.hourly_usd * share
    over = _budget_problem(offer, replica, spec)
    if over is not None:
        return over
    return _candidate(offer, shape, fit, replica, rules)


def _memory_text(
    offer: OfferLike, fit: Fit, spec: Deployment, rules: _Rules, sizing: Sizing
) -> Callable[[], str]:
    required, usable = fit.required_gib_per_gpu, fit.usable_gib_per_gpu

    def text() -> str:
        reason = _memory_reason(offer, required, usable, spec)
        if offer.target in splittable_targets() and fit.tensor_parallel == offer.gpu_count:
            reason += f"; {topo.MAX_NODES} nodes with pipeline parallel do not fit either"
        limit = rules.managed_limit(offer.target, sizing)
        return f"{limit}; {reason}" if limit else reason

    return text


def _candidate(
    offer: OfferLike, shape: topo.Topology, fit: Fit, replica: float | None, rules: _Rules
) -> Candidate:
    """The Candidate for a placed topology; price = node price × share × replicas.min."""
    spec = rules.spec
    hourly = (replica or 0.0) * spec.serving.replicas.min
    leader, workers = topo.multi_node_args(rules.engine_args(fit.tensor_parallel), shape)
    notes = list(shape.warnings)
    if offer.hourly_usd is None:
        notes.append("no price: own pool without hourly_usd, ranked after priced offers")
    elif shape.fractional:
        notes.append(
            f"price = node ${offer.hourly_usd:.2f}/h × {shape.gpus_per_node}/{shape.node_gpus} "
            f"GPUs; {topo.IDLE_NOTE}"
        )
    elif shape.nodes > 1:
        notes.append(f"price = {shape.nodes} nodes × ${offer.hourly_usd:.2f}/h")
    extra = dict(offer.extra)
    extra.update(nodes=str(shape.nodes), pipeline_parallel=str(shape.pp))
    if workers:  # the Kubernetes target renders them into the LeaderWorkerSet's workers
        extra["worker_engine_args"] = json.dumps(workers)
    return Candidate(
        target=offer.target,
        region=offer.region,
        instance_type=offer.instance_type,
        gpu=offer.gpu,
        gpu_count=shape.gpus_per_node,
        gpu_memory_gib=offer.gpu_memory_gib,
        tensor_parallel=fit.tensor_parallel,
        hourly_usd=hourly,
        monthly_usd=hourly * HOURS_PER_MONTH,
        jurisdiction=offer.jurisdiction,
        country=offer.country,
        price_source=offer.price_source,
        estimate=offer.estimate,
        engine_args=leader,
        required_gib_per_gpu=fit.required_gib_per_gpu,
        weights_gib_per_gpu=fit.weights_gib_per_gpu,
        kv_gib_per_gpu=fit.kv_gib_per_gpu,
        reserve_gib_per_gpu=fit.reserve_gib_per_gpu,
        extra=extra,
        nodes=shape.nodes,
        pipeline_parallel=shape.pp,
        data_parallel=shape.dp,
        expert_parallel=shape.ep,
        node_gpu_count=shape.node_gpus,
        topology=shape.label(offer.gpu),
        worker_engine_args=workers,
        notes=tuple(notes),
        priced=offer.hourly_usd is not None,
    )


def rank(
    offers: Iterable[Offer],
    spec: Deployment,
    sizing: Sizing,
    blocked: Mapping[str, str] | None = None,
    access: Mapping[tuple[str, str], str] | None = None,
) -> tuple[list[Candidate], list[Rejection]]:
    """All candidates cheapest first (ties: published price before estimate), and rejections."""
    return rank_catalog((), offers, spec, sizing, blocked, access)


def rank_catalog(
    groups: Iterable[OfferGroup],
    offers: Iterable[Offer],
    spec: Deployment,
    sizing: Sizing,
    blocked: Mapping[str, str] | None = None,
    access: Mapping[tuple[str, str], str] | None = None,
) -> tuple[list[Candidate], list[Rejection]]:
    """`rank` over catalog groups (a region rejected as a whole) plus single offers (pools)."""
    rules = _Rules(spec, blocked or {}, access or {})
    candidates: list[Candidate] = []
    rejected: list[Rejection] = []
    last, in_order = ("", ""), True  # groups sorted by (target, region): no sort needed
    for group in groups:
        where = (group.target, group.region)
        in_order, last = in_order and where > last, where
        problem = rules.region_problem((group.target, group.region, group.country,
                                        group.jurisdiction))  # fmt: skip
        if problem is not None:
            # One shared reason for the region; the rows become rejections without a Python
            # call per row (this loop is most of a plan over a large catalog).
            code, reason = problem
            names = group.instance_types()  # the rows themselves stay unpickled
            cols = zip(repeat(group.target), repeat(group.region), names, repeat(reason),
                       repeat(code))  # fmt: skip
            rejected.extend(map(Rejection._make, cols))
            continue
        for view in group.views():  # rows in instance-type order
            verdict = evaluate(view, spec, sizing, rules=rules)
            (candidates if isinstance(verdict, Candidate) else rejected).append(verdict)
    others: list[Rejection] = []
    for offer in offers:
        verdict = evaluate(offer, spec, sizing, rules=rules)
        (candidates if isinstance(verdict, Candidate) else others).append(verdict)
    candidates.sort(key=_candidate_order)
    others.sort(key=_REJECTION_ORDER)
    if in_order and (
        not rejected or not others or _REJECTION_ORDER(rejected[-1]) <= _REJECTION_ORDER(others[0])
    ):
        return candidates, rejected + others  # already in (target, region, type) order
    rejected += others
    rejected.sort(key=_REJECTION_ORDER)
    return candidates, rejected


def targets_in_play(spec: Deployment, only: Sequence[str] | None) -> list[str]:
    """The spec's clouds, narrowed by --target when given."""
    clouds = list(spec.placement.clouds)
    if only:
        return [c for c in clouds if c in only]
    return clouds
