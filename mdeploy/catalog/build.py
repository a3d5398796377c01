"""
Build the bundled catalog (data/offers.csv, regions.csv, SOURCES.md) from the reference CSVs.

    python -m mdeploy.catalog.build --reference ../shared/reference/catalog

The output is a pure function of the reference files (no clock, no network), so rebuilding
from the same snapshot reproduces the committed files byte for byte; a test checks that.
Which rows become offers, and why, is decided here and written down in SOURCES.md:
SageMaker estimates, the Azure ML managed-endpoint SKUs, the Vertex AI prediction machines
and the CoreWeave rows. A region without a country is an error, never a silent default.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from mdeploy.catalog import _provenance as prov
from mdeploy.catalog._gpus import canonical_gpu, usable_memory
from mdeploy.catalog._store import BUNDLED_DIR, JURISDICTIONS, format_offers, format_regions
from mdeploy.catalog.models import Offer, Region
from mdeploy.errors import InputError, MdeployError

__all__ = ["build", "main"]

FlagKey = tuple[str, str, str, int, str]  # cloud, instance type, accelerator, count, region


def _rows(path: Path) -> Iterator[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh)
    except FileNotFoundError:
        raise InputError(
            f"reference file {path} is missing",
            hint="pass --reference pointing at shared/reference/catalog",
        ) from None


def _region(target: str, region: str, country: str, jurisdiction: str, notes: str) -> Region:
    if not re.fullmatch(r"[A-Z]{2}", country) or jurisdiction not in JURISDICTIONS:
        raise InputError(
            f"{target} region {region!r}: bad country {country!r} or jurisdiction {jurisdiction!r}",
            hint=f"country is ISO 3166-1 alpha-2, jurisdiction one of {', '.join(JURISDICTIONS)}",
        )
    access = prov.region_access(target, region)
    _check_access_notes(target, region, notes, access)
    return Region(target, region, country, jurisdiction, notes, access)


def _check_access_notes(target: str, region: str, notes: str, access: str) -> None:
    """The reference's notes and the access tables must agree, so neither drifts alone."""
    says_opt_in = target == "aws" and "opt-in region" in notes
    says_restricted = target == "azure" and "restricted-access region" in notes
    if says_opt_in != (target == "aws" and access == "opt-in") or (
        says_restricted and access != "restricted"
    ):
        raise InputError(
            f"{target} region {region!r}: sovereign_regions.csv notes {notes!r} disagree with "
            f"the region access table ({access})",
            hint="update the access tables in mdeploy/catalog/_provenance.py from the cloud's docs",
        )


def read_sovereign_regions(ref: Path) -> dict[tuple[str, str], Region]:
    """sovereign_regions.csv keyed by (cloud, region); SageMaker shares the aws rows."""
    return {
        (r["cloud"], r["region"]): _region(
            r["cloud"], r["region"], r["country"], r["jurisdiction"], r["notes"]
        )
        for r in _rows(ref / "sovereign_regions.csv")
    }


def read_flags(ref: Path) -> dict[FlagKey, str]:
    """price_flags.csv: rows whose source price looks wrong, with the reason."""
    return {
        (
            r["cloud"],
            r["instance_type"],
            r["accelerator"],
            int(r["accelerator_count"]),
            r["region"],
        ): r["reason"]
        for r in _rows(ref / "price_flags.csv")
    }


def _lookup(regions: dict[tuple[str, str], Region], cloud: str, region: str, f: str) -> Region:
    found = regions.get((cloud, region))
    if found is None:
        raise InputError(
            f"{f}: region {cloud}/{region} is not in sovereign_regions.csv",
            hint="add the region with its country and jurisdiction; no offer may lack them",
        )
    return found


# Reference rows whose per-GPU memory the reference itself marks unverified, corrected to the
# GPU table's sourced figure (mdeploy/catalog/_gpus.py): B300 "set to 268 ... I have not
# verified it" (reference SOURCES.md); NVIDIA states 288 GB HBM3e per B300.
_MEMORY_CORRECTIONS = {("B300", 268.0): 288.0}


def _nominal_gb(row: dict[str, str]) -> float:
    value = float(row["gpu_memory_gib_per_gpu"])
    return _MEMORY_CORRECTIONS.get((row["accelerator"], value), value)


