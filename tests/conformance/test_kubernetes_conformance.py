"""
Every Kubernetes object mdeploy would apply, for every example × environment × the main
stack-config variants, against the Kubernetes OpenAPI schemas (kubernetes-validate, strict).

Also: the pods of a placed endpoint are pinned to its region (issue 9 §10), and the checker
itself catches an invalid value (so a green run means something).
"""

from __future__ import annotations

import copy

import pytest
from conformance._k8s import (
    Case,
    example_cases,
    k8s_objects,
    synth_case,
    validate_objects,
    variants,
)


def _places_on_coreweave(case: Case) -> bool:
    """Whether the planner finds a coreweave offer for the case (cheap: no synth)."""
    from mdeploy.plan import make_plan

    loaded = case.load()
    plan = make_plan(loaded.spec, targets=["coreweave"], base_dir=loaded.base_dir)
    return plan.chosen is not None


# Only the cases that place on Kubernetes: the French sovereign example has no CoreWeave
# region inside its residency, so it has nothing to render (a test below keeps that true,
# so the list cannot shrink silently).
CASES = [case for case in example_cases() if _places_on_coreweave(case)]
UNPLACED = [case for case in example_cases() if case not in CASES]
PLACE_LABELS = {"topology.kubernetes.io/region", "topology.kubernetes.io/zone"}


@pytest.fixture(scope="module")
def graphs() -> dict[str, list[tuple[str, object]]]:
    """case id → [(variant, SynthResult)] for the coreweave offers that fit the example."""
    out = {}
    for case in CASES:
        result = synth_case(case, "coreweave")
        out[case.id] = list(variants(result)) if result else []
    return out


def test_some_example_reaches_kubernetes(graphs) -> None:
    assert sum(len(v) for v in graphs.values()) >= 4, "no example synthesizes for coreweave"
    assert all(graphs[case.id] for case in CASES), "a placed case rendered nothing"


def test_only_the_sovereign_example_has_no_kubernetes_placement() -> None:
    assert {case.example for case in UNPLACED} <= {"mixtral-8x7b-sovereign-fr.yaml"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_object_conforms_to_the_kubernetes_schema(graphs, case: Case) -> None:
    for variant, result in graphs[case.id]:
        objects = k8s_objects(result)
        kinds = {o["kind"] for o in objects}
        assert {"Deployment", "Service", "ServiceAccount"} <= kinds, variant
        assert validate_objects(objects) == [], f"{case.id} {variant}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_pods_are_pinned_to_the_placement_region(graphs, case: Case) -> None:
    placed = graphs[case.id][0][1].resolved.args.region  # the planner's choice
    for variant, result in graphs[case.id]:
        (deployment,) = [o for o in k8s_objects(result) if o["kind"] == "Deployment"]
        affinity = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        region = placed if variant != "generic-pool" else "cluster"
        places = {
            (e["key"], tuple(e["values"]))
            for t in terms
            for e in t["matchExpressions"]
            if e["key"] in PLACE_LABELS
        }
        if region == "cluster":
            assert places == set(), variant
        else:
            # Every term (they are ORed) names the region: no term lets a pod land elsewhere.
            assert all(any(e["key"] in PLACE_LABELS for e in t["matchExpressions"]) for t in terms)
            assert {v for _, v in places} == {(region,)}, variant


def _first_objects(graphs) -> list[dict]:
    for pairs in graphs.values():
        if pairs:
            return k8s_objects(pairs[0][1])
    raise AssertionError("no graph")


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"][0].update(matchExpression=[]),  # misspelt field (strict)
        lambda d: d["spec"].update(replicas="two"),  # wrong type
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(
            containerPort="http"
        ),
    ],
    ids=["unknown-field", "wrong-type", "port-not-int"],
)
def test_the_checker_catches_an_invalid_deployment(graphs, break_it) -> None:
    objects = copy.deepcopy(_first_objects(graphs))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    break_it(deployment)
    problems = validate_objects([deployment])
    assert len(problems) == 1 and problems[0].startswith("Deployment/"), problems
