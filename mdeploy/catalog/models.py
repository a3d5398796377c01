"""
Value objects of the offline catalog: GPU offers, regions and model architectures.

Plain frozen dataclasses: cheap to build from the bundled CSV files at import of a command,
no pydantic on the hot path. Nothing here touches the network or holds credentials.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ModelArchitecture", "Offer", "Region"]


@dataclass(frozen=True)
class Offer:
    """One rentable GPU shape in one region of one target, priced per hour."""

    target: str  # aws | azure | gcp | coreweave | kubernetes
    region: str
    instance_type: str  # ml.g5.xlarge, Standard_NC24ads_A100_v4, g2-standard-8, gd-8xh100ib-i128
    gpu: str  # canonical GPU name: L4, A10G, A100, A100-80GB, H100, H200, L40S, ...
    gpu_count: int
    gpu_memory_gib: float  # usable GiB per GPU (DESIGN.md sizing rule M)
    hourly_usd: float | None  # whole offer (all GPUs), on-demand list price; None = unknown
    country: str  # ISO 3166-1 alpha-2
    jurisdiction: str  # EU | EEA | UK | CH | US | other
    price_source: str  # short provenance of the price
    estimate: bool  # price or memory is estimated, not a published figure
    source: str  # provenance of the row (file, repository, commit, date)
    flagged: str | None = None  # reason the offer is left out of ranking
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # per-target details

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.target, self.region, self.instance_type)

    def to_json(self) -> dict[str, Any]:
        """The `catalog offers --json` row (DESIGN.md contract)."""
        row = asdict(self)
        row.pop("extra")
        if row["flagged"] is None:
            row.pop("flagged")
        return row


@dataclass(frozen=True)
class Region:
    """Where a target's region physically is, and under which law."""

    target: str
    region: str
    country: str
    jurisdiction: str
    notes: str = ""
    access: str = "open"  # open | opt-in | restricted | partition (see catalog SOURCES.md)


@dataclass(frozen=True)
class ModelArchitecture:
    """The shape of a model that the sizing rule needs."""

    id: str
    params_b: float
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int | None = None
    vocab_size: int | None = None
    tie_word_embeddings: bool = False
    weights_gib: float | None = None
    max_position_embeddings: int | None = None
    source: str = ""
