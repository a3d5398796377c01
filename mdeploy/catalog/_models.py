"""
Model architectures: the catalog's known models, local Hugging Face configs, and resolution.

`resolve_model` answers "what shape is this model?" for the planner, in a fixed order: the
spec's own `model.architecture` (numbers, or a `config:` path to a config.json), then a local
`model.source` directory holding config.json, then the catalog (the user's models file, then
the bundled `data/models.json`, matched by Hugging Face id, checkpoint repository or alias,
case-insensitive), else an InputError naming `model.id`. Reads local files only; never
downloads a config.

Sizing v2 (docs/sizing.md) reads a config.json into parameters by role and a KV layout, by
one code path for a local file and for every catalog entry:
    attention  GQA: hidden·(heads·hd) + 2·hidden·(kv·hd) + (heads·hd)·hidden [+ biases, q/k
               norms]; MLA (DeepSeek-V3 style): q (LoRA or full), kv_a = hidden·(kv_lora +
               rope), kv_b = kv_lora·heads·(nope + v), o = heads·v·hidden
    MLP        dense layers 3·hidden·intermediate (gated); MoE layers E routed experts of
               3·hidden·expert_intermediate, shared experts, a router hidden·E. Which layers
               are MoE: first_k_dense_replace/moe_layer_freq (DeepSeek), decoder_sparse_step/
               mlp_only_layers (Qwen), interleave_moe_layer_step/moe_layers (Llama 4), all
               layers otherwise (Mixtral, gpt-oss)
    total      layers·(attention + MLP + norms) + embeddings (+ LM head unless tied) + vision
    KV         per token and layer: 2·kv·hd elements (GQA) or kv_lora + rope (MLA); sliding
               layers (layer_types, Gemma's pattern, Llama 4 chunks) hold min(window, context)
A config the rules cannot size is an InputError naming the field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdeploy.catalog._store import BUNDLED_DIR, CATALOG_DIR_ENV, catalog_dir
from mdeploy.catalog.models import Checkpoint, License, ModelArchitecture
from mdeploy.errors import InputError

if TYPE_CHECKING:
    from mdeploy.spec.models import ModelSpec

__all__ = [
    "add_user_model",
    "architecture_from_config",
    "architecture_from_mapping",
    "estimate_params",
    "get_architecture",
    "load_models",
    "read_config",
    "resolve_model",
    "user_models_file",
]

_FIELDS = (
    "params_b",
    "layers",
    "attention_heads",
    "kv_heads",
    "head_dim",
    "hidden_size",
    "vocab_size",
    "tie_word_embeddings",
    "max_position_embeddings",
    "source",
)
_UNKNOWN_HINT = (
    "add model.architecture {params_b, layers, attention_heads, kv_heads, head_dim, "
    "hidden_size, vocab_size, tie_word_embeddings}, or model.architecture.config: PATH to a "
    "config.json, or point model.source at a directory with config.json"
)
# Model types whose config class ties the LM head to the embedding by default.
_TIED_BY_DEFAULT = ("gemma", "gemma2", "gemma3_text", "gemma3")
_QKV_BIAS_TYPES = ("qwen2", "qwen2_moe")
_QK_NORM_TYPES = ("qwen3", "qwen3_moe", "gemma3_text", "olmo2")
_EXPERT_KEYS = ("n_routed_experts", "num_experts", "num_local_experts")
_MAX_INT = 2**31 - 1  # no config dimension is larger; guards against hostile configs
_MAX_COUNT = 100_000  # layers, experts: sanity ceilings (lists are built per layer)
_MAX_DEPTH = 8
_MAX_ITEMS = 20_000
_MAX_CONFIG_BYTES = 4 * 1024 * 1024
USER_MODELS = "models.user.json"
V2_MODELS = "models_v2.json"


# ---------------------------------------------------------------- reading a config


def _guard(value: Any, where: str, path: str = "", depth: int = 0) -> None:
    """Refuse configs built to hurt: deep nesting, huge containers, absurd numbers."""
    if depth > _MAX_DEPTH:
        raise InputError(f"{where}: {path or 'config'} is nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        items: Sequence[Any] = list(value.values())
        if len(value) > _MAX_ITEMS:
            raise InputError(f"{where}: {path or 'config'} has more than {_MAX_ITEMS} keys")
        for key, item in value.items():
            _guard(item, where, f"{path}.{key}" if path else str(key), depth + 1)
        return
    if isinstance(value, list):
        if len(value) > _MAX_ITEMS:
            raise InputError(f"{where}: {path} has more than {_MAX_ITEMS} items")
        items = value
        for i, item in enumerate(items):
            _guard(item, where, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        digits = len(str(abs(value))) if abs(value) < 10**4000 else "thousands of"
        raise InputError(f"{where}: {path} is a {digits}-digit integer, not a plausible value")


def read_config(path: Path) -> tuple[Path, dict[str, Any]]:
    """A local config.json (or the folder holding it) as a checked JSON object."""
    file = path / "config.json" if path.is_dir() else path
    try:
        if file.stat().st_size > _MAX_CONFIG_BYTES:
            raise InputError(f"{file}: larger than 4 MiB; that is not a config.json")
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{file} does not exist", hint=_UNKNOWN_HINT) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{file} is not valid JSON: {exc}", hint=_UNKNOWN_HINT) from None
    except (RecursionError, ValueError) as exc:  # deep nesting, 5000-digit integers
        raise InputError(f"{file} cannot be read as a config: {exc}") from None
    except OSError as exc:
        raise InputError(f"{file} cannot be read: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: expected a JSON object", hint=_UNKNOWN_HINT)
    _guard(data, str(file))
    return file, data


def _int(
    config: Mapping[str, Any],
    key: str,
    where: str,
    *,
    default: int | None = None,
    low: int = 1,
    high: int = _MAX_INT,
) -> int:
    value = config.get(key, default) if config.get(key) is not None else default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(
            f"{where}: {key} is missing or not an integer in {low}..{high} "
            f"({str(config.get(key))[:40]!r})",
            hint=_UNKNOWN_HINT,
        )
    return value


def _opt_int(config: Mapping[str, Any], key: str, where: str, *, low: int = 1) -> int | None:
    return None if config.get(key) is None else _int(config, key, where, low=low)


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Multimodal configs (Mistral 3, Gemma 3, Llama 4) keep the language model in text_config."""
    nested = config.get("text_config")
    if "num_hidden_layers" not in config and isinstance(nested, Mapping):
        return nested
    return config


