"""
The sizing rule, v2 (docs/sizing.md): does a model fit an offer, can its GPU run it?

Pure arithmetic on an architecture and an offer's GPU shape, plus the GPU table's compute
capability: no I/O. Every number the rule uses is reported back, so a person can check a
verdict by hand.

Tensor parallelism as vLLM applies it (checked 2026-12-06):
  - TP must divide the attention heads; GQA KV heads are split while tp <= kv_heads and
    replicated past it (tp must then be a multiple of kv_heads), so KV per GPU is
    KV / min(tp, kv_heads): the asserts and comments of vllm/model_executor/models/
    deepseek_v2.py and llama.py (docs.vllm.ai/en/latest/api/vllm/model_executor/models/
    deepseek_v2/, "we partition the KV heads" / "we replicate the KV heads");
  - MLA (DeepSeek-V3, Mistral Large 3) caches one latent of kv_lora_rank + qk_rope_head_dim
    per token and layer, shape [blocks, block_size, 1, kv_lora_rank + qk_rope_head_dim] on
    every TP rank (vllm/distributed/kv_transfer/kv_connector/utils.py comment, docs.vllm.ai
    v0.9.0): KV per GPU = KV, whatever the TP;
  - MoE experts are sharded across the TP ranks (or EP ranks, same total): weights / tp;
  - a block-quantized fp8 checkpoint needs each rank's intermediate slice to be a multiple of
    the block (vllm fp8.py create_weights; vllm-project/vllm#17569: Qwen3-235B-A22B-FP8 at
    TP8, 1536 / 8 = 192 not divisible by 128).
"""

from __future__ import annotations

from dataclasses import dataclass

from mdeploy.catalog._gpus import GPUS, gpu_spec
from mdeploy.catalog.models import License, ModelArchitecture
from mdeploy.errors import InputError
from mdeploy.spec.models import ModelSpec, Serving

__all__ = [
    "RESERVE_GIB",
    "TENSOR_PARALLEL_SIZES",
    "Fit",
    "Sizing",
    "check_fit",
    "licence_problem",
    "precision_problem",
    "size_model",
    "tensor_parallel_problem",
    "weight_bytes_per_param",
]

GIB = 1024**3
RESERVE_GIB = 2.0  # flat per-GPU reserve: CUDA context, activations, fragmentation
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)

# Lowest compute capability at which vLLM runs a weight format at all (native or through a
# Marlin weight-only kernel). Sources, checked 2026-12-06:
#   fp8   docs.vllm.ai features/quantization/fp8 (vllm-project/vllm main docs/features/
#         quantization/llm_compressor/fp8.md): W8A8 on CC >= 8.9; "FP8 models will run on
#         compute capability >= 7.5 (Turing) as weight-only W8A16, utilizing FP8 Marlin"
#   mxfp4, nvfp4  vllm main vllm/model_executor/layers/quantization/utils/marlin_utils_fp4.py
#         is_fp4_marlin_supported(): has_device_capability(75); native FP4 on CC >= 10.0;
#         vllm-project/recipes OpenAI/GPT-OSS.md: gpt-oss runs on A100 with Marlin MXFP4
#   awq, int8 (W8A8), int4  docs.vllm.ai features/quantization/supported_hardware: Turing+
#   gptq  same table: Volta+
_MIN_CC = {
    "fp8": (7, 5),
    "mxfp4": (7, 5),
    "nvfp4": (7, 5),
    "awq": (7, 5),
    "int8": (7, 5),
    "int4": (7, 5),
    "gptq": (7, 0),
}
_FORMAT_NAMES = {"fp8": "FP8", "mxfp4": "MXFP4", "nvfp4": "NVFP4", "awq": "AWQ", "gptq": "GPTQ"}


@dataclass(frozen=True)
class Sizing:
    """Model-wide memory needs, independent of the GPU it lands on."""

    params_b: float
    weights_gib: float
    kv_bytes_per_token: int  # all layers, for a token inside every window
    kv_cache_gib: float
    kv_heads: int
    attention_heads: int
    # ---- v2
    kv_replicated: bool = False  # MLA: every TP rank holds the whole latent cache
    weight_format: str = "bf16"  # bf16 | fp8 | int8 | awq | gptq | int4 | mxfp4 | nvfp4
    activation_dtype: str = "bfloat16"  # what the engine computes in (--dtype)
    pre_quantized: bool = False  # the checkpoint's own format, not the spec's
    full_layers: int = 0
    sliding_layers: int = 0
    sliding_window: int | None = None
    kv_bytes_per_token_layer: int = 0
    arch_class: str = "dense"
    params_b_active: float | None = None
    license: License | None = None
    quant_block: int | None = None
    tp_widths: tuple[int, ...] = ()


