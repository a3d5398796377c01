"""
The planner: size the model, check every offer, rank the feasible ones, explain the rest.

Offline and deterministic: the same spec and catalog always give the same plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mdeploy._gc import long_lived_phase
from mdeploy.errors import InputError
from mdeploy.plan.engine import check_engine_args, engine_args
from mdeploy.plan.fit import Fit, Sizing, check_fit, size_model
from mdeploy.plan.models import Candidate, ModelSizing, Plan, Rejection
from mdeploy.plan.placement import HOURS_PER_MONTH, rank_catalog, targets_in_play
from mdeploy.spec.models import Deployment

__all__ = [
    "HOURS_PER_MONTH",
    "Candidate",
    "Fit",
    "ModelSizing",
    "Plan",
    "Rejection",
    "Sizing",
    "check_fit",
    "engine_args",
    "make_plan",
    "size_model",
    "sizing",
]


def sizing(spec: Deployment, *, base_dir: Path | None = None) -> Sizing:
    """Resolve the model's architecture and size it for the spec."""
    from mdeploy.catalog import resolve_model

    arch = resolve_model(spec.model, base_dir=base_dir)
    limit = arch.max_position_embeddings
    if limit and spec.model.max_context > limit:
        raise InputError(
            f"model.max_context: {spec.model.max_context} exceeds the {limit} tokens "
            f"{spec.model.id} was trained for; vLLM refuses to start",
            hint=f"set model.max_context to at most {limit}",
        )
    return size_model(arch, spec.model, spec.serving)


def make_plan(
    spec: Deployment,
    *,
    targets: Sequence[str] | None = None,
    base_dir: Path | None = None,
    blocked: Mapping[str, str] | None = None,
) -> Plan:
    """
    Every offer of the allowed targets, checked and ranked; `chosen` is the cheapest fit.

    Regions whose access is not open (opt-in, restricted, another partition) are rejected
    unless placement.regions names them.

    `blocked` maps targets that cannot deploy this spec to the reason
    (`mdeploy.targets.blocked_targets`); their offers are rejected with it.
    """
    from mdeploy.catalog import load_regions
    from mdeploy.catalog._store import offer_groups
    from mdeploy.plan.pools import pool_offers
    from mdeploy.target_names import pool_placements

    check_engine_args(spec)
    model_sizing = sizing(spec, base_dir=base_dir)
    clouds = targets_in_play(spec, targets)
    cluster_keys = pool_placements()  # offered from the spec's own pools, not the catalog
    with long_lived_phase():  # the catalog's offers and their candidates: one object each
        groups = offer_groups([c for c in clouds if c not in cluster_keys], include_flagged=True)
        pools = pool_offers(spec, [c for c in clouds if c in cluster_keys])
        access = {key: r.access for key, r in load_regions().items()}
        candidates, rejected = rank_catalog(groups, pools, spec, model_sizing, blocked, access)
    return Plan(
        model=ModelSizing(
            id=spec.model.id,
            params_b=model_sizing.params_b,
            weights_gib=model_sizing.weights_gib,
            kv_cache_gib=model_sizing.kv_cache_gib,
            kv_bytes_per_token=model_sizing.kv_bytes_per_token,
            sizing=model_sizing,
        ),
        chosen=candidates[0] if candidates else None,
        candidates=candidates,
        rejected=rejected,
    )
