"""Numbers no field can mean are refused where they are written, before they overflow."""

from __future__ import annotations

import pytest

from mdeploy.errors import SpecError
from mdeploy.spec import load_spec
from mdeploy.spec.models import MAX_COUNT, MAX_USD_HOUR

ARCH = "architecture: {params_b: 7, layers: 32, attention_heads: 32, kv_heads: 8, head_dim: 128}"
SPEC = f"""\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {{name: chat}}
model: {{id: acme/x, {ARCH}}}
placement: {{max_hourly_usd: BUDGET}}
"""


def only_issue(write, text: str):
    with pytest.raises(SpecError) as info:
        load_spec(write(text))
    assert len(info.value.issues) == 1, info.value.message
    return info.value.issues[0]


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN"])
def test_non_finite_numbers_are_refused_at_their_position(write, value):
    issue = only_issue(write, SPEC.replace("BUDGET", value))
    assert (issue.line, issue.field) == (5, "placement.max_hourly_usd")
    assert "not a finite number" in issue.message


def test_integers_beyond_64_bits_are_refused(write):
    issue = only_issue(write, SPEC.replace("BUDGET", str(10**30)))
    assert "integer too large" in issue.message and issue.line == 5


def test_floats_beyond_the_limit_are_refused(write):
    issue = only_issue(write, SPEC.replace("BUDGET", "1.0e+300"))
    assert "number too large" in issue.message


def test_numbers_in_free_form_engine_args_are_bounded_too(write):
    text = SPEC.replace("BUDGET", "10") + "serving: {engine_args: {seed: .inf}}\n"
    assert only_issue(write, text).field == "serving.engine_args.seed"


def test_budget_has_a_documented_ceiling(write):
    issue = only_issue(write, SPEC.replace("BUDGET", str(int(MAX_USD_HOUR) + 1)))
    assert "less than or equal" in issue.message


def test_architecture_counts_have_a_ceiling(write):
    text = SPEC.replace("BUDGET", "10").replace("layers: 32", f"layers: {MAX_COUNT + 1}")
    issue = only_issue(write, text)
    assert issue.field == "model.architecture.layers"


def test_ordinary_numbers_pass(write):
    assert load_spec(write(SPEC.replace("BUDGET", "12.5"))).spec.placement.max_hourly_usd == 12.5
