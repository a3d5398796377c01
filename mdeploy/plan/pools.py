"""
User-declared cluster node pools (`placement.<key>.pools`, e.g. placement.kubernetes) as offers.

A pool is the user's own capacity: its price and location are what the spec says, and a GPU
size the spec leaves out is taken from the catalog's usable-memory figure for that GPU. The
offers carry the placement key as their target (the target declaring it as `pool_placement`).
"""

from __future__ import annotations

from collections.abc import Collection

from mdeploy.catalog import gpu_memory_gib
from mdeploy.catalog.models import Offer
from mdeploy.errors import InputError
from mdeploy.plan.policy import jurisdiction_of_country
from mdeploy.spec.models import ClusterPool, Deployment

__all__ = ["pool_offers"]


def _gpu_memory(key: str, pool: ClusterPool) -> float:
    if pool.gpu_memory_gib is not None:
        return pool.gpu_memory_gib
    try:
        return gpu_memory_gib(pool.gpu)
    except InputError as exc:
        raise InputError(
            f"placement.{key}.pools[{pool.name}].gpu: {exc.message}",
            hint=f"set gpu_memory_gib (usable GiB per GPU as nvidia-smi reports it); {exc.hint}",
        ) from None


def pool_offers(spec: Deployment, keys: Collection[str] | None = None) -> list[Offer]:
    """One offer per declared pool of each cluster (only those in `keys` when given)."""
    return [
        _offer(key, pool)
        for key, cluster in spec.placement.clusters().items()
        if keys is None or key in keys
        for pool in cluster.pools
    ]


def _offer(key: str, pool: ClusterPool) -> Offer:
    return Offer(
        target=key,
        region=pool.region,
        instance_type=pool.name,
        gpu=pool.gpu,
        gpu_count=pool.gpu_count,
        gpu_memory_gib=_gpu_memory(key, pool),
        hourly_usd=pool.hourly_usd,
        country=pool.country,
        jurisdiction=jurisdiction_of_country(pool.country),
        price_source="declared in spec" if pool.hourly_usd is not None else "none",
        estimate=False,
        source=f"spec placement.{key}.pools",
        extra={"gpu_class": pool.gpu_class or "", "pool": pool.name},
    )
