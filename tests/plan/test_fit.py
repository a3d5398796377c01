"""The sizing rule (docs/sizing.md) against hand-computed cases."""

from __future__ import annotations

import pytest
from plan.factories import MISTRAL_7B, make_spec

from mdeploy.catalog.models import ModelArchitecture
from mdeploy.plan.fit import check_fit, size_model, tensor_parallel_problem

GIB = 1024**3


def _size(spec, arch=MISTRAL_7B):
    return size_model(arch, spec.model, spec.serving)


def test_bf16_weights_and_kv_cache_by_hand(spec):
    s = _size(spec)
    assert s.weights_gib == pytest.approx(7.25e9 * 2 / GIB)  # 13.504 GiB
    assert s.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131072
    assert s.kv_cache_gib == pytest.approx(131072 * 16384 * 8 / GIB) == 16.0


def test_fp8_keeps_embeddings_in_16_bit():
    spec = make_spec(model={"dtype": "fp8"})
    embed = 32768 * 4096 * 2  # untied: embedding + LM head
    expected = ((7.25e9 - embed) * 1 + embed * 2) / GIB
    assert _size(spec).weights_gib == pytest.approx(expected)  # 7.002 GiB


def test_awq_is_half_a_byte_and_tied_embeddings_count_once():
    arch = ModelArchitecture(
        id="x", params_b=9.0, layers=42, attention_heads=16, kv_heads=8, head_dim=256,
        hidden_size=3584, vocab_size=256000, tie_word_embeddings=True,
    )  # fmt: skip
    spec = make_spec(model={"quantization": "awq"})
    embed = 256000 * 3584
    assert _size(spec, arch).weights_gib == pytest.approx(((9e9 - embed) * 0.5 + embed * 2) / GIB)


def test_weights_gib_override_wins():
    arch = ModelArchitecture(
        id="x", params_b=405, layers=126, attention_heads=128, kv_heads=8, head_dim=128,
        weights_gib=410.0,
    )  # fmt: skip
    assert _size(make_spec(), arch).weights_gib == 410.0


def test_fp8_kv_cache_halves_it():
    assert _size(make_spec(serving={"kv_cache_dtype": "fp8"})).kv_cache_gib == 8.0


def test_fits_l40s_but_not_a10g(spec):
    s = _size(spec)
    l40s = check_fit(s, gpu_count=1, gpu_memory_gib=44.99, utilization=0.9)
    assert l40s.required_gib_per_gpu == pytest.approx(13.504 + 16 + 2, abs=1e-3)
    assert l40s.usable_gib_per_gpu == pytest.approx(40.491)
    assert l40s.fits
    assert not check_fit(s, gpu_count=1, gpu_memory_gib=22.49, utilization=0.9).fits


def test_tensor_parallel_splits_weights_and_kv_up_to_kv_heads(spec):
    s = _size(spec)
    four = check_fit(s, gpu_count=4, gpu_memory_gib=22.49, utilization=0.9)
    assert four.weights_gib_per_gpu == pytest.approx(13.504 / 4, abs=1e-3)
    assert four.kv_gib_per_gpu == 16.0 / 4
    assert four.fits


def test_kv_heads_replicate_past_kv_head_count():
    arch = ModelArchitecture(
        id="x", params_b=1, layers=2, attention_heads=8, kv_heads=2, head_dim=64
    )
    s = _size(make_spec(), arch)
    eight = check_fit(s, gpu_count=8, gpu_memory_gib=80, utilization=0.9)
    assert eight.kv_gib_per_gpu == pytest.approx(s.kv_cache_gib / 2)


def test_boundary_is_inclusive(spec):
    s = _size(spec)
    needed = s.weights_gib + s.kv_cache_gib + 2
    assert check_fit(s, gpu_count=1, gpu_memory_gib=needed, utilization=1.0).fits
    assert not check_fit(s, gpu_count=1, gpu_memory_gib=needed - 0.01, utilization=1.0).fits


@pytest.mark.parametrize(
    ("tp", "heads", "kv", "problem"),
    [
        (1, 32, 8, None),
        (8, 32, 8, None),
        (3, 48, 8, "1, 2, 4 or 8"),
        (8, 28, 4, "does not divide 28 attention heads"),  # Qwen2.5-7B: 28 heads
        (4, 28, 4, None),
        (8, 40, 8, None),
        (4, 12, 6, "do not divide each other"),
    ],
)
def test_tensor_parallel_rules(tp, heads, kv, problem):
    arch = ModelArchitecture(id="x", params_b=1, layers=1, attention_heads=heads, kv_heads=kv,
                             head_dim=64)  # fmt: skip
    found = tensor_parallel_problem(tp, _size(make_spec(), arch))
    assert (found is None) if problem is None else (problem in found)
