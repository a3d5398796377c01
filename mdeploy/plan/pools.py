"""
User-declared Kubernetes node pools (placement.kubernetes.pools) as offers.

A pool is the user's own capacity: its price and location are what the spec says, and a GPU
size the spec leaves out is taken from the catalog's usable-memory figure for that GPU.
"""

from __future__ import annotations

from mdeploy.catalog import gpu_memory_gib
from mdeploy.catalog.models import Offer
from mdeploy.errors import InputError
from mdeploy.plan.policy import jurisdiction_of_country
from mdeploy.spec.models import Deployment, KubernetesPool

__all__ = ["pool_offers"]


def _gpu_memory(pool: KubernetesPool) -> float:
    if pool.gpu_memory_gib is not None:
        return pool.gpu_memory_gib
    try:
        return gpu_memory_gib(pool.gpu)
    except InputError as exc:
        raise InputError(
            f"placement.kubernetes.pools[{pool.name}].gpu: {exc.message}",
            hint=f"set gpu_memory_gib (usable GiB per GPU as nvidia-smi reports it); {exc.hint}",
        ) from None


def pool_offers(spec: Deployment) -> list[Offer]:
    """One `kubernetes` offer per declared pool."""
    kube = spec.placement.kubernetes
    if kube is None:
        return []
    return [
        Offer(
            target="kubernetes",
            region=pool.region,
            instance_type=pool.name,
            gpu=pool.gpu,
            gpu_count=pool.gpu_count,
            gpu_memory_gib=_gpu_memory(pool),
            hourly_usd=pool.hourly_usd,
            country=pool.country,
            jurisdiction=jurisdiction_of_country(pool.country),
            price_source="declared in spec" if pool.hourly_usd is not None else "none",
            estimate=False,
            source="spec placement.kubernetes.pools",
            extra={"gpu_class": pool.gpu_class or "", "pool": pool.name},
        )
        for pool in kube.pools
    ]
