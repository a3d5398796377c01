"""
Questions people ask the catalog: which offers match these filters, which regions are in
this jurisdiction, what does each GPU cost and where is it offered.

Filters validate their values (an unknown GPU or jurisdiction is an InputError naming the
flag, not an empty answer) and results come back in the order tables show them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mdeploy.catalog._gpus import GPUS, gpu_spec
from mdeploy.catalog._store import JURISDICTIONS, load_offers, load_regions
from mdeploy.catalog.models import Offer, Region
from mdeploy.errors import InputError

__all__ = ["JURISDICTIONS", "GpuSummary", "find_offers", "find_regions", "gpu_summary"]


def _jurisdictions(values: Iterable[str]) -> set[str]:
    by_fold = {j.casefold(): j for j in JURISDICTIONS}
    out = set()
    for value in values:
        if value.casefold() not in by_fold:
            raise InputError(
                f"--jurisdiction {value!r} is not a jurisdiction",
                hint=f"use one of {', '.join(JURISDICTIONS)}",
            )
        out.add(by_fold[value.casefold()])
    return out


def _countries(values: Iterable[str]) -> set[str]:
    out = set()
    for value in values:
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise InputError(
                f"--country {value!r} is not an ISO 3166-1 alpha-2 code",
                hint="for example FR, DE, US, GB",
            )
        out.add(value.upper())
    return out


def _gpu(value: str) -> str:
    try:
        return gpu_spec(value).name
    except InputError as exc:
        raise InputError(f"--gpu {value!r} is not a GPU the catalog knows", hint=exc.hint) from None


def _price_order(o: Offer) -> tuple[str, float, str, str]:
    price = o.hourly_usd if o.hourly_usd is not None else float("inf")
    return (o.target, price, o.region, o.instance_type)


def find_offers(
    targets: Sequence[str] | None = None,
    *,
    gpus: Iterable[str] = (),
    regions: Iterable[str] = (),
    jurisdictions: Iterable[str] = (),
    countries: Iterable[str] = (),
    include_flagged: bool = False,
) -> list[Offer]:
    """Offers matching every given filter (each filter: any of its values), by target then price."""
    gpu_set = {_gpu(g) for g in gpus}
    region_set = {r.casefold() for r in regions}
    juris, country = _jurisdictions(jurisdictions), _countries(countries)
    offers = [
        o
        for o in load_offers(targets or None, include_flagged=include_flagged)
        if (not gpu_set or o.gpu in gpu_set)
        and (not region_set or o.region.casefold() in region_set)
        and (not juris or o.jurisdiction in juris)
        and (not country or o.country in country)
    ]
    return sorted(offers, key=_price_order)


def find_regions(
    targets: Sequence[str] | None = None,
    *,
    jurisdictions: Iterable[str] = (),
    countries: Iterable[str] = (),
) -> list[Region]:
    """Regions of the given targets (all if none) in the given jurisdictions or countries."""
    wanted = {t.lower() for t in targets or ()}
    juris, country = _jurisdictions(jurisdictions), _countries(countries)
    if wanted:
        load_offers(wanted)  # validates the target names
    return sorted(
        (
            r
            for r in load_regions().values()
            if (not wanted or r.target in wanted)
            and (not juris or r.jurisdiction in juris)
            and (not country or r.country in country)
        ),
        key=lambda r: (r.target, r.jurisdiction, r.region),
    )


@dataclass(frozen=True)
class GpuSummary:
    """One GPU as `catalog gpus` shows it."""

    gpu: str
    memory_gib: float
    memory: str  # HBM | GDDR
    estimated: bool
    targets: tuple[str, ...]
    offers: int
    min_usd_per_gpu_hour: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "gpu": self.gpu,
            "gpu_memory_gib": self.memory_gib,
            "memory": self.memory,
            "estimate": self.estimated,
            "targets": list(self.targets),
            "offers": self.offers,
            "min_usd_per_gpu_hour": self.min_usd_per_gpu_hour,
        }


def gpu_summary(*, include_flagged: bool = False) -> list[GpuSummary]:
    """Every GPU in the catalog with its M, where it is offered and its lowest $/GPU-hour."""
    by_gpu: dict[str, list[Offer]] = {}
    for o in load_offers(include_flagged=include_flagged):
        by_gpu.setdefault(o.gpu, []).append(o)
    rows = []
    for name, offers in by_gpu.items():
        spec = GPUS.get(name)
        per_gpu = [o.hourly_usd / o.gpu_count for o in offers if o.hourly_usd is not None]
        rows.append(
            GpuSummary(
                gpu=name,
                memory_gib=spec.usable_gib if spec else offers[0].gpu_memory_gib,
                memory=spec.memory if spec else "unknown",
                estimated=spec.estimated if spec else True,
                targets=tuple(sorted({o.target for o in offers})),
                offers=len(offers),
                min_usd_per_gpu_hour=round(min(per_gpu), 4) if per_gpu else None,
            )
        )
    return sorted(rows, key=lambda r: (r.memory_gib, r.gpu))
