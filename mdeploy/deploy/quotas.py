"""
`plan --check-quotas`: ask each cloud's quota service about the cheapest offers, and demote
the ones the account could not run.

The planner itself stays offline; this is the one step of `plan` that needs credentials. Per
target, candidates are checked in price order until one passes (at most a few per target, so
a plan never turns into hundreds of API calls); an offer over quota becomes a rejection with
code `quota` and the cloud's own quota name and request line. A target whose quota cannot be
read (no credentials, no network) is left as planned, with a warning that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from mdeploy.errors import CloudError, PrerequisiteError

if TYPE_CHECKING:
    from mdeploy.plan.models import Candidate, Plan
    from mdeploy.spec import LoadedSpec
    from mdeploy.targets.base import QuotaProblem

__all__ = ["MAX_CHECKS_PER_TARGET", "demote_over_quota"]

MAX_CHECKS_PER_TARGET = 5

Warn = Callable[[str], None]


def demote_over_quota(loaded: LoadedSpec, plan: Plan, *, warn: Warn) -> Plan:
    """The plan with every checked offer that is over quota moved to the rejections."""
    from mdeploy.plan.models import Rejection

    kept: list[Candidate] = []
    demoted: list[Rejection] = []
    settled: set[str] = set()  # targets with a passing (or uncheckable) candidate
    checks: dict[str, int] = {}
    for candidate in plan.candidates:
        target = candidate.target
        if target in settled or checks.get(target, 0) >= MAX_CHECKS_PER_TARGET:
            kept.append(candidate)
            continue
        checks[target] = checks.get(target, 0) + 1
        try:
            problem = _quota_problem(loaded, plan, candidate)
        except (CloudError, PrerequisiteError) as exc:
            warn(f"{target}: quota unknown ({exc.message}); its offers are ranked unchecked")
            settled.add(target)
            kept.append(candidate)
            continue
        if problem is None:
            settled.add(target)
            kept.append(candidate)
        else:
            reason = f"over quota: {problem.message()}"
            demoted.append(
                Rejection(target, candidate.region, candidate.instance_type, reason, "quota")
            )
    return replace(
        plan,
        chosen=kept[0] if kept else None,
        candidates=kept,
        rejected=[*demoted, *plan.rejected],
    )


def _quota_problem(loaded: LoadedSpec, plan: Plan, candidate: Candidate) -> QuotaProblem | None:
    from mdeploy.targets import get_target
    from mdeploy.targets.base import EndpointArgs

    args = EndpointArgs.from_plan(
        loaded.spec,
        candidate,
        env=loaded.env,
        image=loaded.spec.serving.image or "",
        weights_gib=plan.model.weights_gib,
    )
    return get_target(candidate.target).quota_problem(args)
