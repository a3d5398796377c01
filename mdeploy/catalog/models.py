"""
Value objects of the offline catalog: GPU offers, regions and model architectures.

Plain frozen dataclasses: cheap to build from the bundled CSV files at import of a command,
no pydantic on the hot path. Nothing here touches the network or holds credentials.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Checkpoint", "License", "ModelArchitecture", "Offer", "Region"]


@dataclass(frozen=True)
class Offer:
    """One rentable GPU shape in one region of one target, priced per hour."""

    target: str  # aws | azure | gcp | coreweave | kubernetes
    region: str
    instance_type: str  # ml.g5.xlarge, Standard_NC24ads_A100_v4, g2-standard-8, gd-8xh100ib-i128
    gpu: str  # canonical GPU name: L4, A10G, A100, A100-80GB, H100, H200, L40S, ...
    gpu_count: int
    gpu_memory_gib: float  # usable GiB per GPU (the sizing rule's M, docs/sizing.md)
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
        """The `catalog offers --json` row (docs/contracts.md)."""
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
class License:
    """A model's licence as the catalog records it; `commercial` is yes, no or conditional."""

    name: str
    spdx: str | None = None
    commercial: str = "yes"  # yes | no | conditional
    condition: str | None = None
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Checkpoint:
    """One published set of weights of a model: its on-disk format and repository."""

    format: str  # bf16 | fp8 | nvfp4 | mxfp4 | awq | gptq | int8
    repo: str


@dataclass(frozen=True)
class ModelArchitecture:
    """
    The shape of a model that the sizing rule needs.

    The v2 fields (defaults keep v1 entries working) split the parameters by role, so a
    pre-quantized checkpoint can be sized part by part, and describe the KV cache per layer:
    `kv_width` elements per token per layer (2 x kv_heads x head_dim for GQA, kv_lora_rank +
    qk_rope_head_dim for MLA) for `layers - sliding_layers` full layers and `sliding_layers`
    layers that keep at most `sliding_window` tokens.
    """

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
    # ---- v2: architecture class and parameter split (billions)
    kind: str = "dense"  # dense | moe (Mixtral-style) | moe-fine (fine-grained / shared experts)
    attention: str = "gqa"  # gqa | mla
    params_b_active: float | None = None  # per token, MoE only
    expert_params_b: float = 0.0  # routed experts
    attention_params_b: float = 0.0  # attention projections (all layers)
    mlp_params_b: float | None = None  # dense MLPs and shared experts; None: v1 (no split)
    vision_params_b: float = 0.0  # vision tower + projector
    # ---- v2: KV cache layout
    kv_width: int | None = None  # None: 2 x kv_heads x head_dim
    sliding_layers: int = 0
    sliding_window: int | None = None
    # ---- v2: the checkpoint's own format when it is pre-quantized
    checkpoint: str | None = None  # fp8 | int8 | mxfp4 | nvfp4 | awq | gptq | int4
    checkpoint_bits: float | None = None  # bits per quantized weight, scales included
    unquantized: tuple[str, ...] = ()  # parts kept 16-bit: attention, mlp, experts
    torch_dtype: str | None = None
    quant_block: int | None = None  # weight_block_size of a block-quantized checkpoint
    tp_widths: tuple[int, ...] = ()  # MLP intermediate sizes each TP rank takes a slice of
    # ---- v2: catalog facts
    family: str | None = None
    release_date: str | None = None
    status: str | None = None
    checkpoints: tuple[Checkpoint, ...] = ()
    license: License | None = None
    notes: str = ""

    @property
    def kv_elements_per_token_layer(self) -> int:
        """K and V elements one token stores in one layer."""
        return self.kv_width if self.kv_width else 2 * self.kv_heads * self.head_dim

    @property
    def classes(self) -> str:
        """'dense', 'MoE', 'MoE+MLA', 'dense+sliding', ... for people reading the catalog."""
        parts = [{"dense": "dense", "moe": "MoE", "moe-fine": "fine-grained MoE"}[self.kind]]
        if self.attention == "mla":
            parts.append("MLA")
        if self.sliding_layers:
            parts.append("sliding")
        if self.vision_params_b:
            parts.append("vision")
        return "+".join(parts)

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["class"] = self.classes
        return row
