"""Ranking and rejection reasons over hand-built offers."""

from __future__ import annotations

import pytest
from plan.factories import MISTRAL_7B, make_offer, make_spec

from mdeploy.errors import InputError
from mdeploy.plan.engine import check_engine_args, engine_args
from mdeploy.plan.fit import size_model
from mdeploy.plan.models import Candidate, Rejection
from mdeploy.plan.placement import HOURS_PER_MONTH, evaluate, rank, rank_catalog


def _rank(spec, offers):
    return rank(offers, spec, size_model(MISTRAL_7B, spec.model, spec.serving))


def _verdict(spec, offer):
    return evaluate(offer, spec, size_model(MISTRAL_7B, spec.model, spec.serving))


def test_cheapest_fitting_offer_is_chosen_first(spec):
    offers = [
        make_offer(instance_type="big", gpu="H100", gpu_memory_gib=79.65, hourly_usd=9.0),
        make_offer(instance_type="cheap-small", gpu="A10G", gpu_memory_gib=22.49, hourly_usd=1.0),
        make_offer(instance_type="mid", hourly_usd=2.5),
        make_offer(instance_type="mid-est", hourly_usd=2.5, estimate=True),
    ]
    candidates, rejected = _rank(spec, offers)
    assert [c.instance_type for c in candidates] == ["mid", "mid-est", "big"]
    assert [r.instance_type for r in rejected] == ["cheap-small"]
    assert rejected[0].code == "memory"


def test_rejection_reasons_say_what_to_change(spec):
    r = _verdict(spec, make_offer(gpu="A10G", gpu_memory_gib=22.49))
    assert isinstance(r, Rejection)
    assert "needs 31.5 GiB per GPU" in r.reason
    assert "0.9 × 22.49 = 20.2 GiB" in r.reason
    assert "kv_cache_dtype: fp8" in r.reason


def test_residency_is_checked_first_and_named():
    spec = make_spec(placement={"residency": ["EU"]})
    r = _verdict(spec, make_offer(region="us-east-1", country="US", jurisdiction="US",
                                  gpu_memory_gib=1.0))  # fmt: skip
    assert isinstance(r, Rejection) and r.code == "residency"
    assert "us-east-1 is in US (US), outside [EU]" in r.reason


@pytest.mark.parametrize(
    ("residency", "country", "jurisdiction", "allowed"),
    [
        (["EU"], "FR", "EU", True),
        (["EU"], "NO", "EEA", False),
        (["EEA"], "FR", "EU", True),  # the EEA contains the EU
        (["EEA"], "NO", "EEA", True),
        (["FR"], "DE", "EU", False),
        (["FR", "CH"], "CH", "CH", True),
        (["UK"], "GB", "UK", True),
        ([], "BR", "other", True),
    ],
)
def test_residency_rules(residency, country, jurisdiction, allowed):
    spec = make_spec(placement={"residency": residency})
    verdict = _verdict(spec, make_offer(country=country, jurisdiction=jurisdiction))
    assert isinstance(verdict, Candidate) is allowed


def test_region_gpu_budget_price_and_flag_rules():
    spec = make_spec(placement={"regions": ["eu-west-3"], "gpus": ["l40s"], "max_hourly_usd": 3})
    assert _verdict(spec, make_offer(region="eu-west-1")).code == "region"
    assert _verdict(spec, make_offer(gpu="H100", gpu_memory_gib=79.65)).code == "gpu"
    assert _verdict(spec, make_offer(hourly_usd=3.01)).code == "budget"
    assert _verdict(spec, make_offer(hourly_usd=None)).code == "price"
    flagged = _verdict(spec, make_offer(flagged="spot >= on-demand"))
    assert flagged.code == "price" and "spot >= on-demand" in flagged.reason
    assert isinstance(_verdict(spec, make_offer(hourly_usd=3.0)), Candidate)


def test_candidate_costs_cover_min_replicas():
    spec = make_spec(serving={"max_concurrency": 8, "replicas": {"min": 2, "max": 3}})
    c = _verdict(spec, make_offer(hourly_usd=2.5))
    assert c.hourly_usd == 5.0
    assert c.monthly_usd == 5.0 * HOURS_PER_MONTH