@dataclass(frozen=True)
class Fit:
    """The verdict for one GPU count and GPU size."""

    tensor_parallel: int
    required_gib_per_gpu: float  # weights/tp + KV/split + reserve
    usable_gib_per_gpu: float  # u × M
    weights_gib_per_gpu: float
    kv_gib_per_gpu: float
    reserve_gib_per_gpu: float = RESERVE_GIB

    @property
    def fits(self) -> bool:
        return self.required_gib_per_gpu <= self.usable_gib_per_gpu


def weight_bytes_per_param(model: ModelSpec) -> float:
    """Bytes per quantized weight when the engine quantizes a 16-bit checkpoint itself."""
    if model.quantization in ("awq", "gptq"):
        return 1.0 if model.dtype == "int8" else 0.5
    if model.dtype == "int4":
        return 0.5
    if model.quantization == "fp8" or model.dtype in ("fp8", "int8"):
        return 1.0
    return 2.0


def _embedding_params(arch: ModelArchitecture) -> float:
    """E = vocab × hidden × (1 if tied else 2); 0 when the shape is unknown."""
    if not arch.vocab_size or not arch.hidden_size:
        return 0.0
    return float(arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2))


def _checkpoint_bytes(arch: ModelArchitecture, linear: float) -> float:
    """
    A pre-quantized checkpoint: quantized parts at its bits, excluded parts at 16 bits.

    Norms, routers and biases (what is left of `linear` after the three parts) stay 16-bit;
    a v1 entry without the split counts everything as MLP.
    """
    assert arch.checkpoint_bits is not None
    experts = arch.expert_params_b * 1e9
    attention = arch.attention_params_b * 1e9
    mlp = linear - experts - attention if arch.mlp_params_b is None else arch.mlp_params_b * 1e9
    parts = {"experts": experts, "attention": attention, "mlp": mlp}
    quantized = sum(n for part, n in parts.items() if part not in arch.unquantized)
    return quantized * arch.checkpoint_bits / 8 + (linear - quantized) * 2


def _weights_gib(arch: ModelArchitecture, model: ModelSpec) -> float:
    if arch.weights_gib is not None:
        return arch.weights_gib
    params = arch.params_b * 1e9
    sixteen = min(_embedding_params(arch) + arch.vision_params_b * 1e9, params)
    linear = params - sixteen  # embeddings, LM head and the vision tower stay 16-bit
    if arch.checkpoint and arch.checkpoint_bits:
        return (_checkpoint_bytes(arch, linear) + sixteen * 2) / GIB
    return (linear * weight_bytes_per_param(model) + sixteen * 2) / GIB


def _weight_format(arch: ModelArchitecture, model: ModelSpec) -> tuple[str, bool]:
    """The format the engine loads, and whether it is the checkpoint's own."""
    if arch.checkpoint:
        wanted = model.quantization
        if wanted and wanted != arch.checkpoint:
            raise InputError(
                f"model.quantization: {wanted} but {arch.id} is a pre-quantized "
                f"{arch.checkpoint} checkpoint; vLLM loads it in its own format",
                hint="remove model.quantization (mdeploy sizes the checkpoint's format)",
            )
        return arch.checkpoint, True
    if model.quantization:
        return model.quantization, False
    if model.dtype in ("fp8", "int8", "int4"):
        return model.dtype, False
    return ("fp16" if model.dtype == "float16" else "bf16"), False


def _activation_dtype(arch: ModelArchitecture, model: ModelSpec) -> str:
    """--dtype when the spec sets one; else vLLM's auto: the config's torch_dtype (bf16)."""
    if model.dtype in ("bfloat16", "float16"):
        return model.dtype
    return "float16" if arch.torch_dtype == "float16" else "bfloat16"


