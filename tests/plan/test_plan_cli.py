"""`mdeploy plan` and `mdeploy compare` end to end on the bundled catalog."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mdeploy.catalog import load_offers
from mdeploy.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CANDIDATE_KEYS = {
    "target", "region", "instance_type", "gpu", "gpu_count", "gpu_memory_gib",
    "tensor_parallel", "hourly_usd", "monthly_usd", "jurisdiction", "country",
    "price_source", "estimate", "engine_args",
}  # fmt: skip
runner = CliRunner()


def _plan_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["plan", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_plans_offline(example):
    code, plan = _plan_json(str(example))
    assert code == 0
    assert plan["chosen"] is not None


def test_plan_json_contract():
    code, plan = _plan_json(str(ROOT / "examples/mistral-7b-eu.yaml"))
    assert code == 0
    assert set(plan) == {"model", "chosen", "candidates", "rejected"}
    assert set(plan["model"]) >= {"id", "params_b", "weights_gib", "kv_cache_gib",
                                  "kv_bytes_per_token", "license", "class"}  # fmt: skip
    assert plan["model"]["license"]["commercial"] in ("yes", "no", "conditional")
    assert set(plan["chosen"]) >= CANDIDATE_KEYS
    assert all(set(r) == {"target", "region", "instance_type", "reason"} for r in plan["rejected"])
    prices = [c["hourly_usd"] for c in plan["candidates"]]
    assert prices == sorted(prices)
    assert plan["chosen"] == plan["candidates"][0]


def test_chosen_is_the_cheapest_feasible_offer_in_the_catalog():
    """Recompute the optimum independently: cheapest EU offer whose memory check passes."""
    _, plan = _plan_json(str(ROOT / "examples/mistral-7b-eu.yaml"))
    feasible = {(c["target"], c["region"], c["instance_type"]) for c in plan["candidates"]}
    eu = [
        o for o in load_offers(["aws", "azure", "gcp", "coreweave"])
        if o.jurisdiction == "EU" and o.hourly_usd is not None
    ]  # fmt: skip
    cheapest = min(o.hourly_usd for o in eu if o.key in feasible)
    assert plan["chosen"]["hourly_usd"] == pytest.approx(cheapest, abs=1e-4)
    # Every EU offer cheaper than the choice was rejected for a stated reason.
    rejected = {
        (r["target"], r["region"], r["instance_type"]): r["reason"] for r in plan["rejected"]
    }
    for o in eu:
        if o.hourly_usd < cheapest:
            assert rejected.get(o.key)


def test_nothing_fits_prints_json_and_exits_4(tmp_path):
    spec = (ROOT / "examples/mistral-7b-eu.yaml").read_text()
    spec = spec.replace("residency: [EU]", "residency: [EU]\n  max_hourly_usd: 0.05")
    path = tmp_path / "tight.yaml"
    path.write_text(spec)
    code, plan = _plan_json(str(path))
    assert code == 4
    assert plan["chosen"] is None and plan["candidates"] == []
    assert any("max_hourly_usd" in r["reason"] for r in plan["rejected"])


def test_target_flag_restricts_the_plan():
    code, plan = _plan_json(str(ROOT / "examples/mistral-7b-eu.yaml"), "--target", "azure")
    assert code == 0
    assert {c["target"] for c in plan["candidates"]} == {"azure"}


def test_prod_guardrails_refuse_with_exit_4(tmp_path):
    spec = (ROOT / "examples/mistral-7b-eu.yaml").read_text()
    path = tmp_path / "s.yaml"
    path.write_text(spec.replace("  staging:", "  prod: {}\n  staging:"))
    result = runner.invoke(app, ["plan", str(path), "--env", "prod"])
    assert result.exit_code == 4
    assert "model.revision" in result.stderr


def test_human_output_names_choice_and_rejections():
    result = runner.invoke(app, ["plan", str(ROOT / "examples/mistral-7b-eu.yaml")],
                           env={"COLUMNS": "160"})  # fmt: skip
    assert result.exit_code == 0
    assert "chosen" in result.stdout and "offers rejected" in result.stdout
    assert "--tensor-parallel-size" in result.stdout


@pytest.mark.parametrize("fmt", ["--json", "--markdown", "--csv", None])
def test_compare_formats(fmt):
    args = ["compare", str(ROOT / "examples/mistral-7b-eu.yaml")] + ([fmt] if fmt else [])
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    if fmt == "--json":
        doc = json.loads(result.stdout)
        rows = doc["regions"]
        assert all(r["jurisdiction"] == "EU" for r in rows)
        assert any(r["fits"] for r in rows)
        assert all(r["reason"] for r in rows if not r["fits"])
    elif fmt == "--csv":
        assert result.stdout.splitlines()[0].startswith("target,region,country,jurisdiction,fits")
    elif fmt == "--markdown":
        assert result.stdout.startswith("| target | region |")


def test_plan_as_a_subprocess_never_shows_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: mdeploy/v1\nkind: Deployment\nmetadata: {name: x}\n"
                   "model: {id: nobody/unknown-model}\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "mdeploy", "plan", str(bad)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "model.id" in proc.stderr


def test_context_beyond_the_models_limit_is_refused(tmp_path):
    spec = (ROOT / "examples/mistral-7b-eu.yaml").read_text()
    path = tmp_path / "long.yaml"
    path.write_text(spec.replace("max_context: 16384", "max_context: 65536"))
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert "model.max_context" in result.stderr and "32768" in result.stderr


def test_targets_that_cannot_deploy_the_spec_are_never_chosen(tmp_path):
    """gcp-sm secrets are readable on Vertex only: the other clouds are rejected, with why."""
    spec = (ROOT / "examples/mistral-7b-eu.yaml").read_text()
    path = tmp_path / "gcp-secret.yaml"
    path.write_text(spec.replace("env:HF_TOKEN", "gcp-sm:projects/p/secrets/hf/versions/1"))
    code, plan = _plan_json(str(path))
    assert code == 0
    assert {c["target"] for c in plan["candidates"]} == {"gcp"}
    reasons = [r["reason"] for r in plan["rejected"] if r["target"] == "aws"]
    assert reasons and all("aws cannot deploy this spec" in r for r in reasons
                           if not r.startswith("residency"))  # fmt: skip
    assert any("serving.secrets.HF_TOKEN" in r for r in reasons)
