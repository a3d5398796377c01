"""
Model architectures: the catalog's known models, local Hugging Face configs, and resolution.

`resolve_model` answers "what shape is this model?" for the planner, in a fixed order: the
spec's own `model.architecture`, then a local `model.source` directory holding config.json,
then the catalog (`data/models.json`, matched by Hugging Face id or alias, case-insensitive),
else an InputError naming `model.id`. Reads local files only; never downloads a config.

Parameter estimate for a config.json without a count (P, in parameters):
    per layer  attention = hidden·(heads·head_dim) + 2·hidden·(kv_heads·head_dim)
                           + (heads·head_dim)·hidden  [+ q/k/v biases for Qwen2]
               MLP       = 3·hidden·intermediate (gated), × num_local_experts for
                           Mixtral-style MoE, plus the router hidden·experts
               norms     = 2·hidden
    P = layers · per layer + vocab·hidden·(1 if tied else 2) + hidden (final norm)
It reproduces the published counts of the catalog's models to within 0.1 %.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdeploy.catalog._store import BUNDLED_DIR, catalog_dir
from mdeploy.catalog.models import ModelArchitecture
from mdeploy.errors import InputError

if TYPE_CHECKING:
    from mdeploy.spec.models import ModelSpec

__all__ = [
    "architecture_from_config",
    "estimate_params",
    "get_architecture",
    "load_models",
    "resolve_model",
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
    "hidden_size, vocab_size, tie_word_embeddings} or point model.source at a directory "
    "with config.json"
)
# Model types whose config class ties the LM head to the embedding by default.
_TIED_BY_DEFAULT = ("gemma", "gemma2", "gemma3_text")
_QKV_BIAS_TYPES = ("qwen2",)
_OTHER_MOE_KEYS = ("n_routed_experts", "moe_intermediate_size", "num_experts", "n_shared_experts")


# ---------------------------------------------------------------- catalog


def _models_file() -> Path:
    """models.json of the active catalog dir, else the bundled one."""
    candidate = catalog_dir() / "models.json"
    return candidate if candidate.exists() else BUNDLED_DIR / "models.json"


@cache
def _read_models(path: Path) -> tuple[tuple[ModelArchitecture, tuple[str, ...]], ...]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    entries = []
    for item in doc["models"]:
        arch = ModelArchitecture(id=item["id"], **{k: item[k] for k in _FIELDS})
        name = item["id"].rsplit("/", 1)[-1]
        aliases = (item["id"], name, *item.get("aliases", ()))
        entries.append((arch, tuple(a.casefold() for a in aliases)))
    return tuple(entries)


@cache
def _alias_index(path: Path) -> dict[str, ModelArchitecture]:
    index: dict[str, ModelArchitecture] = {}
    for arch, aliases in _read_models(path):
        for alias in aliases:
            index.setdefault(alias, arch)
    return index


def load_models() -> list[ModelArchitecture]:
    """Every model architecture the catalog knows, in file order."""
    return [arch for arch, _ in _read_models(_models_file())]


def get_architecture(model_id: str) -> ModelArchitecture | None:
    """The catalog's architecture for a Hugging Face id or alias (case-insensitive), or None."""
    key = model_id.strip().removeprefix("hf://").strip("/").casefold()
    return _alias_index(_models_file()).get(key)


# ---------------------------------------------------------------- config.json


