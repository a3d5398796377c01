"""
Sizing v2 from config.json: parameters by role, KV layout and checkpoint formats, checked
against the published counts of real models (fixtures in sizing_v2_configs.py, with sources).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalog.sizing_v2_configs import (
    DEEPSEEK_V3,
    GEMMA3_27B,
    GPT_OSS_20B,
    LLAMA4_SCOUT,
    QWEN3_30B_A3B,
)

from mdeploy import catalog
from mdeploy.catalog._models import architecture_from_mapping
from mdeploy.errors import InputError

GIB = 1024**3


def _arch(config: dict, name: str = "m") -> catalog.ModelArchitecture:
    return architecture_from_mapping(config, where=name, model_id=name)


@pytest.mark.parametrize(
    ("config", "total_b", "active_b", "tolerance", "classes"),
    [
        # Published: DeepSeek-V3 671B / 37B; gpt-oss-20b 20.9B / 3.6B (+0.58B input embedding,
        # which OpenAI's active count leaves out); Qwen3-30B-A3B 30.5B / 3.3B; Gemma 3 27B
        # 27.4B; Llama 4 Scout 109,676,279,296 / 17B (+0.87B vision tower, left out of it).
        (DEEPSEEK_V3, 671.0, 37.0, 0.01, "fine-grained MoE+MLA"),
        (GPT_OSS_20B, 20.9, 3.6 + 0.58, 0.01, "MoE+sliding"),
        (QWEN3_30B_A3B, 30.5, 3.3, 0.02, "fine-grained MoE"),
        (GEMMA3_27B, 27.4, None, 0.01, "dense+sliding+vision"),
        (LLAMA4_SCOUT, 109.676, 17.0 + 0.87, 0.015, "fine-grained MoE+sliding+vision"),
    ],
    ids=["deepseek-v3", "gpt-oss-20b", "qwen3-30b-a3b", "gemma-3-27b", "llama-4-scout"],
)
def test_published_totals_and_active_parameters(config, total_b, active_b, tolerance, classes):
    arch = _arch(config)
    assert arch.params_b == pytest.approx(total_b, rel=tolerance)
    if active_b is None:
        assert arch.params_b_active is None
    else:
        assert arch.params_b_active == pytest.approx(active_b, rel=0.03)
    assert arch.classes == classes


def test_mla_caches_one_latent_per_token_and_layer():
    arch = _arch(DEEPSEEK_V3)
    assert arch.attention == "mla" and arch.kv_width == 512 + 64  # kv_lora_rank + rope dim
    assert arch.kv_heads == 1  # the latent is shared, not 128 heads × 2 × 192
    assert arch.kv_elements_per_token_layer == 576


def test_fine_grained_moe_counts_dense_layers_shared_and_routed_experts():
    arch = _arch(DEEPSEEK_V3)
    routed = 58 * 256 * 3 * 7168 * 2048  # layers 3..60 are MoE (first_k_dense_replace 3)
    assert arch.expert_params_b * 1e9 == routed
    qwen = _arch(QWEN3_30B_A3B)
    assert qwen.expert_params_b * 1e9 == 48 * 128 * 3 * 2048 * 768  # no shared expert
    sparse_every_other = _arch({**QWEN3_30B_A3B, "decoder_sparse_step": 2})
    assert sparse_every_other.expert_params_b == pytest.approx(qwen.expert_params_b / 2)


@pytest.mark.parametrize(
    ("config", "sliding", "window"),
    [
        (GPT_OSS_20B, 12, 128),  # layer_types: alternating
        (GEMMA3_27B, 62 - 10, 1024),  # sliding_window_pattern 6: every 6th layer is global
        (LLAMA4_SCOUT, 36, 8192),  # chunked attention on RoPE layers, every 4th is global
        ({**QWEN3_30B_A3B, "sliding_window": 4096, "use_sliding_window": False}, 0, None),
        ({**GPT_OSS_20B, "layer_types": None}, 0, None),  # a window without a layout: full
    ],
    ids=["gpt-oss", "gemma3", "llama4", "qwen-off", "no-layout"],
)
def test_sliding_and_hybrid_layers(config, sliding, window):
    arch = _arch(config)
    assert (arch.sliding_layers, arch.sliding_window) == (sliding, window)


def test_vision_tower_counts_and_text_config_sizes_the_kv():
    arch = _arch(GEMMA3_27B)
    assert 0.4 < arch.vision_params_b < 0.5  # SigLIP so400m + projector
    assert (arch.layers, arch.kv_heads, arch.head_dim) == (62, 16, 128)
    assert arch.tie_word_embeddings is True  # gemma3_text ties by default
    text_only = _arch({**GEMMA3_27B, "vision_config": None})
    assert arch.params_b - text_only.params_b == pytest.approx(arch.vision_params_b)


def test_pre_quantized_formats_from_quantization_config():
    ds = _arch(DEEPSEEK_V3)
    assert (ds.checkpoint, ds.checkpoint_bits, ds.unquantized) == ("fp8", 8.0, ())
    oss = _arch(GPT_OSS_20B)
    assert (oss.checkpoint, oss.checkpoint_bits) == ("mxfp4", 4.25)
    assert oss.unquantized == ("attention",)  # self_attn in modules_to_not_convert


@pytest.mark.parametrize(
    ("quantization", "fmt", "bits"),
    [
        ({"quant_method": "awq", "bits": 4, "group_size": 128}, "awq", 4 + 20 / 128),
        ({"quant_method": "gptq", "bits": 8, "group_size": -1}, "gptq", 8.0),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4", 4.5),
        ({"quant_method": "fbgemm_fp8"}, "fp8", 8.0),
        ({"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized"}, "nvfp4", 4.5),
        ({"quant_method": "compressed-tensors", "format": "float-quantized",
          "config_groups": {"g0": {"weights": {"num_bits": 8, "type": "float"}}}}, "fp8", 8.0),
    ],
)  # fmt: skip
def test_quantization_methods(quantization, fmt, bits):
    arch = _arch({**QWEN3_30B_A3B, "quantization_config": quantization})
    assert (arch.checkpoint, arch.checkpoint_bits) == (fmt, pytest.approx(bits))


def test_unknown_quantization_method_is_refused_with_the_field():
    with pytest.raises(InputError, match=r"quantization_config\.quant_method 'bitsandbytes'"):
        _arch({**QWEN3_30B_A3B, "quantization_config": {"quant_method": "bitsandbytes"}})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_size": 10**30}, "hidden_size"),  # huge int
        ({"hidden_size": "2048"}, "hidden_size"),  # wrong type
        ({"num_hidden_layers": True}, "num_hidden_layers"),  # bool is not an int here
        ({"num_hidden_layers": -4}, "num_hidden_layers"),
        ({"vocab_size": None}, "vocab_size"),
        ({"num_key_value_heads": 5}, "num_key_value_heads"),
        ({"layer_types": ["full_attention"] * 3, "sliding_window": 128}, "layer_types"),
        ({"moe_intermediate_size": None, "intermediate_size": None}, "intermediate_size"),
        ({"n_routed_experts": 64}, "n_routed_experts=64 and num_experts=128 disagree"),
        ({"num_experts_per_tok": 500}, "num_experts_per_tok"),
        ({"mlp_only_layers": "all"}, "mlp_only_layers"),
        ({"quantization_config": [1, 2]}, "quantization_config"),
        ({"num_hidden_layers": 2**31 - 1}, "num_hidden_layers"),
        ({"num_hidden_layers": 90_000, "hidden_size": 2**20}, "parameters"),
    ],
)
def test_configs_the_rules_cannot_size_are_refused_naming_the_field(change, field):
    with pytest.raises(InputError) as info:
        _arch({**QWEN3_30B_A3B, **change})
    assert field in info.value.message and info.value.exit_code == 2


def test_hostile_files_are_input_errors_not_tracebacks(tmp_path: Path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    digits = tmp_path / "digits.json"
    digits.write_text('{"hidden_size": ' + "9" * 6000 + "}")
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({**QWEN3_30B_A3B, "x": {"a": {"b": {"c": {"d": {"e": {
        "f": {"g": {"h": {}}}}}}}}}}))  # fmt: skip
    big = tmp_path / "big.json"
    big.write_text('{"pad": "' + "x" * (5 * 1024 * 1024) + '"}')
    array = tmp_path / "array.json"
    array.write_text("[1, 2]")
    for path, message in [
        (deep, "cannot be read"),
        (digits, "cannot be read"),
        (nested, "nested deeper"),
        (big, "larger than 4 MiB"),
        (array, "expected a JSON object"),
        (tmp_path / "missing", "does not exist"),
    ]:
        with pytest.raises(InputError, match=message):
            catalog.architecture_from_config(path)


def test_a_model_folder_and_a_file_read_the_same(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps(DEEPSEEK_V3))
    by_folder = catalog.architecture_from_config(tmp_path, model_id="x")
    by_file = catalog.architecture_from_config(tmp_path / "config.json", model_id="x")
    assert by_folder.params_b == by_file.params_b and by_folder.kv_width == 576