def test_tensor_parallel_rejection_for_odd_gpu_counts(spec):
    assert _verdict(spec, make_offer(gpu_count=3)).code == "tp"


def test_engine_args_carry_every_sizing_decision():
    spec = make_spec(
        model={"quantization": "awq", "max_context": 8192},
        serving={"kv_cache_dtype": "fp8", "gpu_memory_utilization": 0.85,
                 "engine_args": {"enable-prefix-caching": True, "max-num-seqs": 64}},
    )  # fmt: skip
    args = engine_args(spec, 2)
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--tensor-parallel-size"] == "2"
    assert pairs["--max-model-len"] == "8192"
    assert pairs["--gpu-memory-utilization"] == "0.85"
    assert "--quantization" in args and args[args.index("--quantization") + 1] == "awq"
    assert args[args.index("--kv-cache-dtype") + 1] == "fp8"
    assert "--enable-prefix-caching" in args
    assert args[args.index("--max-num-seqs") + 1] == "64"


def test_engine_args_may_not_override_planner_flags():
    spec = make_spec(serving={"engine_args": {"tensor-parallel-size": 8}})
    with pytest.raises(InputError, match="tensor-parallel-size"):
        check_engine_args(spec)


def test_arm64_hosts_are_rejected_since_the_image_is_amd64(spec):
    verdict = _verdict(
        spec, make_offer(gpu="GH200", gpu_memory_gib=96, extra={"cpu_arch": "arm64"})
    )
    assert verdict.code == "arch" and "amd64" in verdict.reason


def test_kubernetes_pools_become_offers_with_catalog_memory():
    spec = make_spec(placement={
        "clouds": ["kubernetes"], "residency": ["EU"],
        "kubernetes": {"pools": [
            {"name": "l40s", "gpu": "L40S", "gpu_count": 1, "country": "DE", "hourly_usd": 1.9},
            {"name": "nopice", "gpu": "H100", "gpu_count": 1, "country": "DE"},
        ]},
    })  # fmt: skip
    from mdeploy.plan import make_plan

    plan = make_plan(spec)
    assert plan.chosen.target == "kubernetes" and plan.chosen.instance_type == "l40s"
    assert plan.chosen.gpu_memory_gib == 44.99 and plan.chosen.jurisdiction == "EU"
    # issue 14: a pool without a price ranks after the priced ones, marked, never refused
    assert plan.rejected == [] and [c.priced for c in plan.candidates] == [True, False]
    assert plan.candidates[1].to_json()["hourly_usd"] is None


# ---------------------------------------------------------------- region access (issue 9 §5)

ACCESS = {
    ("aws", "eu-south-2"): "opt-in",
    ("azure", "germanynorth"): "restricted",
    ("aws", "us-gov-west-1"): "partition",
}


@pytest.mark.parametrize(
    ("target", "region", "words"),
    [
        ("aws", "eu-south-2", "opt-in region: enable it first, or name it in placement.regions"),
        ("azure", "germanynorth", "restricted-access region"),
        ("aws", "us-gov-west-1", "separate partition"),
    ],
)
def test_regions_that_are_not_open_are_rejected_unless_named(target, region, words):
    spec = make_spec(placement={"residency": [], "clouds": ["aws", "azure"]})
    offer = make_offer(target=target, region=region)
    sizing = size_model(MISTRAL_7B, spec.model, spec.serving)
    r = evaluate(offer, spec, sizing, access=ACCESS)
    assert isinstance(r, Rejection) and r.code == "access" and words in r.reason
    named = make_spec(placement={"residency": [], "regions": [region]})
    assert isinstance(evaluate(offer, named, sizing, access=ACCESS), Candidate)


def test_access_is_checked_after_residency_and_target_before_allow_list():
    spec = make_spec(placement={"residency": ["US"], "regions": ["us-east-1"]})
    sizing = size_model(MISTRAL_7B, spec.model, spec.serving)
    eu = make_offer(region="eu-south-2")
    assert evaluate(eu, spec, sizing, access=ACCESS).code == "residency"
    blocked = evaluate(eu, make_spec(), sizing, {"aws": "no"}, access=ACCESS)
    assert blocked.code == "target"
    gov = make_offer(region="us-gov-west-1", country="US", jurisdiction="US")
    assert evaluate(gov, spec, sizing, access=ACCESS).code == "access"


