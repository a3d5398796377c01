"""Compute capability: the planner never places a dtype or checkpoint a GPU cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalog.sizing_v2_configs import DEEPSEEK_V3, GPT_OSS_20B, QWEN3_30B_A3B
from plan.factories import MISTRAL_7B, make_spec
from typer.testing import CliRunner

from mdeploy.catalog._gpus import GPUS
from mdeploy.catalog._models import architecture_from_mapping
from mdeploy.cli.app import app
from mdeploy.plan.fit import precision_problem, size_model


def _sizing(arch=MISTRAL_7B, **model):
    spec = make_spec(model=model)
    return size_model(arch, spec.model, spec.serving)


def test_compute_capabilities_of_the_table():
    cc = {name: spec.compute_capability for name, spec in GPUS.items()}
    assert (cc["V100"], cc["T4"], cc["A100"], cc["A10G"], cc["L4"]) == (
        (7, 0), (7, 5), (8, 0), (8, 6), (8, 9),
    )  # fmt: skip
    assert (cc["H100"], cc["H200"], cc["B200"], cc["B300"], cc["RTXPRO6000"]) == (
        (9, 0), (9, 0), (10, 0), (10, 3), (12, 0),
    )  # fmt: skip
    assert GPUS["B300"].nominal_gb == 288 and GPUS["H200"].nominal_gb == 141


@pytest.mark.parametrize("gpu", ["T4", "V100", "V100-32GB"])
def test_bf16_is_refused_before_ampere_and_float16_is_fine(gpu):
    problem = precision_problem(gpu, _sizing())
    assert problem and "bf16 needs compute capability 8.0" in problem and "float16" in problem
    assert precision_problem(gpu, _sizing(dtype="float16")) is None


def test_fp8_on_v100_is_refused_and_runs_weight_only_on_ampere():
    fp8 = _sizing(dtype="float16", quantization="fp8")
    assert "FP8 weights need compute capability 7.5" in precision_problem("V100", fp8)
    assert precision_problem("A100", _sizing(quantization="fp8")) is None  # Marlin W8A16
    assert precision_problem("L4", _sizing(quantization="fp8")) is None  # native W8A8


def test_pre_quantized_checkpoints_by_format():
    ds = _sizing(architecture_from_mapping(DEEPSEEK_V3, where="t"), dtype="float16")
    assert "FP8 checkpoint" in precision_problem("V100", ds)
    oss = _sizing(architecture_from_mapping(GPT_OSS_20B, where="t"))
    assert precision_problem("A100", oss) is None  # Marlin MXFP4 (vLLM gpt-oss recipe)
    assert precision_problem("B200", oss) is None  # native FP4
    nvfp4 = {**QWEN3_30B_A3B, "quantization_config": {"quant_method": "modelopt",
                                                      "quant_algo": "NVFP4"}}  # fmt: skip
    q = _sizing(architecture_from_mapping(nvfp4, where="t"), dtype="float16")
    assert "NVFP4 checkpoint" in precision_problem("V100", q)


def test_a_pool_gpu_the_table_does_not_know_is_not_refused():
    assert precision_problem("MI300X-custom", _sizing()) is None


def test_plan_rejects_t4_for_bf16_with_the_reason_and_places_float16(tmp_path: Path):
    text = """apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: t4}
model: {id: mistralai/Mistral-7B-Instruct-v0.3, max_context: 4096, dtype: DTYPE}
serving: {max_concurrency: 1}
placement: {clouds: [aws, gcp], gpus: [T4]}
"""
    runner = CliRunner()
    for dtype, fits in (("bfloat16", False), ("float16", True)):
        path = tmp_path / f"{dtype}.yaml"
        path.write_text(text.replace("DTYPE", dtype))
        result = runner.invoke(app, ["plan", str(path), "--json"])
        plan = json.loads(result.stdout)
        assert (plan["chosen"] is not None) is fits, result.stdout[:300]
        if not fits:
            assert result.exit_code == 4
            t4 = [r for r in plan["rejected"] if "bf16 needs compute capability" in r["reason"]]
            assert t4, "T4 offers are rejected for bf16 with the reason"


def test_int4_without_a_method_is_refused_by_validate_at_its_line(tmp_path: Path):
    path = tmp_path / "spec.yaml"
    path.write_text(
        "apiVersion: mdeploy/v1\nkind: Deployment\nmetadata: {name: q}\n"
        "model:\n  id: mistralai/Mistral-7B-Instruct-v0.3\n  dtype: int4\n"
    )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:4" in result.stderr and "dtype: int4 needs a quantization method" in (
        result.stderr
    )
    path.write_text(path.read_text() + "  quantization: awq\n")
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0
