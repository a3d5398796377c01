"""Environment overlays: merge semantics, located errors, unknown and malformed overlays."""

from __future__ import annotations

import pytest

from mdeploy.errors import InputError, SpecError
from mdeploy.spec import list_environments, load_spec
from mdeploy.spec._overlay import merge
from mdeploy.spec._yaml import Node

BASE = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata:
  name: tiny-chat
  labels: {team: platform, tier: gold}
model:
  id: acme/tiny
  quantization: awq
serving:
  max_concurrency: 32
  replicas: {min: 1, max: 3}
  engine_args: {enforce-eager: true}
placement:
  clouds: [aws, azure, gcp]
  residency: [EU]
environments:
"""


def test_mappings_merge_lists_and_scalars_replace_null_resets(write):
    text = (
        BASE
        + """\
  prod:
    metadata:
      labels: {tier: platinum}
    model:
      quantization: null
    serving:
      replicas: {min: 2}
      max_concurrency: 8
    placement:
      clouds: [gcp]
"""
    )
    spec = load_spec(write(text), "prod").spec
    assert spec.metadata.labels == {"team": "platform", "tier": "platinum"}
    assert spec.model.quantization is None  # reset to the default
    assert (spec.serving.replicas.min, spec.serving.replicas.max) == (2, 3)
    assert spec.serving.max_concurrency == 8
    assert spec.serving.engine_args == {"enforce-eager": True}  # untouched
    assert spec.placement.clouds == ["gcp"]  # replaced, not appended
    assert spec.placement.residency == ["EU"]
    assert spec.environments == {}  # dropped from the merged document

    base = load_spec(write(text)).spec
    assert base.placement.clouds == ["aws", "azure", "gcp"]
    assert base.model.quantization == "awq"
    assert "prod" in base.environments


def test_null_resets_a_whole_section_to_defaults(write):
    text = BASE + "  dev:\n    serving: null\n"
    spec = load_spec(write(text), "dev").spec
    assert spec.serving.max_concurrency == 16 and spec.serving.engine_args == {}


def test_overlay_errors_point_at_overlay_lines(write, line_of):
    text = (
        BASE
        + """\
  staging:
    serving:
      replicas: {max: 0}
      dtype: float16
    placement:
      residency: [Europe]
"""
    )
    path = write(text)
    load_spec(path)  # the base is valid: overlays are only merged when chosen
    with pytest.raises(SpecError) as info:
        load_spec(path, "staging")
    found = {(i.line, i.field) for i in info.value.issues}
    assert found == {
        (line_of(text, "replicas: {max: 0}"), "serving.replicas.max"),
        (line_of(text, "dtype: float16"), "serving.dtype"),
        (line_of(text, "residency: [Europe]"), "placement.residency"),
    }
    assert "'staging'" in (info.value.hint or "")


def test_an_error_the_overlay_causes_in_a_base_mapping_points_at_the_overlay(write, line_of):
    text = BASE + "  tiny:\n    serving:\n      replicas:\n        max: 0\n"
    with pytest.raises(SpecError) as info:
        load_spec(write(text), "tiny")
    (issue,) = info.value.issues
    assert issue.line == line_of(text, "max: 0")


def test_unknown_environment_lists_the_available_ones(write):
    path = write(BASE + "  staging: {}\n  prod: {}\n")
    with pytest.raises(InputError) as info:
        load_spec(path, "qa")
    assert "unknown environment 'qa'" in info.value.message
    assert info.value.hint == "available environments: staging, prod"
    assert not isinstance(info.value, SpecError)


def test_unknown_environment_without_any(write):
    path = write(BASE.replace("environments:\n", ""))
    with pytest.raises(InputError) as info:
        load_spec(path, "prod")
    assert "no environments" in (info.value.hint or "")


def test_overlay_must_be_a_mapping(write, line_of):
    text = BASE + "  prod: [a]\n"
    with pytest.raises(SpecError) as info:
        load_spec(write(text), "prod")
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (line_of(text, "prod: [a]"), "environments.prod")


def test_overlays_cannot_nest_environments(write, line_of):
    text = BASE + "  prod:\n    environments: {x: {}}\n"
    with pytest.raises(SpecError) as info:
        load_spec(write(text), "prod")
    (issue,) = info.value.issues
    assert issue.line == line_of(text, "environments: {x")


def test_unknown_key_in_overlay_is_reported_at_overlay_line(write, line_of):
    text = BASE + "  prod:\n    serving:\n      replicaz: {min: 1}\n"
    with pytest.raises(SpecError) as info:
        load_spec(write(text), "prod")
    (issue,) = info.value.issues
    assert (issue.line, issue.column) == (line_of(text, "replicaz"), 7)
    assert issue.message == "unknown field; did you mean 'replicas'?"


def test_prod_env_and_strict_guardrails_make_a_spec_strict(write):
    text = BASE + "  prod: {}\n  qa:\n    guardrails: strict\n  dev: {}\n"
    path = write(text)
    assert load_spec(path, "prod").strict
    assert load_spec(path, "qa").strict
    assert not load_spec(path, "dev").strict
    assert not load_spec(path).strict
    assert list_environments(path) == ["prod", "qa", "dev"]


def test_merge_leaves_its_inputs_unchanged():
    def n(value):
        if isinstance(value, dict):
            return Node({k: n(v) for k, v in value.items()}, 1, 1)
        if isinstance(value, list):
            return Node([n(v) for v in value], 1, 1)
        return Node(value, 2, 2)

    base = n({"a": {"b": 1, "c": 2}, "d": [1]})
    over = n({"a": {"c": 3, "b": None}, "d": [2, 3]})
    assert merge(base, over).plain() == {"a": {"c": 3}, "d": [2, 3]}
    assert base.plain() == {"a": {"b": 1, "c": 2}, "d": [1]}
    assert over.plain() == {"a": {"c": 3, "b": None}, "d": [2, 3]}
