"""
Compare: the platform team's view, one row per target × region inside the residency.

Each row is the cheapest fitting offer there, or the reason nothing fits: the rejection that
came closest (a budget or memory miss says more than a GPU allow-list miss).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdeploy.plan.models import Candidate, Plan, Rejection
from mdeploy.spec.models import Deployment

__all__ = ["CompareRow", "compare_rows", "make_comparison", "to_csv", "to_markdown", "to_text"]

# Lower is closer to fitting: the reason to show when a region has no candidate.
_CLOSENESS = {"budget": 0, "memory": 1, "tp": 2, "price": 3, "arch": 4, "gpu": 5, "region": 6,
              "access": 7, "target": 8}  # fmt: skip


@dataclass(frozen=True)
class CompareRow:
    target: str
    region: str
    country: str
    jurisdiction: str
    best: Candidate | None
    reason: str  # why nothing fits; "" when best is set
    offers: int  # offers checked in this region

    def to_json(self) -> dict[str, Any]:
        best = self.best
        return {
            "target": self.target,
            "region": self.region,
            "country": self.country,
            "jurisdiction": self.jurisdiction,
            "fits": best is not None,
            "instance_type": best.instance_type if best else None,
            "gpu": best.gpu if best else None,
            "gpu_count": best.gpu_count if best else None,
            "tensor_parallel": best.tensor_parallel if best else None,
            "hourly_usd": round(best.hourly_usd, 4) if best and best.priced else None,
            "monthly_usd": round(best.monthly_usd, 2) if best and best.priced else None,
            "estimate": best.estimate if best else None,
            "topology": best.topology if best else None,
            "nodes": best.nodes if best else None,
            "pipeline_parallel": best.pipeline_parallel if best else None,
            "data_parallel": best.data_parallel if best else None,
            "expert_parallel": best.expert_parallel if best else None,
            "offers": self.offers,
            "reason": self.reason,
        }


def _closest(rejections: list[Rejection]) -> str:
    best = min(rejections, key=lambda r: _CLOSENESS.get(r.code, 9))
    if len(rejections) == 1:
        return best.reason
    return f"{best.instance_type}: {best.reason} (+{len(rejections) - 1} more offers rejected)"


def compare_rows(plan: Plan, locations: dict[tuple[str, str], tuple[str, str]]) -> list[CompareRow]:
    """
    Rows for every (target, region) whose offers passed residency.

    `locations` maps (target, region) → (country, jurisdiction) for the regions in play.
    """
    best: dict[tuple[str, str], Candidate] = {}
    counts: dict[tuple[str, str], int] = {}
    for cand in plan.candidates:  # cheapest first: the first seen per region wins
        key = (cand.target, cand.region)
        best.setdefault(key, cand)
        counts[key] = counts.get(key, 0) + 1
    misses: dict[tuple[str, str], list[Rejection]] = {}
    for rej in plan.rejected:
        if rej.code == "residency":
            continue
        key = (rej.target, rej.region)
        misses.setdefault(key, []).append(rej)
        counts[key] = counts.get(key, 0) + 1
    rows = []
    for key in sorted(set(best) | set(misses)):
        country, jurisdiction = locations.get(key, ("", ""))
        cand = best.get(key)
        rows.append(
            CompareRow(
                target=key[0],
                region=key[1],
                country=country,
                jurisdiction=jurisdiction,
                best=cand,
                reason="" if cand else _closest(misses[key]),
                offers=counts[key],
            )
        )
    rows.sort(
        key=lambda r: (r.best is None, r.best.hourly_usd if r.best else 0, r.target, r.region)
    )
    return rows


_COLUMNS = (
    "target region country jurisdiction fits instance_type gpu gpu_count tensor_parallel "
    "hourly_usd monthly_usd estimate reason"
).split()


def to_csv(rows: list[CompareRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.to_json())
    return out.getvalue()


def to_markdown(rows: list[CompareRow]) -> str:
    head = "| target | region | country | jurisdiction | offer | GPU | tp | $/h | $/month | note |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        if r.best:
            b = r.best
            note = "estimate" if b.estimate else ""
            cells = [b.instance_type, _gpus(b), str(b.tensor_parallel),
                     f"{b.hourly_usd:.2f}", f"{b.monthly_usd:,.0f}", note]  # fmt: skip
        else:
            cells = ["—", "—", "—", "—", "—", r.reason.replace("|", "\\|")]
        lines.append(
            "| " + " | ".join([r.target, r.region, r.country, r.jurisdiction, *cells]) + " |"
        )
    return "\n".join(lines) + "\n"


_TEXT_HEAD = ("target", "region", "where", "offer", "GPUs", "$/h", "$/month", "why not")
_RIGHT = {5, 6}  # money columns align right


def _gpus(b: Candidate) -> str:
    """`L40S×1`, or the topology for part of a node or several nodes (docs/topology.md)."""
    plain = b.nodes == 1 and b.gpu_count == (b.node_gpu_count or b.gpu_count)
    return f"{b.gpu}×{b.gpu_count}" if plain or not b.topology else b.topology


def _text_cells(r: CompareRow) -> list[str]:
    where = f"{r.country}/{r.jurisdiction}"
    b = r.best
    if b is None:
        return [r.target, r.region, where, "", "", "", "", r.reason]
    price = (f"${b.hourly_usd:,.2f}" if b.priced else "no price") + ("*" if b.estimate else "")
    return [r.target, r.region, where, b.instance_type, _gpus(b), price,
            f"${b.monthly_usd:,.0f}", ""]  # fmt: skip


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def to_text(rows: list[CompareRow], width: int = 100) -> str:
    """
    The compare table as plain text, at most `width` columns wide.

    Laid out in one pass over the cells (thousands of rows in milliseconds, where a general
    table layout engine takes seconds). Every column is as wide as its longest cell and the
    reason column gets what is left, cut with an ellipsis (`--json` has the full reason).
    When the columns themselves do not fit, each row is stacked on two lines instead, so an
    instance type or a region is never split or cut.
    """
    table = [list(_TEXT_HEAD), *(_text_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_TEXT_HEAD) - 1)]
    room = width - sum(widths) - 2 * len(widths)
    if room < len(_TEXT_HEAD[-1]):
        return _stacked_text(table[1:], width)
    out = []
    for line in table:
        cells = [
            cell.rjust(w) if i in _RIGHT else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=False))
        ]
        if line[3]:  # an offer fits: the reason column stays empty
            out.append(("  ".join(cells) + "  " + _clip(line[-1], room)).rstrip())
        else:  # no offer: the reason takes the offer columns too
            lead = "  ".join(cells[:3]) + "  "
            out.append(lead + _clip(line[-1], width - len(lead)))
    return "\n".join(out) + "\n"


def _stacked_text(cells: list[list[str]], width: int) -> str:
    """Two lines a row: where, then the offer (or why not), each cut only at the reason."""
    out = []
    for target, region, where, offer, gpus, hourly, monthly, reason in cells:
        out.append(_clip(f"{target}  {region}  {where}", width))
        if offer:
            detail = f"{offer} · {gpus} · {hourly}/h · {monthly}/month"
        else:
            detail = "why not: " + reason
        out.append(_clip("    " + detail, width))
    return "\n".join(out) + "\n"


def make_comparison(
    spec: Deployment,
    *,
    targets: Sequence[str] | None = None,
    base_dir: Path | None = None,
    blocked: Mapping[str, str] | None = None,
) -> tuple[Plan, list[CompareRow]]:
    """Plan the spec, then fold the plan into one row per target × region."""
    from mdeploy.catalog import load_regions
    from mdeploy.plan import make_plan
    from mdeploy.plan.pools import pool_offers

    plan = make_plan(spec, targets=targets, base_dir=base_dir, blocked=blocked)
    locations = {key: (r.country, r.jurisdiction) for key, r in load_regions().items()}
    for o in pool_offers(spec):
        locations[(o.target, o.region)] = (o.country, o.jurisdiction)
    return plan, compare_rows(plan, locations)