def size_model(arch: ModelArchitecture, model: ModelSpec, serving: Serving) -> Sizing:
    """Weights and KV cache for the spec's dtype, context and concurrency."""
    weight_format, pre_quantized = _weight_format(arch, model)
    kv_b = 1 if serving.kv_cache_dtype == "fp8" else 2
    per_layer = arch.kv_elements_per_token_layer * kv_b
    sliding = min(arch.sliding_layers, arch.layers) if arch.sliding_window else 0
    full = arch.layers - sliding
    context = model.max_context
    window_tokens = min(arch.sliding_window or 0, context)
    per_sequence = per_layer * (full * context + sliding * window_tokens)
    return Sizing(
        params_b=arch.params_b,
        weights_gib=_weights_gib(arch, model),
        kv_bytes_per_token=per_layer * arch.layers,
        kv_cache_gib=per_sequence * serving.max_concurrency / GIB,
        kv_heads=arch.kv_heads,
        attention_heads=arch.attention_heads,
        kv_replicated=arch.attention == "mla",
        weight_format=weight_format,
        activation_dtype=_activation_dtype(arch, model),
        pre_quantized=pre_quantized,
        full_layers=full,
        sliding_layers=sliding,
        sliding_window=arch.sliding_window if sliding else None,
        kv_bytes_per_token_layer=per_layer,
        arch_class=arch.classes,
        params_b_active=arch.params_b_active,
        license=arch.license,
        quant_block=arch.quant_block if pre_quantized else None,
        tp_widths=arch.tp_widths,
    )


def tensor_parallel_problem(tp: int, sizing: Sizing) -> str | None:
    """Why `tp` GPUs cannot shard this model, or None when they can."""
    if tp not in TENSOR_PARALLEL_SIZES:
        return f"{tp} GPUs: tensor parallel runs on 1, 2, 4 or 8 GPUs"
    if sizing.attention_heads % tp:
        return f"tensor parallel {tp} does not divide {sizing.attention_heads} attention heads"
    block = sizing.quant_block
    for width in sizing.tp_widths if block else ():
        if width % tp or (width // tp) % block:
            return (
                f"tensor parallel {tp}: the block-quantized checkpoint's intermediate size "
                f"{width} / {tp} is not a multiple of its {block}-wide quantization blocks "
                "(vLLM refuses to load it); use fewer GPUs"
            )
    if sizing.kv_replicated:
        return None  # MLA: one latent per token, replicated on every rank
    if sizing.kv_heads % tp and tp % sizing.kv_heads:
        return f"tensor parallel {tp} and {sizing.kv_heads} KV heads do not divide each other"
    return None


def check_fit(sizing: Sizing, *, gpu_count: int, gpu_memory_gib: float, utilization: float) -> Fit:
    """Apply `weights/tp + KV/split + 2 GiB <= u × M` for tp = gpu_count."""
    tp = gpu_count
    weights = sizing.weights_gib / tp
    split = 1 if sizing.kv_replicated else min(tp, sizing.kv_heads)
    kv = sizing.kv_cache_gib / split  # KV heads replicate past kv_heads; MLA never splits
    return Fit(
        tensor_parallel=tp,
        required_gib_per_gpu=weights + kv + RESERVE_GIB,
        usable_gib_per_gpu=utilization * gpu_memory_gib,
        weights_gib_per_gpu=weights,
        kv_gib_per_gpu=kv,
    )


def precision_problem(gpu: str, sizing: Sizing) -> str | None:
    """Why `gpu` cannot run the model's dtype or checkpoint format, or None when it can."""
    spec = GPUS.get(gpu)
    if spec is None:
        try:
            spec = gpu_spec(gpu)
        except InputError:
            return None  # a pool's own GPU name: nothing known to check against
    cc = spec.compute_capability
    if cc == (0, 0):
        return None
    have = "{}.{}".format(*cc)
    if sizing.activation_dtype == "bfloat16" and not spec.bf16:
        return (
            f"bf16 needs compute capability 8.0 or newer; {spec.name} is {have} "
            "(vLLM refuses to start); set model.dtype: float16 or choose another GPU"
        )
    need = _MIN_CC.get(sizing.weight_format)
    if need is not None and cc < need:
        name = _FORMAT_NAMES.get(sizing.weight_format, sizing.weight_format)
        kind = "checkpoint" if sizing.pre_quantized else "weights"
        return (
            f"{name} {kind} need compute capability {need[0]}.{need[1]} or newer in vLLM; "
            f"{spec.name} is {have}"
        )
    return None


def licence_problem(license: License | None, model: ModelSpec) -> str | None:
    """Why prod refuses this model's licence, or None (unknown licences are not gated)."""
    if license is None or license.commercial == "yes":
        return None
    accepted = getattr(model, "license_accepted", None)
    if accepted and accepted.strip().casefold() == license.name.strip().casefold():
        return None
    label = license.name + (f" ({license.spdx})" if license.spdx else "")
    condition = f": {license.condition}" if license.condition else ""
    return (
        f"model licence {label} allows commercial use: {license.commercial}{condition}; "
        f"prod needs the acceptance recorded as model.license_accepted: {license.name!r}"
    )
