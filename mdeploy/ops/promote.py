"""
`promote` and `rollback`, written once against the day-2 contract (`Ops` + `TrafficOps`).

Promote: read status; the live version is the one holding 100 % (else the busiest, which is
also what the new version copies its settings from); deploy the new version beside it with
0 %; then for each step set the traffic, bake, and check (endpoint health, smoke test,
metrics). Any failure returns all traffic to the live version, removes the new one and ends
with a report (exit 1). The live version is removed only once the new one holds 100 % and
passed its last checks; it is recorded as "last good" so that `rollback` can restore it.

Durability: the stack's state file is written after each completed step, under the stack's
lock; a run after a crash or Ctrl-C resumes at the first step not completed, and a run
after success is a no-op.

Each step records the split the platform achieved beside the one asked for. Kubernetes
routes by replica count (one Service over the versions' Deployments; no Gateway API
HTTPRoute yet), so 10 % over 2 replicas is 50 %: the step says "coarse", and "degenerate"
when a split strictly between 0 and 100 % came out as 0 or 100 % (no canary at all).

Promotions change versions outside Pulumi: `mdeploy up` reads this state first
(mdeploy/ops/drift.py) and refuses to race or silently undo one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mdeploy.errors import MdeployError, PolicyError
from mdeploy.ops.checks import (
    CheckResult,
    Clock,
    MetricsSource,
    SmokeCheck,
    SystemClock,
    health_check,
    judge_metrics,
    metrics_unavailable,
)
from mdeploy.ops.state import StateStore, now_iso
from mdeploy.targets.base import (
    EndpointArgs,
    EndpointHealth,
    Ops,
    TrafficOps,
    VersionSpec,
    validate_version_name,
)

__all__ = [
    "PromotionFailed",
    "PromotionPlan",
    "Settings",
    "parse_bake",
    "parse_steps",
    "plan_promotion",
    "promote",
    "rollback",
    "version_name",
]

CONTRACT = "mdeploy/promote-plan/v1"
_SIGNAL_EXIT = 128  # exit codes from here up mean "stopped by a signal", not "failed"
Log = Callable[[str], None]


class PromotionFailed(MdeployError):
    """A step failed and the traffic went back to the live version (exit 1); `report` says how."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message, hint="the report lists each step and check")
        self.report = report


@dataclass(frozen=True)
class Settings:
    """How to promote: the strategy, its steps, the bake and the checks' limits."""

    strategy: str = "canary"  # canary | blue-green
    steps: tuple[int, ...] = (10, 50, 100)
    bake_s: float = 600.0
    max_error_rate: float | None = None
    max_p95_ms: float | None = None

    def percents(self) -> list[int]:
        """The new version's share at each step; blue-green warms at 0 then switches."""
        return [0, 100] if self.strategy == "blue-green" else list(self.steps)


@dataclass(frozen=True)
class PromotionPlan:
    """Everything a promotion will do, known before it touches anything (the dry-run)."""

    stack: str
    target: str
    version: VersionSpec
    model_version: str
    settings: Settings
    region: str | None = None
    hourly_usd: float | None = None
    smoke: dict[str, Any] = field(default_factory=lambda: {"kind": "none"})
    metrics: str | None = None  # the source's description, or None: only smoke checks

    def steps_json(self, live: str | None) -> list[dict[str, Any]]:
        out = []
        for i, pct in enumerate(self.settings.percents(), start=1):
            checks = ["health"] if pct == 0 else ["health", "smoke", "metrics"]
            if self.smoke.get("kind") == "none" and "smoke" in checks:
                checks.remove("smoke")
            if self.metrics is None and "metrics" in checks:
                checks.remove("metrics")
            out.append(
                {
                    "step": i,
                    "to_percent": pct,
                    "from_percent": 100 - pct,
                    "weights": {live or "<live>": 100 - pct, self.version.name: pct},
                    "bake_s": self.settings.bake_s,
                    "checks": checks,
                }
            )
        return out

    def to_json(self, live: str | None = None) -> dict[str, Any]:
        """The dry-run document: the stable contract CI reviews (docs/contracts.md)."""
        v = self.version
        return {
            "contract": CONTRACT,
            "stack": self.stack,
            "target": self.target,
            "region": self.region,
            "strategy": self.settings.strategy,
            "from": {"name": live, "resolved": "at run time: the version holding 100 %"},
            "to": {
                "name": v.name,
                "model_version": self.model_version,
                "image": v.image,
                "model_revision": v.model_revision,
                "replicas": v.replicas,
            },
            "steps": self.steps_json(live),
            "checks": {
                "smoke": dict(self.smoke),
                "metrics": self.metrics or metrics_unavailable(self.target),
                "metrics_available": self.metrics is not None,
                "max_error_rate": self.settings.max_error_rate,
                "max_p95_ms": self.settings.max_p95_ms,
            },
            "on_failure": "all traffic back to the live version; the new version is removed; "
            "exit 1 with the report",
            "on_success": "the live version is removed once the new one holds 100 % and "
            "passed; it is kept in the state as last good for `mdeploy rollback`",
            "hourly_usd": self.hourly_usd,
        }