def _tied(config: Mapping[str, Any], raw: Mapping[str, Any]) -> bool:
    for source in (config, raw):
        value = source.get("tie_word_embeddings")
        if isinstance(value, bool):
            return value
    return config.get("model_type") in _TIED_BY_DEFAULT


# ---------------------------------------------------------------- architecture rules


@dataclass(frozen=True)
class _Attention:
    params: int  # per layer
    heads: int
    kv_heads: int  # 1 for MLA: the latent is shared by every head (and every TP rank)
    head_dim: int
    kv_width: int  # K+V elements per token per layer
    kind: str  # gqa | mla


def _mla(c: Mapping[str, Any], where: str, hidden: int, heads: int) -> _Attention:
    """Multi-head latent attention: DeepSeek-V2/V3, Kimi K2, Mistral Large 3."""
    kv_lora = _int(c, "kv_lora_rank", where)
    rope = _int(c, "qk_rope_head_dim", where)
    nope = _int(c, "qk_nope_head_dim", where, default=0, low=0)
    v = _int(c, "v_head_dim", where)
    q_lora = _opt_int(c, "q_lora_rank", where)
    qk = nope + rope
    q = hidden * q_lora + q_lora + q_lora * heads * qk if q_lora else hidden * heads * qk
    kv = hidden * (kv_lora + rope) + kv_lora + kv_lora * heads * (nope + v)
    return _Attention(q + kv + heads * v * hidden, heads, 1, qk, kv_lora + rope, "mla")


def _attention(c: Mapping[str, Any], where: str, hidden: int) -> _Attention:
    heads = _int(c, "num_attention_heads", where)
    if c.get("kv_lora_rank") is not None:
        return _mla(c, where, hidden, heads)
    kv = _int(c, "num_key_value_heads", where, default=heads)
    if heads % kv:
        raise InputError(f"{where}: num_key_value_heads {kv} must divide {heads} heads")
    if c.get("head_dim") is not None:
        head_dim = _int(c, "head_dim", where)
    elif hidden % heads:
        raise InputError(f"{where}: hidden_size {hidden} is not a multiple of {heads} heads")
    else:
        head_dim = hidden // heads
    q, kv_width = heads * head_dim, kv * head_dim
    params = hidden * q + 2 * hidden * kv_width + q * hidden
    if c.get("attention_bias") or c.get("model_type") in _QKV_BIAS_TYPES:
        params += q + 2 * kv_width
    if c.get("model_type") in _QK_NORM_TYPES:
        params += 2 * head_dim
    if c.get("model_type") == "gpt_oss":
        params += heads  # attention sinks
    return _Attention(params, heads, kv, head_dim, 2 * kv_width, "gqa")


