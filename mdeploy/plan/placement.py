"""
Placement: check every offer of the allowed targets, rank what fits, explain the rest.

Checks run in a fixed order (residency, target, region, GPU, host CPU, price, budget, tensor
parallel, memory) so an offer's rejection names the first rule it breaks: the one to act on.
`blocked` maps a target that cannot deploy the spec at all to why (the caller asks the
targets: this layer does not import them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from mdeploy.catalog.models import Offer
from mdeploy.plan import policy
from mdeploy.plan.engine import engine_args
from mdeploy.plan.fit import Sizing, check_fit, tensor_parallel_problem
from mdeploy.plan.models import Candidate, Rejection
from mdeploy.spec.models import Deployment

__all__ = ["HOURS_PER_MONTH", "evaluate", "rank"]

HOURS_PER_MONTH = 730  # 365 × 24 / 12, the cloud billing convention


def _reject(offer: Offer, code: str, reason: str) -> Rejection:
    return Rejection(offer.target, offer.region, offer.instance_type, reason, code)


def _rule_problem(offer: Offer, spec: Deployment, blocked: Mapping[str, str]) -> Rejection | None:
    """The first placement rule (not memory) that `offer` breaks, if any."""
    placement = spec.placement
    if not policy.allows(
        placement.residency, country=offer.country, jurisdiction=offer.jurisdiction
    ):
        return _reject(
            offer,
            "residency",
            f"residency: {offer.region} is in {offer.country} ({offer.jurisdiction}), "
            f"outside {policy.describe(placement.residency)}",
        )
    if offer.target in blocked:
        return _reject(offer, "target", f"{offer.target} cannot deploy this spec: "
                                        f"{blocked[offer.target]}")  # fmt: skip
    if placement.regions and offer.region not in placement.regions:
        return _reject(offer, "region", "region not in placement.regions")
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
    if offer.hourly_usd is None:
        return _reject(offer, "price", "no list price to rank by; set hourly_usd for this pool")
    budget = placement.max_hourly_usd
    if budget is not None and offer.hourly_usd > budget:
        return _reject(
            offer,
            "budget",
            f"${offer.hourly_usd:.2f}/h per replica exceeds placement.max_hourly_usd ${budget:.2f}",
        )
    return None


def _memory_reason(offer: Offer, fit_required: float, fit_usable: float, spec: Deployment) -> str:
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
    offer: Offer, spec: Deployment, sizing: Sizing, blocked: Mapping[str, str] | None = None
) -> Candidate | Rejection:
    """Turn one offer into a candidate, or a rejection that says why and what to change."""
    problem = _rule_problem(offer, spec, blocked or {})
    if problem is not None:
        return problem
    tp_problem = tensor_parallel_problem(offer.gpu_count, sizing)
    if tp_problem:
        return _reject(offer, "tp", tp_problem)
    fit = check_fit(
        sizing,
        gpu_count=offer.gpu_count,
        gpu_memory_gib=offer.gpu_memory_gib,
        utilization=spec.serving.gpu_memory_utilization,
    )
    if not fit.fits:
        reason = _memory_reason(offer, fit.required_gib_per_gpu, fit.usable_gib_per_gpu, spec)
        return _reject(offer, "memory", reason)
    assert offer.hourly_usd is not None  # checked in _rule_problem
    hourly = offer.hourly_usd * spec.serving.replicas.min
    return Candidate(
        target=offer.target,
        region=offer.region,
        instance_type=offer.instance_type,
        gpu=offer.gpu,
        gpu_count=offer.gpu_count,
        gpu_memory_gib=offer.gpu_memory_gib,
        tensor_parallel=fit.tensor_parallel,
        hourly_usd=hourly,
        monthly_usd=hourly * HOURS_PER_MONTH,
        jurisdiction=offer.jurisdiction,
        country=offer.country,
        price_source=offer.price_source,
        estimate=offer.estimate,
        engine_args=engine_args(spec, fit.tensor_parallel),
        required_gib_per_gpu=fit.required_gib_per_gpu,
        extra=dict(offer.extra),
    )


def rank(
    offers: Iterable[Offer],
    spec: Deployment,
    sizing: Sizing,
    blocked: Mapping[str, str] | None = None,
) -> tuple[list[Candidate], list[Rejection]]:
    """All candidates cheapest first (ties: published price before estimate), and rejections."""
    candidates: list[Candidate] = []
    rejected: list[Rejection] = []
    for offer in offers:
        verdict = evaluate(offer, spec, sizing, blocked)
        (candidates if isinstance(verdict, Candidate) else rejected).append(verdict)
    candidates.sort(
        key=lambda c: (c.hourly_usd, c.estimate, c.gpu_count, c.target, c.region, c.instance_type)
    )
    rejected.sort(key=lambda r: (r.target, r.region, r.instance_type))
    return candidates, rejected


def targets_in_play(spec: Deployment, only: Sequence[str] | None) -> list[str]:
    """The spec's clouds, narrowed by --target when given."""
    clouds = list(spec.placement.clouds)
    if only:
        return [c for c in clouds if c in only]
    return clouds
