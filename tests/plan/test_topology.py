"""Replica topology (issue 14): fractional nodes, multi-node replicas, managed-target limits."""

from __future__ import annotations

from typing import Any

import pytest
from plan.factories import make_offer, make_spec

from mdeploy.catalog import load_offers
from mdeploy.plan import make_plan
from mdeploy.plan.fit import Sizing
from mdeploy.plan.models import Candidate
from mdeploy.plan.placement import evaluate
from mdeploy.plan.topology import (
    IDLE_NOTE,
    Topology,
    check_topology_fit,
    cross_node_problem,
    interconnect_warning,
    multi_node_args,
)
from mdeploy.spec.models import Deployment

LLAMA_405B = "meta-llama/Llama-3.1-405B-Instruct"
AZURE_REASON = (
    "largest Azure ML managed SKU is 8×H100 (640 GB): use a target "
    "where a replica may span nodes (coreweave, kubernetes)"
)


def catalog_spec(model: str, clouds: list[str], **placement: Any) -> Deployment:
    """A spec sized from the bundled model catalog (no hand-typed architecture)."""
    doc: dict[str, Any] = {
        "apiVersion": "mdeploy/v1",
        "kind": "Deployment",
        "metadata": {"name": "t"},
        "model": {"id": model, "max_context": 8192},
        "serving": {"max_concurrency": 8},
        "placement": {"clouds": clouds, **placement},
    }
    return Deployment.model_validate(doc)


def node_price(c: Candidate) -> float:
    (offer,) = [
        o
        for o in load_offers([c.target])
        if (o.region, o.instance_type) == (c.region, c.instance_type)
    ]
    assert offer.hourly_usd is not None
    return offer.hourly_usd


# ---------------------------------------------------------------- fractional nodes (item 3)


def test_mistral_7b_on_coreweave_asks_for_the_gpus_it_needs_and_pays_its_share():
    plan = make_plan(catalog_spec("mistralai/Mistral-7B-Instruct-v0.3", ["coreweave"]))
    c = plan.chosen
    assert c is not None and c.gpu_count in (1, 2) and c.node_gpu_count == 8
    assert c.tensor_parallel == c.gpu_count
    assert c.hourly_usd == pytest.approx(node_price(c) * c.gpu_count / 8)
    assert any(IDLE_NOTE in note for note in c.notes)
    assert c.topology == f"{c.gpu}×{c.gpu_count} of 8, TP{c.gpu_count}"


def test_qwen_0_5b_places_on_coreweave_with_a_tp_that_divides_its_14_heads():
    plan = make_plan(catalog_spec("Qwen/Qwen2.5-0.5B-Instruct", ["coreweave"]))
    assert plan.chosen is not None and 14 % plan.chosen.tensor_parallel == 0


def test_managed_targets_keep_the_whole_instance(spec: Deployment):
    offer = make_offer(instance_type="ml.g6e.48xlarge", gpu_count=8, hourly_usd=30.0)
    c = evaluate(offer, spec, _sizing(spec))
    assert isinstance(c, Candidate) and c.gpu_count == 8 and c.hourly_usd == 30.0
    assert c.nodes == 1 and c.topology == "8×L40S, TP8"


def test_kubernetes_offer_is_split_and_the_budget_applies_to_the_share():
    spec = make_spec(placement={"clouds": ["coreweave"], "max_hourly_usd": 3.0})
    offer = make_offer(target="coreweave", gpu_count=8, hourly_usd=18.0)
    c = evaluate(offer, spec, _sizing(spec))
    assert isinstance(c, Candidate) and c.gpu_count == 1 and c.hourly_usd == pytest.approx(2.25)


def test_unpriced_pool_ranks_after_a_dearer_priced_one_marked_no_price():
    spec = make_spec(placement={
        "clouds": ["kubernetes"],
        "kubernetes": {"pools": [
            {"name": "own", "gpu": "H100", "gpu_count": 8, "country": "DE"},
            {"name": "rented", "gpu": "L40S", "gpu_count": 1, "country": "DE", "hourly_usd": 99.0},
        ]},
    })  # fmt: skip
    plan = make_plan(spec)
    assert [c.instance_type for c in plan.candidates] == ["rented", "own"]
    own = plan.candidates[1]
    assert not own.priced and own.to_json()["hourly_usd"] is None
    assert any("no price" in n for n in own.notes)


# ---------------------------------------------------------------- multi-node (items 1, 4)