def _offer(
    target: str,
    row: dict[str, str],
    where: Region,
    *,
    instance_type: str,
    price_basis: str,
    price_estimated: bool,
    source: str,
    extra: dict[str, str] | None = None,
) -> Offer:
    """One Offer from a reference row, with M, estimate marks and provenance applied."""
    gpu = canonical_gpu(row["accelerator"], _nominal_gb(row))
    memory, memory_estimated = usable_memory(gpu)
    price_source = price_basis + ("; memory estimated" if memory_estimated else "")
    return Offer(
        target=target,
        region=where.region,
        instance_type=instance_type,
        gpu=gpu,
        gpu_count=int(row["accelerator_count"]),
        gpu_memory_gib=memory,
        hourly_usd=float(row["price_usd_per_hour"]),
        country=where.country,
        jurisdiction=where.jurisdiction,
        price_source=price_source,
        estimate=price_estimated or memory_estimated,
        source=source,
        extra=extra or {},
    )


def _flag(offer: Offer, cloud: str, row: dict[str, str], flags: dict[FlagKey, str]) -> Offer:
    key = (cloud, row["instance_type"], row["accelerator"], int(row["accelerator_count"]))
    reason = flags.get((*key, row["region"]))
    return replace(offer, flagged=reason) if reason else offer


# ---------------------------------------------------------------- targets


def _sagemaker_rows(ref: Path) -> Iterator[tuple[dict[str, str], str]]:
    """
    The reference's SageMaker estimates, then rows derived by the same rule (EC2 × 1.25) for
    the SageMaker GPU types that file lacks (H200, B200, B300, RTX PRO 6000, A100-80GB).
    """
    seen = set()
    for row in _rows(ref / "aws_sagemaker_gpu.csv"):
        seen.add((row["instance_type"], row["region"]))
        yield row, prov.AWS.row_source
    derived_source = prov.AWS.row_source + "; " + prov.SAGEMAKER_DERIVED_NOTE
    for vm in _rows(ref / "aws_gpu_vms.csv"):
        name = "ml." + vm["instance_type"]
        if name not in prov.SAGEMAKER_GPU_TYPES or (name, vm["region"]) in seen:
            continue
        price = round(float(vm["price_usd_per_hour"]) * 1.25, 6)
        yield {**vm, "instance_type": name, "price_usd_per_hour": repr(price)}, derived_source


def aws_offers(ref: Path, regions: dict[tuple[str, str], Region]) -> list[Offer]:
    """Every SageMaker row: prices are EC2 × 1.25 estimates."""
    return [
        _offer(
            "aws",
            row,
            _lookup(regions, "aws", row["region"], "aws_sagemaker_gpu.csv"),
            instance_type=row["instance_type"],
            price_basis=prov.AWS.price_basis,
            price_estimated=True,
            source=source,
        )
        for row, source in _sagemaker_rows(ref)
    ]


def azure_offers(
    ref: Path, regions: dict[tuple[str, str], Region], flags: dict[FlagKey, str]
) -> list[Offer]:
    """Rows whose size Azure ML lists as a managed online endpoint SKU; VM list price."""
    f = "azure_gpu_vms.csv"
    offers = []
    for row in _rows(ref / f):
        sku = prov.AZURE_MANAGED_SKUS.get(row["instance_type"].upper())
        if sku is None:
            continue
        offer = _offer(
            "azure",
            row,
            _lookup(regions, "azure", row["region"], f),
            instance_type=row["instance_type"],
            price_basis=prov.AZURE.price_basis,
            price_estimated=False,
            source=prov.AZURE.row_source,
            extra={"quota_reserve_exempt": "true"} if sku.reserve_exempt else None,
        )
        offers.append(_flag(offer, "azure", row, flags))
    return offers


def gcp_offers(
    ref: Path, regions: dict[tuple[str, str], Region], flags: dict[FlagKey, str]
) -> list[Offer]:
    """Machine + GPU pairs Vertex AI prediction accepts; VM prices, so always estimates."""
    f = "gcp_gpu_vms.csv"
    offers = []
    for row in _rows(ref / f):
        accelerator_type = prov.vertex_accelerator(row["instance_type"], row["accelerator"])
        if accelerator_type is None:
            continue
        extra = {"accelerator_type": accelerator_type}
        note = prov.VERTEX_NOTES.get(row["instance_type"])
        if note:
            extra["note"] = note
        offer = _offer(
            "gcp",
            row,
            _lookup(regions, "gcp", row["region"], f),
            instance_type=row["instance_type"],
            price_basis=prov.GCP.price_basis,
            price_estimated=True,
            source=prov.GCP.row_source,
            extra=extra,
        )
        offers.append(_flag(offer, "gcp", row, flags))
    return offers


