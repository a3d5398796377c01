"""
Plan once per command: the planner (`mdeploy.plan.make_plan`) runs exactly once for `synth`,
`synth --target`, `up`, `preview` and `promote`, and once per target for
`synth --all-targets` (each target is planned over its own catalog targets, by design).

The planner is wrapped by a counter; the commands run through the CLI with the fake Pulumi
CLI of conftest.py (and, for promote, the in-memory TrafficOps of tests/ops/fakes.py behind
the real `prepare`). A count, not a timing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from ops.fakes import MemoryOps

import mdeploy.plan
from mdeploy.deploy import stack
from mdeploy.deploy.program import deploy_targets
from mdeploy.spec import load_spec


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[str] | None]:
    """The `targets` argument of every planner run, in order."""
    calls: list[Sequence[str] | None] = []
    real = mdeploy.plan.make_plan

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("targets"))
        return real(*args, **kwargs)

    monkeypatch.setattr(mdeploy.plan, "make_plan", counting)
    return calls


def test_synth_of_the_planners_choice_plans_once(cli, spec_file, plans) -> None:
    result = cli("synth", spec_file, "--json")
    assert result.exit_code == 0, result.stderr
    assert plans == [None]  # the all-target plan that picked the target also built its args


def test_synth_of_the_planners_choice_matches_synth_of_that_target(cli, spec_file) -> None:
    chosen = json.loads(cli("synth", spec_file, "--json").stdout)
    named = cli("synth", spec_file, "--target", chosen["target"], "--json")
    assert json.loads(named.stdout) == chosen


def test_synth_of_one_target_plans_once(cli, spec_file, plans) -> None:
    result = cli("synth", spec_file, "--target", "aws", "--json")
    assert result.exit_code == 0, result.stderr
    assert plans == [["aws"]]


def test_synth_all_targets_plans_once_per_target(cli, spec_file, plans, monkeypatch) -> None:
    monkeypatch.setenv("MDEPLOY_SYNTH_WORKERS", "1")  # children's planner runs are not seen
    result = cli("synth", spec_file, "--all-targets", "--json")
    assert result.exit_code == 0, result.stderr
    targets = deploy_targets(load_spec(spec_file).spec)
    assert len(plans) == len(targets) > 1
    assert len({tuple(p or ()) for p in plans}) == len(targets)  # each a different target set


@pytest.mark.parametrize("verb", ["up", "preview"])
def test_up_and_preview_plan_once(cli, fake_pulumi, spec_file, plans, verb) -> None:
    yes = ["--yes"] if verb == "up" else []
    result = cli(verb, spec_file, "--target", "coreweave", *yes, "--json")
    assert result.exit_code == 0, result.stderr
    assert plans == [["coreweave"]]


def test_promote_plans_once(cli, fake_pulumi, spec_file, plans, monkeypatch) -> None:
    ops = MemoryOps()
    monkeypatch.setattr(stack, "live_ops", lambda op: ops)  # after the real prepare
    result = cli("promote", spec_file, "-t", "coreweave", "--yes", "--json", "--bake", "0")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["result"] == "promoted"
    assert plans == [["coreweave"]]