@dataclass(frozen=True)
class _Mlp:
    dense: int  # all layers: dense MLPs and shared experts
    experts: int  # all layers: routed experts
    experts_active: int  # all layers: the routed experts one token uses
    other: int  # routers and expert biases
    kind: str  # dense | moe | moe-fine
    widths: tuple[int, ...] = ()  # intermediate sizes the TP ranks split


def _expert_count(c: Mapping[str, Any], where: str) -> tuple[str, int] | None:
    found = [(k, c[k]) for k in _EXPERT_KEYS if c.get(k) not in (None, 0)]
    if not found:
        return None
    if len({v for _, v in found}) > 1:
        names = " and ".join(f"{k}={v!r}" for k, v in found)
        raise InputError(f"{where}: {names} disagree; cannot tell how many experts there are")
    key = found[0][0]
    return key, _int(c, key, where, high=_MAX_COUNT)


def _moe_layers(c: Mapping[str, Any], where: str, key: str, layers: int) -> list[int]:
    """Indices of the MoE layers, by each family's own config keys."""
    if isinstance(c.get("moe_layers"), list):
        picked = c["moe_layers"]
        if not all(isinstance(i, int) and 0 <= i < layers for i in picked):
            raise InputError(f"{where}: moe_layers must list layer indices below {layers}")
        return sorted(set(picked))
    if key == "n_routed_experts":
        first = _int(c, "first_k_dense_replace", where, default=0, low=0)
        freq = _int(c, "moe_layer_freq", where, default=1)
        return [i for i in range(layers) if i >= first and i % freq == 0]
    if c.get("decoder_sparse_step") is not None or c.get("mlp_only_layers"):
        step = _int(c, "decoder_sparse_step", where, default=1)
        dense = c.get("mlp_only_layers") or []
        if not isinstance(dense, list):
            raise InputError(f"{where}: mlp_only_layers must be a list of layer indices")
        return [i for i in range(layers) if i not in dense and (i + 1) % step == 0]
    step = _int(c, "interleave_moe_layer_step", where, default=1)
    return [i for i in range(layers) if (i + 1) % step == 0]


def _mlp(c: Mapping[str, Any], where: str, hidden: int, layers: int) -> _Mlp:
    experts = _expert_count(c, where)
    if experts is None:
        inter = _int(c, "intermediate_size", where)
        return _Mlp(layers * 3 * hidden * inter, 0, 0, 0, "dense", (inter,))
    key, count = experts
    moe = _moe_layers(c, where, key, layers)
    fine = c.get("moe_intermediate_size") is not None
    expert_inter = _int(c, "moe_intermediate_size" if fine else "intermediate_size", where)
    top_k_key = "num_experts_per_tok" if "num_experts_per_tok" in c else "experts_per_token"
    top_k = _opt_int(c, top_k_key, where) or 0  # 0: unknown, no active count
    if top_k > count:
        raise InputError(f"{where}: num_experts_per_tok {top_k} exceeds {count} experts")
    shared = 0
    if c.get("n_shared_experts"):
        shared = _int(c, "n_shared_experts", where) * 3 * hidden * expert_inter
    elif c.get("shared_expert_intermediate_size"):
        shared = 3 * hidden * _int(c, "shared_expert_intermediate_size", where)
    elif str(c.get("model_type", "")).startswith("llama4"):
        shared = 3 * hidden * expert_inter  # Llama 4: one shared expert per MoE layer
    one_expert = 3 * hidden * expert_inter
    other = len(moe) * hidden * count
    if c.get("model_type") == "gpt_oss":  # router bias and expert biases
        other += len(moe) * (count + count * (2 * expert_inter + hidden))
    dense_layers = layers - len(moe)
    dense = len(moe) * shared
    widths: tuple[int, ...] = (expert_inter,)
    if dense_layers:
        dense_key = (
            "intermediate_size_mlp" if c.get("intermediate_size_mlp") else "intermediate_size"
        )
        widths += (_int(c, dense_key, where),)
        dense += dense_layers * 3 * hidden * widths[-1]
    kind = "moe-fine" if fine or shared else "moe"
    routed, active = len(moe) * count * one_expert, len(moe) * top_k * one_expert
    return _Mlp(dense, routed, active, other, kind, widths)