def test_rank_catalog_rejects_whole_regions_with_one_shared_reason():
    import pickle

    from mdeploy.catalog._store import OfferGroup

    spec = make_spec(placement={"residency": ["EU"]})
    sizing = size_model(MISTRAL_7B, spec.model, spec.serving)
    us_offers = [
        make_offer(region="us-east-1", country="US", jurisdiction="US", instance_type=f"t{i}")
        for i in range(3)
    ]
    rows = tuple(tuple(vars(o).values()) for o in us_offers)
    names = tuple(r[2] for r in rows)
    us = OfferGroup(("aws", "us-east-1", "US", "US"), names, pickle.dumps(rows))
    eu_rows = (tuple(vars(make_offer()).values()),)
    eu = OfferGroup(("aws", "eu-west-3", "FR", "EU"), ("ml.g6e.xlarge",), rows=eu_rows)
    candidates, rejected = rank_catalog([us, eu], [], spec, sizing)
    assert [c.region for c in candidates] == ["eu-west-3"]
    assert [r.instance_type for r in rejected] == ["t0", "t1", "t2"]
    assert {r.code for r in rejected} == {"residency"}
    assert len({id(r.reason) for r in rejected}) == 1  # formatted once for the region
    assert us._rows is None  # a region rejected whole is never unpickled


def test_memory_reason_is_built_only_when_read():
    spec = make_spec()
    sizing = size_model(MISTRAL_7B, spec.model, spec.serving)
    r = evaluate(make_offer(gpu="A10G", gpu_memory_gib=22.49), spec, sizing)
    assert r.code == "memory" and not isinstance(r[3], str)  # lazy until asked
    assert "needs 31.5 GiB per GPU" in r.reason
    assert r == Rejection(r.target, r.region, r.instance_type, r.reason, "memory")
    assert r.to_json()["reason"] == r.reason
    calls = []
    lazy = Rejection("aws", "r", "t", lambda: calls.append(1) or "built", "memory")
    assert calls == [] and lazy.reason == lazy.reason == "built" and calls == [1]
    assert hash(lazy) == hash(Rejection("aws", "r", "t", "built", "memory"))


def test_eu_example_over_the_bundled_catalog_chooses_no_opt_in_region():
    from pathlib import Path

    from mdeploy.catalog import load_regions
    from mdeploy.plan import make_plan
    from mdeploy.spec import load_spec

    example = Path(__file__).resolve().parents[2] / "examples" / "mistral-7b-eu.yaml"
    spec = load_spec(example, None).spec
    plan = make_plan(spec)
    regions = load_regions()
    assert plan.chosen is not None
    assert all(regions[(c.target, c.region)].access == "open" for c in plan.candidates)
    spain = [r for r in plan.rejected if (r.target, r.region) == ("aws", "eu-south-2")]
    assert spain and {r.code for r in spain} == {"access"}
    assert "opt-in region: enable it first" in spain[0].reason
    # Naming the region is the opt-in: its offers are ranked again.
    named = spec.model_copy(
        update={"placement": spec.placement.model_copy(update={"regions": ["eu-south-2"]})}
    )
    assert {c.region for c in make_plan(named).candidates} == {"eu-south-2"}


@pytest.mark.parametrize("residency", [["EU"], [], ["US", "CH"]])
def test_group_fast_path_ranks_exactly_like_offer_by_offer(residency):
    """make_plan's region groups give the same candidates and rejections, in the same order."""
    from mdeploy.catalog import load_offers, load_regions
    from mdeploy.plan import make_plan

    spec = make_spec(placement={"residency": residency, "regions": ["eu-south-2", "eu-west-1"]}
                     if residency == ["EU"] else {"residency": residency})  # fmt: skip
    sizing = size_model(MISTRAL_7B, spec.model, spec.serving)
    access = {key: r.access for key, r in load_regions().items()}
    offers = load_offers(["aws", "azure", "gcp", "coreweave"], include_flagged=True)
    candidates, rejected = rank(offers, spec, sizing, access=access)
    plan = make_plan(spec)
    assert [c.to_json() for c in plan.candidates] == [c.to_json() for c in candidates]
    assert [(r.to_json(), r.code) for r in plan.rejected] == [
        (r.to_json(), r.code) for r in rejected
    ]
