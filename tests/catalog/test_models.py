"""Model architectures: catalog sanity, the parameter estimate, config.json and resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdeploy import catalog
from mdeploy.errors import InputError
from mdeploy.spec.models import ModelSpec

REQUIRED_IDS = {
    "mistralai/Mistral-7B-Instruct-v0.3",
    "mistralai/Mistral-Nemo-Instruct-2407",
    "mistralai/Mistral-Small-24B-Instruct-2501",
    "mistralai/Codestral-22B-v0.1",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "mistralai/Mistral-Large-Instruct-2407",
    "mistralai/Mistral-Large-Instruct-2411",
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
    "google/gemma-2-9b-it",
    "google/gemma-2-27b-it",
}

MIXTRAL_CONFIG = {
    "architectures": ["MixtralForCausalLM"],
    "model_type": "mixtral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "num_attention_heads": 32,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}
NEMO_CONFIG = {
    "model_type": "mistral",
    "hidden_size": 5120,
    "head_dim": 128,
    "intermediate_size": 14336,
    "max_position_embeddings": 1024000,
    "num_attention_heads": 32,
    "num_hidden_layers": 40,
    "num_key_value_heads": 8,
    "vocab_size": 131072,
}


def _as_config(a: catalog.ModelArchitecture, entry: dict) -> dict:
    config = {
        "hidden_size": a.hidden_size,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.attention_heads,
        "num_key_value_heads": a.kv_heads,
        "head_dim": a.head_dim,
        "vocab_size": a.vocab_size,
        "tie_word_embeddings": a.tie_word_embeddings,
        "intermediate_size": entry["intermediate_size"],
    }
    if "num_local_experts" in entry:
        config["num_local_experts"] = entry["num_local_experts"]
    return config


def test_catalog_has_the_required_models_with_sources() -> None:
    models = {m.id: m for m in catalog.load_models()}
    assert set(models) >= REQUIRED_IDS
    assert all("config.json" in m.source for m in models.values())


@pytest.mark.parametrize("model", catalog.load_models(), ids=lambda m: m.id)
def test_architecture_sanity(model: catalog.ModelArchitecture) -> None:
    assert model.attention_heads % model.kv_heads == 0
    assert model.layers > 0
    assert model.attention == "mla" or model.head_dim in (64, 128, 256)
    assert model.params_b > 0.1 and model.vocab_size and model.hidden_size
    assert model.max_position_embeddings and model.max_position_embeddings >= 8192


def test_a_v1_models_file_still_resolves(tmp_path: Path, monkeypatch) -> None:
    """Catalog dirs written before v2 (flat shape fields, no config) keep working."""
    v1 = {"id": "acme/old-7b", "aliases": ["old-7b"], "params_b": 7.25, "layers": 32,
          "attention_heads": 32, "kv_heads": 8, "head_dim": 128, "hidden_size": 4096,
          "intermediate_size": 14336, "vocab_size": 32768, "tie_word_embeddings": False,
          "max_position_embeddings": 32768, "source": "test config.json"}  # fmt: skip
    (tmp_path / "models.json").write_text(json.dumps({"models": [v1]}))
    monkeypatch.setenv("MDEPLOY_CATALOG_DIR", str(tmp_path))
    found = catalog.get_architecture("OLD-7B")
    assert found is not None and found.params_b == 7.25 and found.kv_heads == 8
    assert found.classes == "dense" and found.checkpoint is None
    assert catalog.estimate_params(_as_config(found, v1)) == pytest.approx(7.25, rel=0.001)


def test_published_parameter_counts() -> None:
    assert catalog.estimate_params(MIXTRAL_CONFIG) == pytest.approx(46.7028, abs=1e-4)
    llama = catalog.get_architecture("llama-3.1-8b")
    assert llama is not None and llama.params_b == pytest.approx(8.03, abs=0.001)
    qwen = dict(NEMO_CONFIG, model_type="qwen2", hidden_size=3584, head_dim=None,
                num_attention_heads=28, num_key_value_heads=4, num_hidden_layers=28,
                intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False)  # fmt: skip
    assert catalog.estimate_params(qwen) * 1e9 == pytest.approx(7_615_616_512, rel=1e-6)


@pytest.mark.parametrize(
    "alias",
    [
        "mistralai/Mistral-7B-Instruct-v0.3",
        "MISTRALAI/MISTRAL-7B-INSTRUCT-V0.3",
        "Mistral-7B-Instruct-v0.3",
        "hf://mistralai/Mistral-7B-Instruct-v0.3",
        "mistral-7b-instruct",
    ],
)
def test_aliases_resolve_case_insensitively(alias: str) -> None:
    found = catalog.get_architecture(alias)
    assert found is not None and found.id == "mistralai/Mistral-7B-Instruct-v0.3"


def test_old_llama_name_is_an_alias() -> None:
    found = catalog.get_architecture("meta-llama/Meta-Llama-3.1-70B-Instruct")
    assert found is not None and found.id == "meta-llama/Llama-3.1-70B-Instruct"
    assert catalog.get_architecture("acme/unknown-7b") is None


def test_dense_config_with_explicit_head_dim(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(NEMO_CONFIG))
    arch = catalog.architecture_from_config(tmp_path, model_id="local/nemo")
    assert (arch.id, arch.layers, arch.attention_heads, arch.kv_heads) == ("local/nemo", 40, 32, 8)
    assert arch.head_dim == 128  # not 5120 / 32 = 160
    assert arch.params_b == pytest.approx(12.248, abs=0.001)
    assert arch.max_position_embeddings == 1024000 and arch.tie_word_embeddings is False


def test_moe_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MIXTRAL_CONFIG))
    arch = catalog.architecture_from_config(path)
    assert arch.head_dim == 128 and arch.kv_heads == 8
    assert arch.params_b == pytest.approx(46.703, abs=0.001)
    assert "estimated" in arch.source


def test_multimodal_config_reads_text_config_and_gemma_ties_by_default(tmp_path: Path) -> None:
    text = {"model_type": "gemma2", "hidden_size": 3584, "head_dim": 256, "num_hidden_layers": 42,
            "num_attention_heads": 16, "num_key_value_heads": 8, "intermediate_size": 14336,
            "vocab_size": 256000}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "x", "text_config": text}))
    arch = catalog.architecture_from_config(tmp_path)
    assert arch.tie_word_embeddings is True and arch.head_dim == 256
    assert arch.params_b == pytest.approx(9.24, abs=0.01)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**MIXTRAL_CONFIG, "num_hidden_layers": None}, "num_hidden_layers is missing"),
        ({**MIXTRAL_CONFIG, "num_key_value_heads": 5}, "must divide 32 heads"),
        ({**MIXTRAL_CONFIG, "n_routed_experts": 64}, "n_routed_experts=64 and num_local_"),
    ],
)
def test_bad_configs_are_input_errors(tmp_path: Path, config: dict, message: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=message):
        catalog.architecture_from_config(tmp_path)


def test_unreadable_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        catalog.architecture_from_config(tmp_path)


def test_resolve_prefers_the_spec_architecture() -> None:
    spec = ModelSpec(
        id="mistralai/Mistral-7B-Instruct-v0.3",
        architecture={"params_b": 1.5, "layers": 4, "attention_heads": 8, "kv_heads": 2,
                      "head_dim": 64, "weights_gib": 3.0},
    )  # fmt: skip
    arch = catalog.resolve_model(spec)
    assert (arch.params_b, arch.layers, arch.weights_gib) == (1.5, 4, 3.0)
    assert arch.source == "spec model.architecture"


def test_resolve_reads_a_local_source_relative_to_the_spec(tmp_path: Path) -> None:
    weights = tmp_path / "models" / "mixtral"
    weights.mkdir(parents=True)
    (weights / "config.json").write_text(json.dumps(MIXTRAL_CONFIG))
    spec = ModelSpec(id="acme/private-moe", source="models/mixtral")
    arch = catalog.resolve_model(spec, base_dir=tmp_path)
    assert arch.id == "acme/private-moe" and arch.params_b == pytest.approx(46.703, abs=0.001)


def test_resolve_falls_back_to_the_catalog_then_the_hf_source() -> None:
    assert catalog.resolve_model(ModelSpec(id="gemma-2-27b")).id == "google/gemma-2-27b-it"
    spec = ModelSpec(id="my-chat-model", source="hf://Qwen/Qwen2.5-72B-Instruct")
    assert catalog.resolve_model(spec).id == "Qwen/Qwen2.5-72B-Instruct"
    # A local source without config.json does not hide a known id.
    spec = ModelSpec(id="mistral-nemo", source="./nowhere")
    assert catalog.resolve_model(spec).params_b == pytest.approx(12.25, abs=0.005)


def test_resolve_unknown_model_names_the_field_and_the_fix() -> None:
    with pytest.raises(InputError) as info:
        catalog.resolve_model(ModelSpec(id="acme/secret-13b", source="s3://bucket/x"))
    assert info.value.message.startswith("model.id:")
    assert info.value.exit_code == 2
    assert "model.architecture" in info.value.hint and "config.json" in info.value.hint
