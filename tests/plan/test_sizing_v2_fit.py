"""Sizing v2 in the fit rule: MLA KV replication, MoE sharding, sliding windows, checkpoints."""

from __future__ import annotations

import pytest
from catalog.sizing_v2_configs import DEEPSEEK_V3, GEMMA3_27B, GPT_OSS_20B, QWEN3_30B_A3B
from plan.factories import make_spec

from mdeploy.catalog._models import architecture_from_mapping
from mdeploy.catalog.models import ModelArchitecture
from mdeploy.errors import InputError
from mdeploy.plan.fit import check_fit, size_model, tensor_parallel_problem

GIB = 1024**3


def _size(config: dict, *, context: int = 8192, concurrency: int = 1, **model):
    arch = architecture_from_mapping(config, where="test", model_id="m")
    spec = make_spec(
        model={"max_context": context, "architecture": None, **model},
        serving={"max_concurrency": concurrency},
    )
    return arch, size_model(arch, spec.model, spec.serving)


def test_mla_kv_is_the_latent_and_is_not_split_by_tensor_parallel():
    _, s = _size(DEEPSEEK_V3, context=8192, concurrency=16)
    assert s.kv_bytes_per_token == 61 * 576 * 2  # 70,272 B, not 61 × 2 × 128 × 192 × 2
    assert s.kv_cache_gib == pytest.approx(70272 * 8192 * 16 / GIB)
    eight = check_fit(s, gpu_count=8, gpu_memory_gib=141, utilization=0.9)
    assert eight.kv_gib_per_gpu == pytest.approx(s.kv_cache_gib)  # every rank holds it all
    assert tensor_parallel_problem(8, s) is None


def test_fp8_block_checkpoint_keeps_embeddings_16_bit_and_fits_8xh200_not_8xh100():
    arch, s = _size(DEEPSEEK_V3, context=8192, concurrency=16)
    embed = 129280 * 7168 * 2
    linear = (arch.expert_params_b + arch.attention_params_b + arch.mlp_params_b) * 1e9
    sixteen = arch.params_b * 1e9 - linear  # embeddings, norms, routers
    assert sixteen == pytest.approx(embed + 61 * 2 * 7168 + 7168 + 58 * 7168 * 256, rel=0.01)
    assert s.weights_gib == pytest.approx((linear + sixteen * 2) / GIB)
    assert s.weight_format == "fp8" and s.pre_quantized
    assert check_fit(s, gpu_count=8, gpu_memory_gib=141, utilization=0.9).fits
    assert not check_fit(s, gpu_count=8, gpu_memory_gib=79.65, utilization=0.9).fits


def test_mxfp4_experts_at_4_25_bits_attention_and_embeddings_16_bit():
    arch, s = _size(GPT_OSS_20B)
    experts = arch.expert_params_b * 1e9
    rest = arch.params_b * 1e9 - experts
    assert s.weights_gib == pytest.approx((experts * 4.25 / 8 + rest * 2) / GIB)
    assert 12 < s.weights_gib < 14  # the published checkpoint is 13.8 GB


def test_sliding_layers_hold_the_window_not_the_context():
    _, s = _size(GPT_OSS_20B, context=131072)
    per_layer = 2 * 8 * 64 * 2
    assert s.kv_bytes_per_token_layer == per_layer
    assert s.kv_cache_gib == pytest.approx(per_layer * (12 * 131072 + 12 * 128) / GIB)
    _, short = _size(GPT_OSS_20B, context=128)  # a context no longer than the window
    assert short.kv_cache_gib == pytest.approx(per_layer * 24 * 128 / GIB)
    _, gemma = _size(GEMMA3_27B, context=32768)
    assert gemma.full_layers == 10 and gemma.sliding_layers == 52


def test_moe_weights_split_by_tensor_parallel_and_gqa_kv_split_up_to_kv_heads():
    _, s = _size(QWEN3_30B_A3B, context=32768, concurrency=4)
    four = check_fit(s, gpu_count=4, gpu_memory_gib=80, utilization=0.9)
    eight = check_fit(s, gpu_count=8, gpu_memory_gib=80, utilization=0.9)
    assert four.weights_gib_per_gpu == pytest.approx(s.weights_gib / 4)
    assert eight.kv_gib_per_gpu == four.kv_gib_per_gpu == pytest.approx(s.kv_cache_gib / 4)
    assert tensor_parallel_problem(8, s) is None  # 8 is a multiple of 4 KV heads: replicated


def test_weights_gib_still_overrides_a_checkpoint():
    arch = architecture_from_mapping(DEEPSEEK_V3, where="t", model_id="m")
    fixed = ModelArchitecture(**{**arch.__dict__, "weights_gib": 642.0})
    spec = make_spec(model={"architecture": None})
    assert size_model(fixed, spec.model, spec.serving).weights_gib == 642.0


def test_a_method_that_contradicts_the_checkpoint_is_refused():
    with pytest.raises(InputError, match="pre-quantized fp8 checkpoint"):
        _size(DEEPSEEK_V3, quantization="awq", dtype="int4")


def test_engine_quantized_bf16_checkpoint_still_uses_the_spec():
    _, s = _size(QWEN3_30B_A3B, quantization="fp8")
    assert (s.weight_format, s.pre_quantized) == ("fp8", False)
    _, awq8 = _size(QWEN3_30B_A3B, quantization="gptq", dtype="int8")
    _, bf16 = _size(QWEN3_30B_A3B)
    assert awq8.weights_gib < 0.6 * bf16.weights_gib


def test_block_quantized_fp8_refuses_a_tp_that_cuts_a_block():
    qwen_fp8 = {
        **QWEN3_30B_A3B,
        "moe_intermediate_size": 1536,
        "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
    }
    _, s = _size(qwen_fp8)  # fmt: skip
    assert tensor_parallel_problem(4, s) is None  # 1536 / 4 = 384 = 3 × 128
    assert "1536 / 8 is not a multiple of its 128-wide" in tensor_parallel_problem(8, s)
    _, bf16 = _size({**qwen_fp8, "quantization_config": None})
    assert tensor_parallel_problem(8, bf16) is None  # no blocks, no constraint