def _int(config: Mapping[str, Any], key: str, where: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(
            f"{where}: {key} is missing or not a positive integer ({value!r})",
            hint=_UNKNOWN_HINT,
        )
    return value


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Multimodal configs (Mistral3, Llava) keep the language model under text_config."""
    nested = config.get("text_config")
    if "num_hidden_layers" not in config and isinstance(nested, Mapping):
        return nested
    return config


def _head_dim(config: Mapping[str, Any], where: str) -> int:
    if config.get("head_dim"):
        return _int(config, "head_dim", where)
    hidden, heads = _int(config, "hidden_size", where), _int(config, "num_attention_heads", where)
    if hidden % heads:
        raise InputError(f"{where}: hidden_size {hidden} is not a multiple of {heads} heads")
    return hidden // heads


def _tied(config: Mapping[str, Any]) -> bool:
    value = config.get("tie_word_embeddings")
    if isinstance(value, bool):
        return value
    return config.get("model_type") in _TIED_BY_DEFAULT


def estimate_params(config: Mapping[str, Any], *, where: str = "config.json") -> float:
    """Total parameters in billions for a dense or Mixtral-style MoE config (module docstring)."""
    config = _text_config(config)
    if any(key in config for key in _OTHER_MOE_KEYS):
        raise InputError(
            f"{where}: this MoE layout (shared or fine-grained experts) is not covered by the "
            "parameter estimate",
            hint="add model.architecture.params_b (and weights_gib) from the model card",
        )
    hidden = _int(config, "hidden_size", where)
    heads = _int(config, "num_attention_heads", where)
    kv = config.get("num_key_value_heads") or heads
    head_dim = _head_dim(config, where)
    q, kv_width = heads * head_dim, kv * head_dim
    attention = hidden * q + 2 * hidden * kv_width + q * hidden
    if config.get("attention_bias") or config.get("model_type") in _QKV_BIAS_TYPES:
        attention += q + 2 * kv_width
    experts = config.get("num_local_experts") or 1
    mlp = experts * 3 * hidden * _int(config, "intermediate_size", where)
    if experts > 1:
        mlp += hidden * experts
    per_layer = attention + mlp + 2 * hidden
    vocab = _int(config, "vocab_size", where)
    embeddings = vocab * hidden * (1 if _tied(config) else 2)
    total = _int(config, "num_hidden_layers", where) * per_layer + embeddings + hidden
    return total / 1e9


def _read_config(path: Path) -> tuple[Path, dict[str, Any]]:
    file = path / "config.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{file} does not exist", hint=_UNKNOWN_HINT) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{file} is not valid JSON: {exc}", hint=_UNKNOWN_HINT) from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: expected a JSON object", hint=_UNKNOWN_HINT)
    return file, data


def architecture_from_config(path: Path, *, model_id: str | None = None) -> ModelArchitecture:
    """
    Read a local Hugging Face config.json (or the directory holding it) into an architecture.

    head_dim comes from the config when given (Mistral Nemo, Gemma 2), else hidden/heads;
    params are estimated (module docstring) because config.json does not carry them.
    """
    file, raw = _read_config(Path(path))
    where = str(file)
    config = _text_config(raw)
    heads = _int(config, "num_attention_heads", where)
    kv = config.get("num_key_value_heads") or heads
    if not isinstance(kv, int) or heads % kv:
        raise InputError(f"{where}: num_key_value_heads {kv!r} must divide {heads} heads")
    max_pos = config.get("max_position_embeddings")
    return ModelArchitecture(
        id=model_id or str(raw.get("_name_or_path") or file.parent.name),
        params_b=round(estimate_params(config, where=where), 3),
        layers=_int(config, "num_hidden_layers", where),
        attention_heads=heads,
        kv_heads=kv,
        head_dim=_head_dim(config, where),
        hidden_size=_int(config, "hidden_size", where),
        vocab_size=_int(config, "vocab_size", where),
        tie_word_embeddings=_tied(config),
        max_position_embeddings=max_pos if isinstance(max_pos, int) else None,
        source=f"{file} (params estimated from config.json)",
    )


# ---------------------------------------------------------------- resolution


def _from_spec(model: ModelSpec) -> ModelArchitecture:
    a = model.architecture
    assert a is not None
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
        return _from_spec(model)
    local = _local_source(model.source, base_dir)
    if local is not None:
        return architecture_from_config(local, model_id=model.id)
    found = get_architecture(model.id)
    if found is None and model.source and model.source.startswith("hf://"):
        found = get_architecture(model.source)
    if found is None:
        raise InputError(
            f"model.id: unknown model {model.id!r}: not in the catalog and no architecture given",
            hint=_UNKNOWN_HINT + "; `mdeploy catalog models` lists the known ids",
        )
    return found