def _layer_types(c: Mapping[str, Any], where: str, layers: int) -> list[str] | None:
    types = c.get("layer_types")
    if types is None:
        return None
    if not isinstance(types, list) or len(types) != layers:
        raise InputError(f"{where}: layer_types must list one entry for each of {layers} layers")
    return [str(t) for t in types]


def _sliding(c: Mapping[str, Any], where: str, layers: int) -> tuple[int, int | None]:
    """(layers whose KV is capped, the cap in tokens); (0, None) when every layer is full."""
    if c.get("use_sliding_window") is False:
        return 0, None
    chunk = c.get("attention_chunk_size")
    if chunk is not None and str(c.get("model_type", "")).startswith("llama4"):
        size = _int(c, "attention_chunk_size", where)
        nope = c.get("no_rope_layers")
        if isinstance(nope, list) and len(nope) == layers:  # 1 = RoPE = chunked local layer
            return sum(1 for flag in nope if flag), size
        return layers - layers // 4, size  # transformers' default: every 4th layer global
    types = _layer_types(c, where, layers)
    if c.get("sliding_window") is None:
        return 0, None
    window = _int(c, "sliding_window", where)
    if types is not None:
        return sum(1 for t in types if t == "sliding_attention"), window
    pattern = c.get("sliding_window_pattern")
    if pattern is None and c.get("model_type") == "gemma3_text":
        pattern = 6  # Gemma 3's default: five local layers, then a global one
    if pattern is not None:
        every = _int(c, "sliding_window_pattern", where, default=pattern)
        return layers - layers // every, window
    if c.get("model_type") == "gemma2":
        return (layers + 1) // 2, window  # even layers slide
    # A window on every layer with no layout (Mistral 7B v0.1) is sized as full: conservative.
    return 0, None