def _coreweave_region(row: dict[str, str]) -> Region:
    place = prov.parenthesised(row["notes"], "General Access AZ (") or "location not sourced"
    notes = f"{place}; CoreWeave General Access AZ"
    if "US-operated" in row["notes"]:
        notes += "; operated by a US company"
    return _region("coreweave", row["region"], row["country"], row["jurisdiction"], notes)


def coreweave_offers(ref: Path) -> tuple[list[Offer], list[Region]]:
    """The CoreWeave rows of k8s_gpu_offers.csv; the region is the availability zone."""
    offers, regions = [], {}
    for row in _rows(ref / "k8s_gpu_offers.csv"):
        if row["provider"] != "CoreWeave":
            continue
        where = _coreweave_region(row)
        regions[where.region] = where
        offer = _offer(
            "coreweave",
            row,
            where,
            instance_type=row["offer"],
            price_basis=prov.COREWEAVE.price_basis,
            price_estimated=row["price_currency_original"] != "USD",
            source=f"k8s_gpu_offers.csv: {row['source']} ({row['source_date']})",
            extra={**prov.coreweave_extra(row), **_coreweave_rdma(row)},
        )
        offers.append(offer)
    return offers, list(regions.values())


def _coreweave_rdma(row: dict[str, str]) -> dict[str, str]:
    """
    rdma true where the reference names the class "(InfiniBand)" (CW-AZ availability matrix,
    e.g. "NVIDIA HGX H100 (InfiniBand)", instance names like gd-8xh100ib-i128); else unknown:
    the notes do not say, which is not the same as Ethernet. Used by the topology rule
    (docs/topology.md): pipeline parallel across nodes without RDMA warns, expert parallel
    across nodes needs it.
    """
    if "(InfiniBand)" in row["notes"]:
        return {"rdma": "true", "rdma_source": "CW-AZ class name '(InfiniBand)'"}
    return {"rdma": "unknown"}


# ---------------------------------------------------------------- build


def _reference_date(ref: Path) -> str:
    text = (ref / "SOURCES.md").read_text(encoding="utf-8") if (ref / "SOURCES.md").exists() else ""
    found = re.search(r"Built (\d{4}-\d{2}-\d{2})", text)
    return found.group(1) if found else "unknown"


def _build_date(ref: Path, explicit: str | None) -> str:
    """--build-date, else SOURCE_DATE_EPOCH, else the reference snapshot's date (reproducible)."""
    if explicit:
        return explicit
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc).date().isoformat()
    return _reference_date(ref)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def build(ref: Path, out: Path, *, build_date: str | None = None) -> dict[str, int]:
    """Build the catalog from `ref` into `out`; return the offer count per target."""
    sovereign = read_sovereign_regions(ref)
    flags = read_flags(ref)
    try:
        cw_offers, cw_regions = coreweave_offers(ref)
        offers = [
            *aws_offers(ref, sovereign),
            *azure_offers(ref, sovereign, flags),
            *gcp_offers(ref, sovereign, flags),
            *cw_offers,
        ]
    except (ValueError, KeyError) as exc:  # an unknown GPU, a bad number, a missing column
        raise InputError(
            f"reference data in {ref} cannot be built: {exc}",
            hint="fix the reference row, or teach mdeploy/catalog/_gpus.py the new GPU",
        ) from None
    regions = [*sovereign.values(), *cw_regions]
    inputs = {name: _digest(ref / name) for name in prov.INPUT_FILES if (ref / name).exists()}
    sources = prov.sources_markdown(
        offers,
        inputs=inputs,
        reference_date=_reference_date(ref),
        build_date=_build_date(ref, build_date),
        regions=regions,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "offers.csv").write_text(format_offers(offers), encoding="utf-8")
    (out / "regions.csv").write_text(format_regions(regions), encoding="utf-8")
    (out / "SOURCES.md").write_text(sources, encoding="utf-8")
    counts: dict[str, int] = {}
    for o in offers:
        counts[o.target] = counts.get(o.target, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdeploy.catalog.build", description=__doc__)
    parser.add_argument(
        "--reference",
        type=Path,
        default=os.environ.get("MDEPLOY_REFERENCE_DIR"),
        help="reference catalog folder (default: $MDEPLOY_REFERENCE_DIR)",
    )
    parser.add_argument("--out", type=Path, default=BUNDLED_DIR, help="output folder")
    parser.add_argument("--build-date", help="date stamped in SOURCES.md (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    if args.reference is None:
        parser.error("--reference is required (or set MDEPLOY_REFERENCE_DIR)")
    try:
        counts = build(Path(args.reference), args.out, build_date=args.build_date)
    except MdeployError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    print(", ".join(f"{t} {n}" for t, n in counts.items()) + f" offers written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
