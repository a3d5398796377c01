"""
What the planner produces: the sizing of a model, ranked candidates and rejections.

`Plan.to_json()` is the public `plan --json` contract (docs/contracts.md); keep its keys stable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mdeploy.plan.fit import Sizing

__all__ = ["Candidate", "ModelSizing", "Plan", "Rejection"]


@dataclass(frozen=True)
class ModelSizing:
    id: str
    params_b: float
    weights_gib: float
    kv_cache_gib: float
    kv_bytes_per_token: int
    sizing: Sizing | None = field(default=None, compare=False)  # v2 detail: class, licence

    @property
    def license(self) -> dict[str, Any] | None:
        """The model's licence as the catalog records it; None when unknown."""
        lic = self.sizing.license if self.sizing else None
        return lic.to_json() if lic else None

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.id,
            "params_b": self.params_b,
            "weights_gib": round(self.weights_gib, 3),
            "kv_cache_gib": round(self.kv_cache_gib, 3),
            "kv_bytes_per_token": self.kv_bytes_per_token,
        }
        s = self.sizing
        if s is not None:
            row.update(
                {
                    "class": s.arch_class,
                    "params_b_active": s.params_b_active,
                    "weight_format": s.weight_format,
                    "pre_quantized": s.pre_quantized,
                    "activation_dtype": s.activation_dtype,
                    "kv_layers": {
                        "full": s.full_layers,
                        "sliding": s.sliding_layers,
                        "window": s.sliding_window,
                    },
                    "kv_replicated_across_tp": s.kv_replicated,
                    "license": self.license,
                }
            )
        return row


@dataclass(frozen=True)
class Candidate:
    """A feasible placement: one offer, the tensor parallelism it runs and its engine flags."""

    target: str
    region: str
    instance_type: str
    gpu: str
    gpu_count: int
    gpu_memory_gib: float
    tensor_parallel: int
    hourly_usd: float  # for serving.replicas.min replicas
    monthly_usd: float  # hourly × 730
    jurisdiction: str
    country: str
    price_source: str
    estimate: bool
    engine_args: list[str]
    required_gib_per_gpu: float = 0.0
    weights_gib_per_gpu: float = 0.0  # the three terms of required_gib_per_gpu
    kv_gib_per_gpu: float = 0.0
    reserve_gib_per_gpu: float = 0.0
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    # ---- replica topology (docs/topology.md); gpu_count is the GPUs of one pod
    nodes: int = 1
    pipeline_parallel: int = 1
    data_parallel: int = 1
    expert_parallel: int = 1
    node_gpu_count: int = 0  # GPUs of the offer's node; 0: same as gpu_count
    topology: str = ""  # `2 × 8×H100, TP8·PP2`
    worker_engine_args: list[str] = field(default_factory=list)  # nodes > 1: ranks 1..n-1
    notes: tuple[str, ...] = ()  # price basis, interconnect warnings
    priced: bool = True  # False: an own pool without hourly_usd (hourly_usd is then 0)

    def to_json(self) -> dict[str, Any]:
        row = self._base_json()
        row.update(
            {
                "nodes": self.nodes,
                "pipeline_parallel": self.pipeline_parallel,
                "data_parallel": self.data_parallel,
                "expert_parallel": self.expert_parallel,
                "node_gpu_count": self.node_gpu_count or self.gpu_count,
                "topology": self.topology,
                "worker_engine_args": list(self.worker_engine_args),
                "notes": list(self.notes),
            }
        )
        if not self.priced:
            row["hourly_usd"] = row["monthly_usd"] = None  # no price: never a guessed 0
        return row

    def _base_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "region": self.region,
            "instance_type": self.instance_type,
            "gpu": self.gpu,
            "gpu_count": self.gpu_count,
            "gpu_memory_gib": self.gpu_memory_gib,
            "tensor_parallel": self.tensor_parallel,
            "hourly_usd": round(self.hourly_usd, 4),
            "monthly_usd": round(self.monthly_usd, 2),
            "jurisdiction": self.jurisdiction,
            "country": self.country,
            "price_source": self.price_source,
            "estimate": self.estimate,
            "engine_args": list(self.engine_args),
            "required_gib_per_gpu": round(self.required_gib_per_gpu, 3),
            "weights_gib_per_gpu": round(self.weights_gib_per_gpu, 3),
            "kv_gib_per_gpu": round(self.kv_gib_per_gpu, 3),
            "reserve_gib_per_gpu": round(self.reserve_gib_per_gpu, 3),
        }


class _Once:
    """A zero-argument text builder that runs at most once."""

    __slots__ = ("build", "text")

    def __init__(self, build: Callable[[], str]) -> None:
        self.build, self.text = build, None

    def __call__(self) -> str:
        if self.text is None:
            self.text = self.build()
        return self.text


class Rejection(tuple):
    """
    Why one offer was not chosen: `code` (machine-readable kind: residency, target, access,
    region, gpu, arch, precision, price, budget, tp, memory) and `reason` (the sentence to act
    on).

    A tuple underneath (target, region, instance_type, reason, code), so a planner over a large
    catalog can build a whole region's rejections in C (`Rejection._make` over zipped columns)
    and sort them by their first three items. `reason` may be given as a zero-argument
    callable: the text is built the first time it is read (then kept), so a plan formats only
    the reasons its output shows. Equality, hashing, repr and `to_json` use the finished text.
    """

    __slots__ = ()

    def __new__(
        cls,
        target: str,
        region: str,
        instance_type: str,
        reason: str | Callable[[], str],
        code: str = "",
    ) -> Rejection:
        if not isinstance(reason, str):
            reason = _Once(reason)  # built once, on first read
        return tuple.__new__(cls, (target, region, instance_type, reason, code))

    _make = classmethod(tuple.__new__)  # from a ready (target, region, type, reason, code)

    target = property(itemgetter(0))
    region = property(itemgetter(1))
    instance_type = property(itemgetter(2))
    code = property(itemgetter(4))

    @property
    def reason(self) -> str:
        text = self[3]
        return text if isinstance(text, str) else text()

    def _key(self) -> tuple[str, str, str, str, str]:
        return (self[0], self[1], self[2], self.reason, self[4])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rejection) and self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Rejection(target={self[0]!r}, region={self[1]!r}, "
            f"instance_type={self[2]!r}, reason={self.reason!r}, code={self[4]!r})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self[0],
            "region": self[1],
            "instance_type": self[2],
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Plan:
    model: ModelSizing
    chosen: Candidate | None
    candidates: list[Candidate]
    rejected: list[Rejection]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.to_json(),
            "chosen": self.chosen.to_json() if self.chosen else None,
            "candidates": [c.to_json() for c in self.candidates],
            "rejected": [r.to_json() for r in self.rejected],
        }
