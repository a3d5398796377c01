"""
The catalog's files on disk: where they are, their CSV format, and a cached loader.

Contract: `offers.csv` holds one row per `Offer` (every field; per-target details in a compact
JSON column `extra`), `regions.csv` one row per `Region`. Both are written by `build.py` and
`refresh.py` through `write_offers` / `write_regions`, so the format lives in one place. The
bundled copy under `data/` is the default; `MDEPLOY_CATALOG_DIR` points at a refreshed one.
Stdlib csv only and parsed once per process: `mdeploy plan` pays a few milliseconds for it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from mdeploy.catalog.models import Offer, Region
from mdeploy.errors import InputError

__all__ = [
    "BUNDLED_DIR",
    "CATALOG_DIR_ENV",
    "JURISDICTIONS",
    "OFFER_COLUMNS",
    "REGION_COLUMNS",
    "TARGETS",
    "catalog_dir",
    "format_offers",
    "format_regions",
    "gpu_names",
    "load_offers",
    "load_regions",
    "read_offers",
    "read_regions",
]

BUNDLED_DIR = Path(__file__).parent / "data"
CATALOG_DIR_ENV = "MDEPLOY_CATALOG_DIR"
TARGETS = ("aws", "azure", "gcp", "coreweave", "kubernetes")
JURISDICTIONS = ("EU", "EEA", "UK", "CH", "US", "other")

OFFER_COLUMNS = (
    "target",
    "region",
    "instance_type",
    "gpu",
    "gpu_count",
    "gpu_memory_gib",
    "hourly_usd",
    "country",
    "jurisdiction",
    "estimate",
    "flagged",
    "price_source",
    "source",
    "extra",
)
REGION_COLUMNS = ("target", "region", "country", "jurisdiction", "notes")


def catalog_dir() -> Path:
    """The directory offers and regions are read from: the env override or the bundled one."""
    override = os.environ.get(CATALOG_DIR_ENV, "").strip()
    return Path(override).expanduser().resolve() if override else BUNDLED_DIR


# ---------------------------------------------------------------- format


def _number(value: float) -> str:
    """Shortest text that reads back as the same float, so rebuilds are byte-identical."""
    return repr(float(value))


def _offer_row(offer: Offer) -> list[str]:
    return [
        offer.target,
        offer.region,
        offer.instance_type,
        offer.gpu,
        str(offer.gpu_count),
        _number(offer.gpu_memory_gib),
        "" if offer.hourly_usd is None else _number(offer.hourly_usd),
        offer.country,
        offer.jurisdiction,
        "true" if offer.estimate else "false",
        offer.flagged or "",
        offer.price_source,
        offer.source,
        json.dumps(offer.extra, sort_keys=True, separators=(",", ":")) if offer.extra else "",
    ]


def _sort_key(offer: Offer) -> tuple[str, str, str, str, int]:
    return (offer.target, offer.region, offer.instance_type, offer.gpu, offer.gpu_count)


def format_offers(offers: Iterable[Offer]) -> str:
    """Render offers as the catalog CSV, in a stable order (target, region, instance type)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(OFFER_COLUMNS)
    for offer in sorted(offers, key=_sort_key):
        writer.writerow(_offer_row(offer))
    return buf.getvalue()


def format_regions(regions: Iterable[Region]) -> str:
    """Render regions as the catalog CSV, sorted by target then region."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REGION_COLUMNS)
    for r in sorted(regions, key=lambda r: (r.target, r.region)):
        writer.writerow([r.target, r.region, r.country, r.jurisdiction, r.notes])
    return buf.getvalue()


def _parse_offer(row: dict[str, str]) -> Offer:
    price = row["hourly_usd"]
    return Offer(
        target=row["target"],
        region=row["region"],
        instance_type=row["instance_type"],
        gpu=row["gpu"],
        gpu_count=int(row["gpu_count"]),
        gpu_memory_gib=float(row["gpu_memory_gib"]),
        hourly_usd=float(price) if price else None,
        country=row["country"],
        jurisdiction=row["jurisdiction"],
        price_source=row["price_source"],
        estimate=row["estimate"] == "true",
        source=row["source"],
        flagged=row["flagged"] or None,
        extra=json.loads(row["extra"]) if row["extra"] else {},
    )


def _open_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"catalog file {path} is missing",
            hint=f"run `mdeploy catalog refresh --out {path.parent}`, or unset "
            f"{CATALOG_DIR_ENV} to use the bundled catalog",
        ) from None
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != columns:
        raise InputError(
            f"{path}: unexpected columns {reader.fieldnames}",
            hint=f"expected {', '.join(columns)}; rebuild it with `mdeploy catalog refresh`",
        )
    return list(reader)


# ---------------------------------------------------------------- load


@cache
def read_offers(directory: Path) -> tuple[Offer, ...]:
    """Every offer in `directory/offers.csv`, flagged ones included; parsed once."""
    path = directory / "offers.csv"
    rows = _open_csv(path, OFFER_COLUMNS)
    try:
        return tuple(_parse_offer(row) for row in rows)
    except (ValueError, KeyError) as exc:
        raise InputError(f"{path}: malformed row: {exc}", hint="rebuild the catalog") from None


@cache
def read_regions(directory: Path) -> dict[tuple[str, str], Region]:
    """Every region in `directory/regions.csv`, keyed by (target, region)."""
    rows = _open_csv(directory / "regions.csv", REGION_COLUMNS)
    regions = (Region(**row) for row in rows)
    return {(r.target, r.region): r for r in regions}


def _check_targets(targets: Iterable[str]) -> set[str]:
    wanted = {t.strip().lower() for t in targets}
    unknown = sorted(wanted - set(TARGETS))
    if unknown:
        raise InputError(
            f"unknown target {', '.join(map(repr, unknown))}",
            hint=f"targets are {', '.join(TARGETS)}",
        )
    return wanted


def load_offers(
    targets: Iterable[str] | None = None, *, include_flagged: bool = False
) -> list[Offer]:
    """
    Offers the planner may rank, optionally for some targets only.

    Flagged offers (a source price that looks wrong) are left out unless `include_flagged`.
    `kubernetes` has no catalog rows: its offers are the spec's own node pools.
    """
    wanted = _check_targets(targets) if targets is not None else None
    return [
        o
        for o in read_offers(catalog_dir())
        if (wanted is None or o.target in wanted) and (include_flagged or o.flagged is None)
    ]


def load_regions() -> dict[tuple[str, str], Region]:
    """Region → country → jurisdiction for every target, keyed by (target, region)."""
    return dict(read_regions(catalog_dir()))


def gpu_names(*, include_flagged: bool = True) -> list[str]:
    """Canonical GPU names that appear in the catalog's offers, sorted."""
    offers = read_offers(catalog_dir())
    return sorted({o.gpu for o in offers if include_flagged or o.flagged is None})
