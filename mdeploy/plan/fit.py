"""
The sizing rule of DESIGN.md: does a model, at a context and concurrency, fit an offer?

Pure arithmetic on an architecture and an offer's GPU shape: no catalog lookups, no I/O.
Every number the rule uses is reported back, so a person can check a verdict by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdeploy.catalog.models import ModelArchitecture
from mdeploy.spec.models import ModelSpec, Serving

__all__ = [
    "RESERVE_GIB",
    "TENSOR_PARALLEL_SIZES",
    "Fit",
    "Sizing",
    "check_fit",
    "size_model",
    "tensor_parallel_problem",
    "weight_bytes_per_param",
]

GIB = 1024**3
RESERVE_GIB = 2.0  # flat per-GPU reserve: CUDA context, activations, fragmentation
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class Sizing:
    """Model-wide memory needs, independent of the GPU it lands on."""

    params_b: float
    weights_gib: float
    kv_bytes_per_token: int
    kv_cache_gib: float
    kv_heads: int
    attention_heads: int


@dataclass(frozen=True)
class Fit:
    """The verdict for one GPU count and GPU size."""

    tensor_parallel: int
    required_gib_per_gpu: float  # weights/tp + KV/min(tp, kv_heads) + reserve
    usable_gib_per_gpu: float  # u × M
    weights_gib_per_gpu: float
    kv_gib_per_gpu: float

    @property
    def fits(self) -> bool:
        return self.required_gib_per_gpu <= self.usable_gib_per_gpu


def weight_bytes_per_param(model: ModelSpec) -> float:
    """Bytes per (non-embedding) weight: 2 for 16-bit, 1 for fp8/int8, 0.5 for 4-bit."""
    if model.quantization in ("awq", "gptq") or model.dtype == "int4":
        return 0.5
    if model.quantization == "fp8" or model.dtype in ("fp8", "int8"):
        return 1.0
    return 2.0


def _embedding_params(arch: ModelArchitecture) -> float:
    """E = vocab × hidden × (1 if tied else 2); 0 when the shape is unknown."""
    if not arch.vocab_size or not arch.hidden_size:
        return 0.0
    return float(arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2))


def size_model(arch: ModelArchitecture, model: ModelSpec, serving: Serving) -> Sizing:
    """Weights and KV cache for the spec's dtype, context and concurrency."""
    if arch.weights_gib is not None:
        weights_gib = arch.weights_gib
    else:
        params = arch.params_b * 1e9
        embed = min(_embedding_params(arch), params)
        # Quantized checkpoints keep embeddings and the LM head in 16-bit.
        weights_gib = ((params - embed) * weight_bytes_per_param(model) + embed * 2) / GIB
    kv_b = 1 if serving.kv_cache_dtype == "fp8" else 2
    kv_per_token = 2 * arch.layers * arch.kv_heads * arch.head_dim * kv_b
    kv_cache_gib = kv_per_token * model.max_context * serving.max_concurrency / GIB
    return Sizing(
        params_b=arch.params_b,
        weights_gib=weights_gib,
        kv_bytes_per_token=kv_per_token,
        kv_cache_gib=kv_cache_gib,
        kv_heads=arch.kv_heads,
        attention_heads=arch.attention_heads,
    )


def tensor_parallel_problem(tp: int, sizing: Sizing) -> str | None:
    """Why `tp` GPUs cannot shard this model, or None when they can."""
    if tp not in TENSOR_PARALLEL_SIZES:
        return f"{tp} GPUs: tensor parallel runs on 1, 2, 4 or 8 GPUs"
    if sizing.attention_heads % tp:
        return f"tensor parallel {tp} does not divide {sizing.attention_heads} attention heads"
    if sizing.kv_heads % tp and tp % sizing.kv_heads:
        return f"tensor parallel {tp} and {sizing.kv_heads} KV heads do not divide each other"
    return None


def check_fit(sizing: Sizing, *, gpu_count: int, gpu_memory_gib: float, utilization: float) -> Fit:
    """Apply `weights/tp + KV/min(tp, kv_heads) + 2 GiB <= u × M` for tp = gpu_count."""
    tp = gpu_count
    weights = sizing.weights_gib / tp
    kv = sizing.kv_cache_gib / min(tp, sizing.kv_heads)  # KV heads replicate past kv_heads
    return Fit(
        tensor_parallel=tp,
        required_gib_per_gpu=weights + kv + RESERVE_GIB,
        usable_gib_per_gpu=utilization * gpu_memory_gib,
        weights_gib_per_gpu=weights,
        kv_gib_per_gpu=kv,
    )