def version_name(model_version: str, args: EndpointArgs, wanted: str | None = None) -> str:
    """`wanted`, else `v<model.version>-<6 hex of image+revision>`: stable across re-runs.

    The hash tells apart two builds of one model.version (a new image digest or revision),
    so a re-run after a crash names the same version and a new build a new one.
    """
    if wanted:
        return validate_version_name(wanted)
    slug = re.sub(r"[^a-z0-9]+", "-", model_version.lower()).strip("-")[:20] or "x"
    digest = hashlib.sha256(f"{args.image}|{args.model_revision}".encode()).hexdigest()[:6]
    return validate_version_name(f"v{slug}-{digest}")


def parse_steps(text: str) -> tuple[int, ...]:
    """`10,50,100`: increasing whole percentages ending at 100 (the spec's rule)."""
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        steps = ()
    if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        steps = ()
    if not steps or steps[-1] != 100:
        from mdeploy.errors import InputError

        raise InputError(
            f"--steps {text!r}: increasing percentages in 1..100 ending at 100",
            hint="e.g. --steps 10,50,100",
        )
    return steps


_BAKE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)?$")


def parse_bake(text: str) -> float:
    """`90s`, `10m`, `1h`, `0` (plain numbers are seconds) → seconds, at most 24 h."""
    match = _BAKE.match(text.strip())
    if not match:
        from mdeploy.errors import InputError

        raise InputError(f"--bake {text!r}: use e.g. 90s, 10m or 1h")
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]
    if seconds > 86400:
        from mdeploy.errors import InputError

        raise InputError(f"--bake {text!r}: at most 24h")
    return seconds


def plan_promotion(
    stack: str,
    target: str,
    args: EndpointArgs,
    settings: Settings,
    *,
    version: str | None = None,
    hourly_usd: float | None = None,
    smoke: SmokeCheck | None = None,
    metrics: MetricsSource | None = None,
) -> PromotionPlan:
    """The plan for promoting what `args` describes; touches nothing."""
    name = version_name(args.model_version, args, version)
    return PromotionPlan(
        stack=stack,
        target=target,
        version=VersionSpec.from_args(name, args),
        model_version=args.model_version,
        settings=settings,
        region=args.region,
        hourly_usd=hourly_usd,
        smoke=smoke.describe() if smoke is not None else {"kind": "none"},
        metrics=_describe_metrics(metrics),
    )


def _describe_metrics(metrics: MetricsSource | None) -> str | None:
    if metrics is None:
        return None
    return f"{metrics.name} {getattr(metrics, 'url', '')}".strip()


# ---- the run -------------------------------------------------------------------------------


@dataclass
class _Run:
    """One promote run: its collaborators and the report it builds."""

    ops: Any  # Ops and TrafficOps
    plan: PromotionPlan
    store: StateStore
    state: dict[str, Any]
    clock: Clock
    smoke: SmokeCheck | None
    metrics: MetricsSource | None
    log: Log
    report: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        self.store.save(self.state)


def _require_traffic(ops: Any, target: str) -> None:
    if not isinstance(ops, TrafficOps) or not isinstance(ops, Ops):
        raise PolicyError(
            f"{target}: this target cannot run two versions with weighted traffic yet, so it "
            "cannot be promoted step by step",
            hint="deploy the new version with `mdeploy up` (a rolling update), or use a "
            "target with traffic splitting",
        )


def _record(v: VersionSpec | dict[str, Any]) -> dict[str, Any]:
    if isinstance(v, dict):
        return dict(v)
    return {
        "name": v.name,
        "image": v.image,
        "model_revision": v.model_revision,
        "replicas": v.replicas,
    }


