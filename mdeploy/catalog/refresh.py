"""
Rebuild the catalog's prices from public price APIs into a directory MDEPLOY_CATALOG_DIR
can point at; the bundled catalog is never modified.

    mdeploy catalog refresh --out ~/.cache/mdeploy/catalog

- azure: Azure Retail Prices API (no auth) for every managed-endpoint SKU in the catalog.
- aws: AWS Price List bulk files for AmazonSageMaker (real-time Hosting): real SageMaker
  prices per region replace the EC2 × 1.25 estimates.
- gcp and coreweave: kept as they are. The Cloud Billing Catalog API needs an API key and
  does not price Vertex prediction nodes per machine type; CoreWeave publishes no price API.

GPU facts (canonical name, count, M) come from the current catalog's rows for the same
instance type, so a refreshed row differs from the bundled one only in price and provenance.
Nothing is written unless every requested fetch succeeded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mdeploy.catalog._prices import (
    AWS_PRICING_URL,
    AZURE_PRICES_URL,
    aws_sagemaker_prices,
    azure_prices,
)
from mdeploy.catalog._store import (
    CATALOG_DIR_ENV,
    catalog_dir,
    clear_caches,
    format_offers,
    format_regions,
    read_offers,
    read_regions,
)
from mdeploy.catalog.models import Offer, Region
from mdeploy.errors import CloudError, InputError

__all__ = [
    "AWS_URL_ENV",
    "AZURE_URL_ENV",
    "REFRESHABLE",
    "RefreshReport",
    "default_out_dir",
    "refresh",
]

AZURE_URL_ENV = "MDEPLOY_AZURE_PRICES_URL"
AWS_URL_ENV = "MDEPLOY_AWS_PRICING_URL"
REFRESHABLE = ("azure", "aws")
KEPT_NOTES = {
    "gcp": "gcp: kept the current rows; the Cloud Billing Catalog API needs an API key and "
    "has no per-machine Vertex prediction prices, so Compute Engine estimates remain",
    "coreweave": "coreweave: kept the current rows; CoreWeave publishes no price API",
}


@dataclass
class RefreshReport:
    """What a refresh wrote and everything a person should know about it."""

    out: Path
    fetched_at: str
    counts: dict[str, int]
    refreshed: list[str]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "fetched_at": self.fetched_at,
            "refreshed": self.refreshed,
            "offers": self.counts,
            "notes": self.notes,
        }


def default_out_dir() -> Path:
    """$XDG_CACHE_HOME/mdeploy/catalog, else ~/.cache/mdeploy/catalog."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "mdeploy" / "catalog"


def _templates(offers: Iterable[Offer], target: str) -> dict[str, Offer]:
    """One current offer per instance type: the GPU facts a refreshed price is attached to."""
    found: dict[str, Offer] = {}
    for o in sorted(offers, key=lambda o: (o.region, o.instance_type)):
        if o.target == target:
            found.setdefault(o.instance_type, o)
    return found


def _priced(template: Offer, region: Region, price: float, price_basis: str, source: str) -> Offer:
    memory_estimated = "memory estimated" in template.price_source
    return replace(
        template,
        region=region.region,
        hourly_usd=price,
        country=region.country,
        jurisdiction=region.jurisdiction,
        price_source=price_basis + ("; memory estimated" if memory_estimated else ""),
        estimate=memory_estimated,
        source=source,
        flagged=None,
    )


def _attach(
    target: str,
    prices: dict[tuple[str, str], float],
    templates: dict[str, Offer],
    regions: dict[tuple[str, str], Region],
    basis: str,
    source: str,
) -> tuple[list[Offer], list[str]]:
    offers, unknown = [], set()
    for (instance_type, region_name), price in sorted(prices.items()):
        region = regions.get((target, region_name))
        if region is None:
            unknown.add(region_name)
            continue
        offers.append(_priced(templates[instance_type], region, price, basis, source))
    if not offers:
        raise CloudError(f"{target}: the price API returned no usable price for any GPU type")
    notes = []
    if unknown:
        notes.append(
            f"{target}: skipped regions missing from regions.csv (no country known): "
            + ", ".join(sorted(unknown))
        )
    return offers, notes


