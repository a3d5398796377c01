"""`plan --check-quotas`: offers over quota are demoted with the cloud's quota name; an
unreadable quota is a warning, never a silent pass or a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mdeploy.cli.app import app
from mdeploy.errors import CloudError
from mdeploy.targets import get_target
from mdeploy.targets.base import QuotaProblem

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mistral-7b-eu.yaml"
runner = CliRunner()


def plan_json(*extra: str) -> tuple[int, dict, str]:
    result = runner.invoke(app, ["plan", str(EXAMPLE), "--json", *extra])
    return result.exit_code, json.loads(result.stdout), result.stderr


@pytest.fixture
def over_quota_once(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every target's cheapest checked offer is over quota; the next one passes."""
    seen: list[str] = []

    def quota_problem(self, args) -> QuotaProblem | None:
        first = self.name not in {s.split(":")[0] for s in seen}
        seen.append(f"{self.name}:{args.instance_type}")
        if first:
            return QuotaProblem("GPUs per region", 2, 0, "ask-for-more --quota gpus")
        return None

    for name in ("aws", "azure", "gcp", "coreweave"):
        monkeypatch.setattr(type(get_target(name)), "quota_problem", quota_problem)
    return seen


def test_over_quota_offers_are_demoted_with_the_quota_name(over_quota_once):
    _, offline, _ = plan_json()
    code, checked, _ = plan_json("--check-quotas")
    assert code == 0
    where = (offline["chosen"]["region"], offline["chosen"]["instance_type"])
    demoted = [r for r in checked["rejected"] if r["reason"].startswith("over quota")]
    assert where in {(r["region"], r["instance_type"]) for r in demoted}
    assert (checked["chosen"]["region"], checked["chosen"]["instance_type"]) != where
    for r in demoted:
        assert "'GPUs per region'" in r["reason"] and "ask-for-more" in r["reason"]
    assert len(checked["candidates"]) == len(offline["candidates"]) - len(demoted)


def test_an_unreadable_quota_warns_and_keeps_the_plan(monkeypatch: pytest.MonkeyPatch):
    def unreadable(self, args):
        raise CloudError("Service Quotas did not answer (NoCredentialsError)")

    for name in ("aws", "azure", "gcp", "coreweave"):
        monkeypatch.setattr(type(get_target(name)), "quota_problem", unreadable)
    code, checked, stderr = plan_json("--check-quotas")
    _, offline, _ = plan_json()
    assert code == 0
    assert checked["chosen"] == offline["chosen"]
    assert "quota unknown" in stderr and "NoCredentialsError" in stderr


def test_checks_stop_at_the_first_passing_offer_per_target(over_quota_once):
    plan_json("--check-quotas")
    per_target: dict[str, int] = {}
    for entry in over_quota_once:
        per_target[entry.split(":")[0]] = per_target.get(entry.split(":")[0], 0) + 1
    assert per_target and all(n == 2 for n in per_target.values()), per_target


def test_plan_says_a_cluster_region_is_checked_at_up():
    result = runner.invoke(app, ["plan", str(EXAMPLE), "-t", "coreweave"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    chosen = json.loads(
        runner.invoke(app, ["plan", str(EXAMPLE), "-t", "coreweave", "--json"]).stdout
    )
    region = chosen["chosen"]["region"]
    assert f"region {region}: checked at up" in result.stdout
    assert "topology.kubernetes.io/zone" in result.stdout