def _live(health: EndpointHealth) -> Any:
    from mdeploy.targets.base import base_version

    return base_version(health, None)


def promote(
    ops: Any,
    plan: PromotionPlan,
    store: StateStore,
    *,
    clock: Clock | None = None,
    smoke: SmokeCheck | None = None,
    metrics: MetricsSource | None = None,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Run (or resume) the promotion; the report on success, PromotionFailed on rollback."""
    _require_traffic(ops, plan.target)
    with store.lock(plan.stack, "promote"):
        state = store.load(plan.stack)
        run = _Run(ops, plan, store, state, clock or SystemClock(), smoke, metrics, log)
        return _promote(run)


def _promote(run: _Run) -> dict[str, Any]:
    plan, state = run.plan, run.state
    new = plan.version
    health = run.ops.status()
    promo = state.get("promotion")
    resuming = bool(promo and promo.get("phase") == "shifting" and promo["to"]["name"] == new.name)
    if promo and promo.get("phase") == "shifting" and not resuming:
        raise PolicyError(
            f"stack {plan.stack}: the promotion to {promo['to']['name']} was interrupted at "
            f"step {promo.get('completed', 0)}; refusing to start another over it",
            hint=f"run `mdeploy promote` for {promo['to']['name']} again to finish it, or "
            "`mdeploy rollback` to abandon it",
        )
    if not resuming and health.traffic.get(new.name) == 100:
        return _unchanged(run, health)
    if resuming and (promo["to"].get("image"), promo["to"].get("model_revision")) != (
        new.image,
        new.model_revision,
    ):
        raise PolicyError(
            f"stack {plan.stack}: the interrupted promotion of {new.name} deployed another "
            f"image or revision ({promo['to'].get('image')}, "
            f"{promo['to'].get('model_revision')}); refusing to resume it with this spec",
            hint="`mdeploy rollback` abandons it; then promote again (or pass another --version)",
        )
    if resuming:
        old = promo["from"]
        run.log(f"resuming the promotion to {new.name} after step {promo['completed']}")
    else:
        live = _live(health)
        if live.name == new.name:
            from mdeploy.errors import InputError

            raise InputError(
                f"version {new.name} already takes {live.traffic_percent} % of the traffic "
                "and no promotion of it is recorded",
                hint="move its traffic with the platform's tools, or pass --version NAME",
            )
        old = {
            "name": live.name,
            "image": live.image,
            "model_revision": live.model_revision,
            "replicas": live.replicas or 1,
        }
        promo = {
            "from": old,
            "to": _record(new),
            "strategy": plan.settings.strategy,
            "percents": plan.settings.percents(),
            "completed": 0,
            "phase": "shifting",
            "started_at": now_iso(run.clock.now()),
            "steps": [],
        }
        state["promotion"] = promo
    state.update(target=plan.target, region=plan.region, hourly_usd=plan.hourly_usd)
    if not resuming:
        state["current"] = old
    run.save()
    run.report = _report_head(plan, old["name"], resumed=promo["completed"] if resuming else None)
    try:
        _ensure_deployed(run, health, old["name"])
        for index in range(promo["completed"], len(promo["percents"])):
            step = _step(run, index, promo["percents"][index], old["name"])
            run.report["steps"].append(step)
            if not step["ok"]:
                failed = next(c for c in step["checks"] if not c["ok"])
                return _fail(run, old["name"], f"step {index + 1} ({step['to_percent']} %) "
                             f"failed its {failed['name']} check: {failed['detail']}")  # fmt: skip
            promo["completed"] = index + 1
            promo["steps"].append(step)
            run.save()
    except MdeployError as exc:
        if isinstance(exc, PromotionFailed) or exc.exit_code >= _SIGNAL_EXIT:
            raise  # a signal (SIGTERM: exit 143) stops like Ctrl-C: the next run resumes
        return _fail(run, old["name"], f"the platform refused a step: {exc.message}")
    return _finish(run, old)


def _report_head(plan: PromotionPlan, old: str, *, resumed: int | None) -> dict[str, Any]:
    return {
        "stack": plan.stack,
        "target": plan.target,
        "strategy": plan.settings.strategy,
        "from": old,
        "to": plan.version.name,
        "result": None,
        "resumed_after_step": resumed,
        "steps": [],
        "removed": [],
        "error": None,
        "metrics": plan.metrics or metrics_unavailable(plan.target),
    }


def _unchanged(run: _Run, health: EndpointHealth) -> dict[str, Any]:
    report = _report_head(run.plan, run.plan.version.name, resumed=None)
    report.update(result="unchanged", detail=f"{run.plan.version.name} already holds 100 %")
    report["traffic"] = health.traffic
    return report


def _ensure_deployed(run: _Run, health: EndpointHealth, old: str) -> None:
    new = run.plan.version
    if new.name in health.traffic:
        run.log(f"{new.name} is already on the endpoint")
        return
    run.log(f"deploying {new.name} beside {old} with 0 % of the traffic")
    spec = VersionSpec(
        name=new.name,
        image=new.image,
        model_revision=new.model_revision,
        replicas=new.replicas,
        env=dict(new.env),
        base=old,
    )
    run.ops.deploy_version(spec)


def _step(run: _Run, index: int, pct: int, old: str) -> dict[str, Any]:
    new = run.plan.version.name
    weights = {old: 100 - pct, new: pct}
    run.log(f"step {index + 1}: {new} {pct} %, {old} {100 - pct} %")
    split = _split(run.ops.set_traffic(weights), weights, new)
    if split.get("note"):
        run.log(split["note"])
    mark = run.metrics.mark(new) if run.metrics is not None and pct > 0 else None
    bake = run.plan.settings.bake_s
    if bake > 0:
        run.log(f"baking {bake:g} s")
        run.clock.sleep(bake)
    checks = [health_check(run.ops.status(), new)]
    if pct > 0 and checks[0].ok and run.smoke is not None:
        checks.append(run.smoke(run.ops, version=new, percent=pct))
    if pct > 0 and all(c.ok for c in checks) and run.metrics is not None:
        checks.append(_metrics_check(run, new, mark))
    return {
        "step": index + 1,
        "to_percent": pct,
        "weights": weights,
        **split,
        "bake_s": bake,
        "checks": [c.to_json() for c in checks],
        "ok": all(c.ok for c in checks),
        "finished_at": now_iso(run.clock.now()),
    }


def _split(health: Any, weights: dict[str, int], new: str) -> dict[str, Any]:
    """
    The split the platform achieved, and a note when it is not the one asked for.

    Replica-proportional routing (Kubernetes without an HTTPRoute) is only as fine as the
    replica count: 10 % over 2 replicas is 50 %. A step asked for something strictly between
    0 and 100 % that got 0 % or 100 % is no canary at all, and says so.
    """
    traffic = getattr(health, "traffic", None)
    if not isinstance(traffic, dict) or not traffic:
        return {}
    achieved = {name: int(traffic.get(name, 0)) for name in weights}
    out: dict[str, Any] = {"achieved": achieved}
    asked, got = weights[new], achieved[new]
    if got == asked:
        return out
    how = (getattr(health, "details", None) or {}).get("traffic_model") or "the platform"
    if 0 < asked < 100 and got in (0, 100):
        out["split"] = "degenerate"
        out["note"] = (
            f"asked {asked} % for {new}, {how} gave {got} %: this step is not a canary; raise "
            "serving.replicas (weights are as fine as 100 / replicas) or route with a Gateway "
            "API HTTPRoute"
        )
    else:
        out["split"] = "coarse"
        out["note"] = (
            f"asked {asked} % for {new}, {how} gave {got} % (as close as the replicas allow); "
            "raise serving.replicas for finer steps"
        )
    return out


def _metrics_check(run: _Run, version: str, mark: Any) -> CheckResult:
    assert run.metrics is not None
    try:
        sample = run.metrics.read(version, mark)
    except MdeployError as exc:
        return CheckResult("metrics", False, f"metrics could not be read: {exc.message}")
    s = run.plan.settings
    return judge_metrics(sample, s.max_error_rate, s.max_p95_ms)


def _fail(run: _Run, old: str, why: str) -> dict[str, Any]:
    """All traffic back to `old`, the new version removed, the state recorded; raises."""
    new = run.plan.version.name
    run.log(f"failed: {why}; all traffic back to {old}")
    report, promo = run.report, run.state["promotion"]
    report["error"] = why
    try:
        run.ops.set_traffic({old: 100})
        report["result"] = "rolled-back"
    except MdeployError as exc:
        report["result"] = "rolled-back" if _holds_all(run.ops, old) else "failed"
        if report["result"] == "failed":
            report["error"] = f"{why}; and returning the traffic to {old} failed: {exc.message}"
    if report["result"] == "rolled-back":
        try:
            run.ops.remove_version(new)
            report["removed"].append(new)
        except MdeployError as exc:
            report["remove_error"] = f"{new} stays at 0 %: {exc.message}"
    promo["phase"] = "rolled-back" if report["result"] == "rolled-back" else "failed"
    _history(run, report)
    run.save()
    raise PromotionFailed(f"promotion of {new} {report['result']}: {report['error']}", report)


def _holds_all(ops: Any, old: str) -> bool:
    """Whether `old` already takes all the traffic (a step refused before moving any)."""
    try:
        return ops.status().traffic.get(old) == 100
    except MdeployError:
        return False


def _finish(run: _Run, old: dict[str, Any]) -> dict[str, Any]:
    """The new version holds 100 % and passed: remove the old one, keep it as last good."""
    report, state = run.report, run.state
    new = run.plan.version
    if old["name"] != new.name:
        try:
            run.ops.remove_version(old["name"])
            report["removed"].append(old["name"])
        except MdeployError as exc:
            report["remove_error"] = f"{old['name']} stays at 0 %: {exc.message}"
    state["last_good"] = old
    state["current"] = _record(new)
    state["promotion"]["phase"] = "done"
    report["result"] = "promoted"
    _history(run, report)
    run.save()
    return report


def _history(run: _Run, report: dict[str, Any]) -> None:
    run.state.setdefault("history", []).append(
        {
            "operation": "promote",
            "from": report["from"],
            "to": report["to"],
            "result": report["result"],
            "error": report["error"],
            "finished_at": now_iso(run.clock.now()),
        }
    )


# ---- rollback ------------------------------------------------------------------------------


def rollback(
    ops: Any,
    stack: str,
    target: str,
    store: StateStore,
    *,
    clock: Clock | None = None,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Restore the last good version (redeploying it when it was removed); idempotent."""
    _require_traffic(ops, target)
    clock = clock or SystemClock()
    with store.lock(stack, "rollback"):
        state = store.load(stack)
        promo = state.get("promotion") or {}
        if promo.get("phase") == "shifting":
            good, bad = promo["from"], promo["to"]["name"]
        else:
            good = state.get("last_good")
            bad = (state.get("current") or {}).get("name")
        if not good:
            from mdeploy.errors import InputError

            raise InputError(
                f"stack {stack}: no promotion is recorded, so there is no last good version",
                hint=f"the state lives in {store.path(stack)}",
            )
        report = _restore(ops, good, bad, log)
        report.update(stack=stack, target=target)
        if report["result"] != "unchanged" or promo.get("phase") == "shifting":
            if promo:
                promo["phase"] = "rolled-back"
            state["current"] = good
            state["last_good"] = good
            state.setdefault("history", []).append(
                {
                    "operation": "rollback",
                    "from": bad,
                    "to": good["name"],
                    "result": report["result"],
                    "error": None,
                    "finished_at": now_iso(clock.now()),
                }
            )
            store.save(state)
        return report


def _restore(ops: Any, good: dict[str, Any], bad: str | None, log: Log) -> dict[str, Any]:
    health = ops.status()
    bad = None if bad == good["name"] else bad
    report: dict[str, Any] = {"to": good["name"], "from": bad, "removed": [], "result": None}
    if health.traffic.get(good["name"]) == 100 and (bad is None or bad not in health.traffic):
        report["result"] = "unchanged"
        return report
    if good["name"] not in health.traffic:
        log(f"redeploying {good['name']} (it was removed after the promotion)")
        if not good.get("model_revision"):
            report["warning"] = (
                f"{good['name']} was recorded without a model revision: the platform copies "
                "the current version's settings, so check the revision it serves"
            )
        busiest = _live(health).name if health.versions else None
        ops.deploy_version(
            VersionSpec(
                name=good["name"],
                image=good["image"],
                model_revision=good.get("model_revision"),
                replicas=int(good.get("replicas") or 1),
                base=busiest,
            )
        )
    log(f"all traffic to {good['name']}")
    ops.set_traffic({good["name"]: 100})
    if bad and bad != good["name"] and bad in health.traffic:
        try:
            ops.remove_version(bad)
            report["removed"].append(bad)
        except MdeployError as exc:
            report["remove_error"] = f"{bad} stays at 0 %: {exc.message}"
    report["result"] = "rolled-back"
    return report