def test_llama_405b_on_coreweave_h100_is_two_nodes_tp8_pp2():
    plan = make_plan(catalog_spec(LLAMA_405B, ["coreweave"], gpus=["H100"]))
    c = plan.chosen
    assert c is not None
    assert (c.nodes, c.gpu_count, c.tensor_parallel, c.pipeline_parallel) == (2, 8, 8, 2)
    assert c.topology == "2 × 8×H100, TP8·PP2"
    assert c.hourly_usd == pytest.approx(2 * node_price(c))
    assert c.required_gib_per_gpu <= c.gpu_memory_gib * 0.9
    row = c.to_json()
    assert (row["nodes"], row["pipeline_parallel"], row["data_parallel"]) == (2, 2, 1)
    assert row["expert_parallel"] == 1 and row["tensor_parallel"] == 8
    leader, workers = c.engine_args, c.worker_engine_args
    assert _flag(leader, "--pipeline-parallel-size") == "2" and _flag(leader, "--nnodes") == "2"
    assert _flag(leader, "--node-rank") == "0" and "--headless" not in leader
    assert _flag(workers, "--node-rank") == "$(LWS_WORKER_INDEX)" and "--headless" in workers
    assert _flag(workers, "--master-addr") == "$(LWS_LEADER_ADDRESS)"
    assert c.extra["nodes"] == "2" and c.extra["rdma"] == "true"  # the IB class: no warning
    assert not any("pipeline parallel across nodes" in n for n in c.notes)


def test_kimi_k2_fp8_at_128k_is_two_h200_nodes_as_published():
    # published_deployments.csv: Kimi-K2 FP8, 131072 tokens, "smallest deployment unit ...
    # 16 GPUs" (vllm-project/recipes moonshotai/Kimi-K2.md: two 8-GPU nodes, TP8xPP2)
    spec = catalog_spec("moonshotai/Kimi-K2-Instruct", ["coreweave"], gpus=["H200"])
    spec = spec.model_copy(
        update={
            "model": spec.model.model_copy(update={"max_context": 131072}),
            "serving": spec.serving.model_copy(update={"max_concurrency": 1}),
        }
    )
    c = make_plan(spec).chosen
    assert c is not None and c.topology == "2 × 8×H200, TP8·PP2"


def test_one_bigger_node_wins_when_it_is_cheaper_than_two():
    plan = make_plan(catalog_spec(LLAMA_405B, ["coreweave"], gpus=["H100", "H200"]))
    assert plan.chosen is not None and plan.chosen.nodes == 1 and plan.chosen.gpu == "H200"
    two = [c for c in plan.candidates if c.nodes == 2]
    assert two and all(c.hourly_usd > plan.chosen.hourly_usd for c in two)


def test_price_decides_between_nodes_when_more_small_nodes_are_cheaper():
    plan = make_plan(catalog_spec(LLAMA_405B, ["coreweave"]))
    c = plan.chosen
    assert c is not None and c.hourly_usd == min(x.hourly_usd for x in plan.candidates)
    assert c.hourly_usd == pytest.approx(c.nodes * node_price(c))


def test_llama_405b_on_azure_is_refused_naming_the_largest_managed_sku():
    plan = make_plan(catalog_spec(LLAMA_405B, ["azure"]))
    assert plan.chosen is None
    memory = [r.reason for r in plan.rejected if r.code == "memory"]
    assert memory and all(r.startswith(AZURE_REASON) for r in memory)


def test_multi_node_over_unknown_fabric_carries_a_warning():
    spec = make_spec(
        model={"id": "big", "max_context": 4096, "architecture": {
            "params_b": 400, "layers": 126, "attention_heads": 128, "kv_heads": 8,
            "head_dim": 128}},
        placement={"clouds": ["coreweave"]},
    )  # fmt: skip
    offer = make_offer(target="coreweave", gpu="H100", gpu_count=8, gpu_memory_gib=79.65,
                       extra={"rdma": "false"})  # fmt: skip
    c = evaluate(offer, spec, _sizing(spec))
    assert isinstance(c, Candidate) and c.nodes == 2
    assert any("over Ethernet" in n for n in c.notes)


# ---------------------------------------------------------------- the rule itself


def test_pipeline_stages_split_weights_and_kv():
    sizing = Sizing(params_b=1, weights_gib=160, kv_bytes_per_token=0, kv_cache_gib=16,
                    kv_heads=8, attention_heads=32)  # fmt: skip
    one = check_topology_fit(sizing, tp=8, pp=1, gpu_memory_gib=80, utilization=0.9)
    two = check_topology_fit(sizing, tp=8, pp=2, gpu_memory_gib=80, utilization=0.9)
    assert (one.weights_gib_per_gpu, one.kv_gib_per_gpu) == (20, 2)
    assert (two.weights_gib_per_gpu, two.kv_gib_per_gpu) == (10, 1)


def test_cross_node_rule():
    assert cross_node_problem("tp", "true") is not None
    assert cross_node_problem("pp", "false") is None
    assert cross_node_problem("ep", "unknown") is not None
    assert cross_node_problem("ep", "true") is None
    assert interconnect_warning("true") is None
    assert "Ethernet" in (interconnect_warning("false") or "")


def test_single_node_args_are_untouched():
    assert multi_node_args(["--x"], Topology(gpus_per_node=8, node_gpus=8, tp=8)) == (["--x"], [])


def _sizing(spec: Deployment) -> Sizing:
    from mdeploy.plan import sizing

    return sizing(spec)


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]