def _vision(raw: Mapping[str, Any], text_hidden: int) -> int:
    """A ViT tower and its projector; 0 when the vision config is absent or not ViT-shaped."""
    v = raw.get("vision_config")
    if not isinstance(v, Mapping):
        return 0
    values = [v.get(k) for k in ("hidden_size", "intermediate_size", "patch_size")]
    layers = v.get("num_hidden_layers") or v.get("depth")
    if not all(isinstance(x, int) and 0 < x <= _MAX_INT for x in [*values, layers]):
        return 0
    h, inter, patch = values
    gated = v.get("hidden_act") == "silu" or v.get("model_type") == "pixtral"
    per_layer = 4 * h * h + 4 * h + (3 if gated else 2) * h * inter + inter + 5 * h
    channels = v.get("num_channels") if isinstance(v.get("num_channels"), int) else 3
    image = v.get("image_size") if isinstance(v.get("image_size"), int) else 0
    positions = (image // patch) ** 2 * h if image else 0
    merge = raw.get("spatial_merge_size") or v.get("spatial_merge_size") or 1
    merge = merge if isinstance(merge, int) and 0 < merge <= 8 else 1
    projector = h * merge * merge * text_hidden + text_hidden * text_hidden
    return layers * per_layer + channels * patch * patch * h + positions + projector


# ---------------------------------------------------------------- quantization_config

_FP4_BITS = {"mxfp4": 4.25, "nvfp4": 4.5}  # 4-bit values + one 8-bit scale per 32 / per 16


def _group_bits(bits: int, group: Any) -> float:
    """Integer weights with one 16-bit scale and a `bits` zero point per group."""
    if not isinstance(group, int) or isinstance(group, bool) or group <= 0:
        return float(bits)  # per-channel: scales are negligible
    return bits + (16 + bits) / group


def _compressed_tensors(q: Mapping[str, Any], where: str) -> tuple[str, float]:
    fmt = str(q.get("format", ""))
    if "nvfp4" in fmt:
        return "nvfp4", _FP4_BITS["nvfp4"]
    groups = q.get("config_groups")
    weights = None
    if isinstance(groups, Mapping) and groups:
        first = next(iter(groups.values()))
        weights = first.get("weights") if isinstance(first, Mapping) else None
    if not isinstance(weights, Mapping):
        raise InputError(f"{where}: quantization_config.config_groups has no weights scheme")
    bits = _int(weights, "num_bits", where)
    if weights.get("type") == "float":
        if bits == 8:
            return "fp8", 8.0
        if bits == 4:
            return "nvfp4", _FP4_BITS["nvfp4"]
    elif bits in (4, 8):
        return ("int4" if bits == 4 else "int8"), _group_bits(bits, weights.get("group_size"))
    raise InputError(f"{where}: quantization_config: {bits}-bit {weights.get('type')} weights")


def _quant_format(q: Mapping[str, Any], where: str) -> tuple[str, float]:
    method = str(q.get("quant_method", "")).lower()
    if method in ("fp8", "fbgemm_fp8"):
        return "fp8", 8.0
    if method in _FP4_BITS:
        return method, _FP4_BITS[method]
    if method in ("modelopt", "modelopt_fp4"):
        algo = str(q.get("quant_algo", "")).upper()
        if "FP4" in algo:
            return "nvfp4", _FP4_BITS["nvfp4"]
        if "FP8" in algo:
            return "fp8", 8.0
        raise InputError(f"{where}: quantization_config.quant_algo {algo!r} is not sized")
    if method in ("awq", "gptq"):
        bits = _int(q, "bits" if "bits" in q else "w_bit", where, default=4)
        group = q.get("group_size", q.get("q_group_size", 128))
        return method, _group_bits(bits, group)
    if method == "compressed-tensors":
        return _compressed_tensors(q, where)
    raise InputError(
        f"{where}: quantization_config.quant_method {method!r} is not one the sizing rule knows "
        "(fp8, fbgemm_fp8, mxfp4, modelopt/nvfp4, awq, gptq, compressed-tensors)",
        hint="set model.architecture.weights_gib to the checkpoint's size on disk",
    )


def _unquantized_parts(q: Mapping[str, Any]) -> tuple[str, ...]:
    """Which parts a checkpoint keeps in 16-bit, from its exclusion list."""
    patterns: list[str] = []
    for key in ("modules_to_not_convert", "ignore", "ignored_layers", "exclude_modules"):
        value = q.get(key)
        if isinstance(value, list):
            patterns += [str(p) for p in value]
    parts = set()
    for p in patterns:
        if "attn" in p or "attention" in p:
            parts.add("attention")
        elif "shared_expert" in p or re.search(r"(^|\.)(mlp|feed_forward)(\.\*)?$", p):
            parts.add("mlp")
        elif re.search(r"experts(\.\*)?$", p):
            parts.add("experts")
    return tuple(sorted(parts))


def _quantization(raw: Mapping[str, Any], text: Mapping[str, Any], where: str) -> tuple:
    q = raw.get("quantization_config") or text.get("quantization_config")
    if q is None:
        return None, None, ()
    if not isinstance(q, Mapping):
        raise InputError(f"{where}: quantization_config must be an object")
    fmt, bits = _quant_format(q, where)
    return fmt, bits, _unquantized_parts(q)


def _quant_block(raw: Mapping[str, Any], text: Mapping[str, Any]) -> int | None:
    """weight_block_size[0] of a block-quantized checkpoint (DeepSeek-style fp8), else None."""
    q = raw.get("quantization_config") or text.get("quantization_config")
    block = q.get("weight_block_size") if isinstance(q, Mapping) else None
    if isinstance(block, list) and block and isinstance(block[0], int) and 0 < block[0] < 2**16:
        return block[0]
    return None


# ---------------------------------------------------------------- the one code path


def architecture_from_mapping(
    raw: Mapping[str, Any], *, where: str, model_id: str | None = None, source: str = ""
) -> ModelArchitecture:
    """
    Size a config.json's contents: the same code for a local file and a catalog entry.

    Parameters are computed by role (module docstring), so a pre-quantized checkpoint can keep
    its 16-bit parts 16-bit and MoE models report active parameters.
    """
    _guard(raw, where)
    c = _text_config(raw)
    hidden = _int(c, "hidden_size", where)
    layers = _int(c, "num_hidden_layers", where, high=_MAX_COUNT)
    vocab = _int(c, "vocab_size", where)
    attn = _attention(c, where, hidden)
    mlp = _mlp(c, where, hidden, layers)
    tied = _tied(c, raw)
    embed = vocab * hidden * (1 if tied else 2)
    norms = layers * 2 * hidden + hidden
    vision = _vision(raw, hidden)
    total = layers * attn.params + mlp.dense + mlp.experts + mlp.other + norms + embed + vision
    if total > 10**14:
        raise InputError(f"{where}: the config describes {total / 1e12:.0f} T parameters")
    sliding, window = _sliding(c, where, layers)
    fmt, bits, unquantized = _quantization(raw, c, where)
    max_pos = c.get("max_position_embeddings")
    dtype = c.get("torch_dtype") or c.get("dtype") or raw.get("torch_dtype") or raw.get("dtype")
    active = None
    if mlp.kind != "dense" and mlp.experts_active:
        active = round((total - mlp.experts + mlp.experts_active) / 1e9, 3)
    return ModelArchitecture(
        id=model_id or str(raw.get("_name_or_path") or "local-model"),
        params_b=total / 1e9,
        layers=layers,
        attention_heads=attn.heads,
        kv_heads=attn.kv_heads,
        head_dim=attn.head_dim,
        hidden_size=hidden,
        vocab_size=vocab,
        tie_word_embeddings=tied,
        max_position_embeddings=max_pos if isinstance(max_pos, int) and max_pos > 0 else None,
        source=source or f"{where} (params estimated from config.json)",
        kind=mlp.kind,
        attention=attn.kind,
        params_b_active=active,
        expert_params_b=mlp.experts / 1e9,
        attention_params_b=layers * attn.params / 1e9,
        mlp_params_b=mlp.dense / 1e9,
        vision_params_b=vision / 1e9,
        kv_width=attn.kv_width,
        sliding_layers=sliding,
        sliding_window=window,
        checkpoint=fmt,
        checkpoint_bits=bits,
        unquantized=unquantized,
        torch_dtype=str(dtype) if isinstance(dtype, str) else None,
        quant_block=_quant_block(raw, c),
        tp_widths=mlp.widths,
    )


def estimate_params(config: Mapping[str, Any], *, where: str = "config.json") -> float:
    """Total parameters in billions of a config.json's contents (module docstring)."""
    return architecture_from_mapping(config, where=where).params_b


def architecture_from_config(path: Path, *, model_id: str | None = None) -> ModelArchitecture:
    """Read a local Hugging Face config.json (or the directory holding it) into an architecture."""
    file, raw = read_config(Path(path))
    return architecture_from_mapping(
        raw, where=str(file), model_id=model_id or str(raw.get("_name_or_path") or "")
        or file.parent.name,
    )  # fmt: skip


# ---------------------------------------------------------------- catalog files


def user_models_file() -> Path:
    """Where `catalog models add` writes: the MDEPLOY_CATALOG_DIR, else the user config dir."""
    if os.environ.get(CATALOG_DIR_ENV, "").strip():
        return catalog_dir() / USER_MODELS
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "mdeploy" / USER_MODELS


def _models_files() -> list[Path]:
    """Model files in priority order: the user's, the active catalog dir's, the bundled ones."""
    files = [user_models_file()]
    for folder in dict.fromkeys((catalog_dir(), BUNDLED_DIR)):
        files += [folder / V2_MODELS, folder / "models.json"]
    seen: list[Path] = []
    for file in files:
        if file.is_file() and file not in seen:
            seen.append(file)
    return seen


def _license(value: Any, where: str) -> License | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
        raise InputError(f"{where}: license must be an object with a name")
    commercial = str(value.get("commercial", "yes"))
    if commercial not in ("yes", "no", "conditional"):
        raise InputError(f"{where}: license.commercial must be yes, no or conditional")
    return License(
        name=value["name"],
        spdx=value.get("spdx"),
        commercial=commercial,
        condition=value.get("condition"),
        url=value.get("url"),
    )


def _v2_entry(item: Mapping[str, Any], where: str) -> ModelArchitecture:
    """A catalog v2 entry: its verbatim config sized by the same rule as a local config.json."""
    src = item.get("config_source") or {}
    source = ", ".join(f"{k} {v}" for k, v in src.items()) if isinstance(src, Mapping) else ""
    arch = architecture_from_mapping(
        item["config"], where=where, model_id=item["id"], source=f"config.json: {source}"
    )
    checkpoints = tuple(
        Checkpoint(str(c.get("format")), str(c.get("repo")))
        for c in item.get("checkpoints") or ()
        if isinstance(c, Mapping)
    )
    max_context = item.get("max_context")
    return replace(
        arch,
        family=item.get("family"),
        release_date=item.get("release_date"),
        status=item.get("status"),
        checkpoints=checkpoints,
        license=_license(item.get("license"), where),
        notes=str(item.get("notes") or ""),
        max_position_embeddings=max_context
        if isinstance(max_context, int)
        else arch.max_position_embeddings,
    )


# A checkpoint listed by format only (no quantization_config copied): its usual scheme.
_DEFAULT_QUANT: dict[str, dict[str, Any]] = {
    "fp8": {"quant_method": "fp8"},
    "nvfp4": {"quant_method": "modelopt", "quant_algo": "NVFP4"},
    "mxfp4": {"quant_method": "mxfp4"},
    "awq": {"quant_method": "awq", "bits": 4, "group_size": 128},
    "gptq": {"quant_method": "gptq", "bits": 4, "group_size": 128},
    "int8": {"quant_method": "compressed-tensors", "format": "int-quantized",
             "config_groups": {"g": {"weights": {"num_bits": 8, "type": "int"}}}},
}  # fmt: skip


def _checkpoint_variant(
    arch: ModelArchitecture, entry: Mapping[str, Any], where: str
) -> ModelArchitecture:
    """The same model as another checkpoint repository publishes it (fp8, nvfp4, awq...)."""
    q = entry.get("config_quantization")
    fmt = entry.get("format")
    if not isinstance(q, Mapping):
        if fmt in (None, "bf16", "fp16"):
            return replace(arch, checkpoint=None, checkpoint_bits=None, unquantized=())
        if arch.checkpoint == fmt or fmt not in _DEFAULT_QUANT:
            return arch
        q = _DEFAULT_QUANT[fmt]  # the format's usual layout: every linear layer quantized
    fmt, bits = _quant_format(q, f"{where} checkpoint {entry.get('repo')}")
    return replace(arch, checkpoint=fmt, checkpoint_bits=bits, unquantized=_unquantized_parts(q))


def _aliases(item: Mapping[str, Any]) -> list[str]:
    name = str(item["id"]).rsplit("/", 1)[-1]
    return [item["id"], name, *item.get("aliases", ())]


@cache
def _read_models(path: Path, mtime: float) -> tuple[tuple[ModelArchitecture, tuple[str, ...]], ...]:
    """(architecture, aliases) pairs of one models file, checkpoint repositories included."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: cannot be read as a models file: {exc}") from None
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, list) or not all(
        isinstance(m, dict) and isinstance(m.get("id"), str) for m in models
    ):
        raise InputError(f"{path}: expected {{'models': [{{'id': ..., ...}}, ...]}}")
    entries = []
    for n, item in enumerate(models):
        where = f"{path.name}: models[{n}] {item['id']}"
        if "config" in item and not isinstance(item["config"], Mapping):
            continue  # a v2 entry still without its config.json cannot be sized (_unsized)
        if "config" in item:
            arch = _v2_entry(item, where)
            variants = []
            for ckpt in item.get("checkpoints") or ():
                repo = str(ckpt.get("repo") or "") if isinstance(ckpt, Mapping) else ""
                if repo.casefold() == str(item["id"]).casefold():
                    arch = _checkpoint_variant(arch, ckpt, where)  # the main repo's own format
                elif repo:
                    variants.append((ckpt, repo))
            entries.append((arch, tuple(a.casefold() for a in _aliases(item))))
            for ckpt, repo in variants:
                variant = _checkpoint_variant(arch, ckpt, where)
                entries.append((replace(variant, id=repo), (repo.casefold(),)))
        else:
            arch = ModelArchitecture(id=item["id"], **{k: item[k] for k in _FIELDS})
            entries.append((arch, tuple(a.casefold() for a in _aliases(item))))
    return tuple(entries)


@cache
def _read_unsized(path: Path, mtime: float) -> dict[str, str]:
    """Alias → id of the entries listed without a config.json (known, but not sizable)."""
    doc = json.loads(path.read_text(encoding="utf-8"))  # already checked by _read_models
    found: dict[str, str] = {}
    for item in doc["models"]:
        if isinstance(item, Mapping) and "config" in item and item["config"] is None:
            repos = [c.get("repo") for c in item.get("checkpoints") or () if isinstance(c, Mapping)]
            for alias in [*_aliases(item), *(r for r in repos if r)]:
                found.setdefault(str(alias).casefold(), str(item["id"]))
    return found


def _unsized(model_id: str) -> str | None:
    key = model_id.strip().removeprefix("hf://").strip("/").casefold()
    for file in _models_files():
        found = _read_unsized(file, file.stat().st_mtime).get(key)
        if found:
            return found
    return None


def _entries() -> list[tuple[ModelArchitecture, tuple[str, ...]]]:
    found = []
    for file in _models_files():
        found += _read_models(file, file.stat().st_mtime)
    return found


def _alias_index() -> dict[str, ModelArchitecture]:
    index: dict[str, ModelArchitecture] = {}
    for arch, aliases in _entries():
        for alias in aliases:
            index.setdefault(alias, arch)
    return index


def load_models() -> list[ModelArchitecture]:
    """Every model the catalog knows (one row per id; checkpoint repos resolve as aliases)."""
    seen: dict[str, ModelArchitecture] = {}
    for arch, aliases in _entries():
        if (
            len(aliases) == 1
            and arch.id.casefold() == aliases[0]
            and any(arch.id in (c.repo for c in other.checkpoints) for other in seen.values())
        ):
            continue  # a checkpoint variant, listed under its model
        seen.setdefault(arch.id.casefold(), arch)
    return list(seen.values())


def get_architecture(model_id: str) -> ModelArchitecture | None:
    """The catalog's architecture for a Hugging Face id or alias (case-insensitive), or None."""
    key = model_id.strip().removeprefix("hf://").strip("/").casefold()
    return _alias_index().get(key)


# ---------------------------------------------------------------- resolution


def _from_spec(model: ModelSpec, base_dir: Path | None) -> ModelArchitecture:
    a = model.architecture
    assert a is not None
    config = getattr(a, "config", None)
    if config:
        path = Path(config).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            arch = architecture_from_config(path, model_id=model.id)
        except InputError as exc:
            raise InputError(f"model.architecture.config: {exc.message}", hint=exc.hint) from None
        return replace(arch, weights_gib=a.weights_gib) if a.weights_gib else arch
    return ModelArchitecture(
        id=model.id,
        params_b=a.params_b,
        layers=a.layers,
        attention_heads=a.attention_heads,
        kv_heads=a.kv_heads,
        head_dim=a.head_dim,
        hidden_size=a.hidden_size,
        vocab_size=a.vocab_size,
        tie_word_embeddings=a.tie_word_embeddings,
        weights_gib=a.weights_gib,
        source="spec model.architecture",
    )


def _local_source(source: str | None, base_dir: Path | None) -> Path | None:
    """The local directory `model.source` names, if it holds a config.json."""
    if not source or re.match(r"^[a-z][a-z0-9+.-]*://", source):
        return None
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path if (path / "config.json").is_file() else None


def resolve_model(model: ModelSpec, *, base_dir: Path | None = None) -> ModelArchitecture:
    """The architecture for a spec's model: spec > local config.json > catalog > InputError."""
    if model.architecture is not None:
        return _from_spec(model, base_dir)
    local = _local_source(model.source, base_dir)
    if local is not None:
        return architecture_from_config(local, model_id=model.id)
    found = get_architecture(model.id)
    if found is None and model.source and model.source.startswith("hf://"):
        found = get_architecture(model.source)
    unsized = _unsized(model.id) if found is None else None
    if unsized:
        raise InputError(
            f"model.id: {unsized} is in the catalog, but its config.json is not bundled "
            "(no checkable copy was found), so its shape cannot be sized",
            hint="download its config.json and set model.architecture.config: PATH, or "
            "`mdeploy catalog models add PATH`",
        )
    if found is None:
        raise InputError(
            f"model.id: unknown model {model.id!r}: not in the catalog and no architecture given",
            hint=_UNKNOWN_HINT + "; `mdeploy catalog models` lists the known ids, "
            "`mdeploy catalog models add PATH` adds a config.json",
        )
    return found


# ---------------------------------------------------------------- the user's models file


def add_user_model(path: Path, *, model_id: str | None = None) -> tuple[ModelArchitecture, Path]:
    """
    Size a local config.json and record it in the user's models file (never the package).

    The config is refused (InputError naming the field) when the rules cannot size it, so
    the file only ever holds entries `plan` can use. An entry with the same id is replaced.
    """
    file, raw = read_config(Path(path).expanduser())
    name = model_id or str(raw.get("_name_or_path") or "") or file.resolve().parent.name
    arch = architecture_from_mapping(raw, where=str(file), model_id=name)
    target = user_models_file()
    if target.resolve().is_relative_to(BUNDLED_DIR.resolve()):
        raise InputError(
            f"{target} is inside the installed package; refusing to write there",
            hint=f"set {CATALOG_DIR_ENV} to a folder of your own",
        )
    doc: dict[str, Any] = {"comment": "models added by `mdeploy catalog models add`", "models": []}
    if target.is_file():
        try:
            doc = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise InputError(f"{target}: cannot be read as a models file: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("models", []), list):
            raise InputError(f"{target}: expected an object with a models list")
    entry = {
        "id": name,
        "aliases": [],
        "config": raw,
        "config_source": {"path": str(file.resolve())},
        "checkpoints": [],
        "license": None,
    }
    doc["models"] = [m for m in doc.get("models", []) if m.get("id") != name] + [entry]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    tmp.replace(target)
    return arch, target