def _refresh_azure(
    current: tuple[Offer, ...], regions: dict, url: str, timeout: float, stamp: str
) -> tuple[list[Offer], list[str]]:
    templates = _templates(current, "azure")
    prices = azure_prices(sorted(templates), base_url=url, timeout=timeout)
    basis = (
        "Azure Retail Prices API, Linux on-demand VM price (managed online deployments are "
        "billed as the VMs they run on)"
    )
    return _attach("azure", prices, templates, regions, basis, f"{url} (fetched {stamp})")


def _refresh_aws(
    current: tuple[Offer, ...], regions: dict, url: str, timeout: float, stamp: str
) -> tuple[list[Offer], list[str]]:
    templates = _templates(current, "aws")
    wanted_regions = [r for (t, r) in regions if t == "aws"]
    result = aws_sagemaker_prices(set(templates), wanted_regions, base_url=url, timeout=timeout)
    basis = "AWS Price List, SageMaker real-time Hosting on-demand price"
    versions = sorted(set(result.versions.values()))
    source = f"{url} AmazonSageMaker offer files {', '.join(versions)} (fetched {stamp})"
    offers, notes = _attach("aws", result.prices, templates, regions, basis, source)
    if result.unknown_gpu_types:
        notes.append(
            "aws: GPU instance types priced but not in the catalog's GPU table (skipped): "
            + ", ".join(sorted(result.unknown_gpu_types))
        )
    return offers, notes


def _sources_md(report: RefreshReport, base: Path) -> str:
    lines = [
        "# mdeploy catalog data: refreshed prices",
        "",
        f"Written by `mdeploy catalog refresh` at {report.fetched_at} from the catalog in "
        f"{base}. Use it with `export {CATALOG_DIR_ENV}={report.out}`.",
        "",
        f"- Refreshed from public price APIs: {', '.join(report.refreshed) or 'none'}.",
        *(f"- {note}" for note in report.notes),
        "",
        "| target | offers |",
        "|---|---|",
        *(f"| {t} | {n} |" for t, n in sorted(report.counts.items())),
        "",
        "Each row's `source` column names the API and the fetch time; `price_source` says "
        "what the price means. GPU memory M and GPU names are those of the base catalog.",
        "",
    ]
    return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def refresh(
    out: Path,
    *,
    targets: Iterable[str] = REFRESHABLE,
    azure_url: str | None = None,
    aws_url: str | None = None,
    timeout: float = 30.0,
) -> RefreshReport:
    """Fetch prices for `targets`, merge them with the current catalog, write it to `out`."""
    wanted = [t.lower() for t in targets]
    bad = [t for t in wanted if t not in REFRESHABLE]
    if bad:
        raise InputError(
            f"cannot refresh {', '.join(bad)}",
            hint=f"refreshable: {', '.join(REFRESHABLE)}; " + "; ".join(KEPT_NOTES.values()),
        )
    base = catalog_dir()
    current, regions = read_offers(base), read_regions(base)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    fetchers = {
        "azure": (_refresh_azure, azure_url or os.environ.get(AZURE_URL_ENV) or AZURE_PRICES_URL),
        "aws": (_refresh_aws, aws_url or os.environ.get(AWS_URL_ENV) or AWS_PRICING_URL),
    }
    fresh: dict[str, list[Offer]] = {}
    notes: list[str] = []
    for target in REFRESHABLE:
        if target in wanted:
            fetch, url = fetchers[target]
            fresh[target], target_notes = fetch(current, regions, url.rstrip("/"), timeout, stamp)
            notes += target_notes
    kept = [o for o in current if o.target not in fresh]
    offers = [*kept, *(o for batch in fresh.values() for o in batch)]
    notes += [note for t, note in KEPT_NOTES.items() if t not in fresh]
    counts: dict[str, int] = {}
    for o in offers:
        counts[o.target] = counts.get(o.target, 0) + 1
    report = RefreshReport(out, stamp, counts, sorted(fresh), notes)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomically(out / "offers.csv", format_offers(offers))
    _write_atomically(out / "regions.csv", format_regions(regions.values()))
    _write_atomically(out / "SOURCES.md", _sources_md(report, base))
    clear_caches()  # `out` may be the active catalog dir
    return report
