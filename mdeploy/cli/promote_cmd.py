"""
`mdeploy promote | rollback | ls`: model versions moved safely, and every stack listed.

Thin wrappers over mdeploy.ops. The live day-2 client comes from the stack's outputs
(mdeploy.deploy.stack, imported inside the commands); `promote --dry-run` is offline: it
plans the spec, reads the local promotion state and prints the steps (the contract CI
reviews, docs/contracts.md). Exit codes: 0 promoted / unchanged, 1 a step failed and the
traffic went back (the report says which), 2 bad input, 3 missing prerequisite, 4 refused
(another promotion holds the stack's lock, the target cannot split traffic, prod guardrails).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from mdeploy.cli._common import (
    EnvOption,
    JsonOption,
    SpecArg,
    YesOption,
    check_target,
    cli_errors,
    console,
    err_console,
    print_json,
    report_error,
)
from mdeploy.target_names import placement_names

if TYPE_CHECKING:
    from mdeploy.deploy.program import Resolved
    from mdeploy.ops.checks import MetricsSource, SmokeCheck
    from mdeploy.ops.promote import Settings
    from mdeploy.ops.state import StateStore
    from mdeploy.spec import LoadedSpec
    from mdeploy.spec.models import Rollout

__all__ = ["register"]

DEFAULT_SMOKE_PROMPT = "Reply with one word: ready."
_STOPPED = "the promotion stopped; its state records the last completed step"
_RESUME_HINT = "run `mdeploy promote` again to resume, or `mdeploy rollback` to abandon it"
METRICS_TOKEN_ENV = "MDEPLOY_METRICS_TOKEN"  # bearer token for --metrics-url; never printed

RequiredTarget = Annotated[
    str,
    typer.Option(
        "--target",
        "-t",
        help=f"Where: {', '.join(placement_names())}.",
        show_default=False,
    ),
]


def _store() -> StateStore:
    from mdeploy.deploy.prereqs import mdeploy_home
    from mdeploy.ops.state import StateStore

    return StateStore(mdeploy_home() / "promotions")


def _interactive() -> bool:
    from mdeploy.cli.deploy_cmd import _interactive as interactive

    return interactive()


def live_ops(loaded: LoadedSpec, target: str, resolved: Resolved | None = None) -> tuple[str, Any]:
    """(stack name, the target's day-2 client) from the deployed stack's outputs.

    Reads the outputs unmasked (a Kubernetes API key is one); they stay in memory.
    `resolved` (the command's own `resolve`) is passed through, so the planner runs once.
    Tests replace this function.
    """
    from mdeploy.deploy.stack import live_ops as stack_ops
    from mdeploy.deploy.stack import prepare

    op = prepare(loaded, target, deploying=True, resolved=resolved)
    return op.stack, stack_ops(op)


def _settings(
    rollout: Rollout,
    steps: str | None,
    bake: str | None,
    max_error_rate: float | None,
    max_p95_ms: float | None,
) -> Settings:
    from mdeploy.errors import InputError
    from mdeploy.ops.promote import Settings, parse_bake, parse_steps

    if steps is not None and rollout.strategy == "blue-green":
        raise InputError(
            "--steps: the spec's rollout.strategy is blue-green (0 → 100 after the bake)",
            hint="set rollout.strategy: canary in the spec to promote in steps",
        )
    if max_error_rate is not None and not 0 <= max_error_rate <= 1:
        raise InputError(f"--max-error-rate {max_error_rate}: a fraction 0..1, e.g. 0.01")
    if max_p95_ms is not None and max_p95_ms <= 0:
        raise InputError(f"--max-p95-ms {max_p95_ms}: a positive number of milliseconds")
    return Settings(
        strategy=rollout.strategy,
        steps=parse_steps(steps) if steps is not None else tuple(rollout.steps),
        bake_s=parse_bake(bake) if bake is not None else rollout.bake_minutes * 60.0,
        max_error_rate=max_error_rate,
        max_p95_ms=max_p95_ms,
    )


def _smoke(model: str, prompt: str | None, command: str | None) -> SmokeCheck:
    from mdeploy.errors import InputError
    from mdeploy.ops.checks import CommandSmoke, PromptSmoke

    if prompt is not None and command is not None:
        raise InputError("pass --smoke-prompt or --smoke, not both")
    if command is not None:
        return CommandSmoke(command)
    return PromptSmoke(model, prompt or DEFAULT_SMOKE_PROMPT)


def _platform_metrics(target: str, ops: Any = None) -> MetricsSource | None:
    """The target's own metrics (its `mdeploy.targets.<name>.metrics` module), if it has one."""
    import importlib
    import importlib.util

    from mdeploy.ops.checks import PlatformMetrics

    name = f"mdeploy.targets.{target}.metrics"
    if importlib.util.find_spec(name) is None:
        return None
    return PlatformMetrics(importlib.import_module(name), ops)


def _metrics(url: str | None) -> MetricsSource | None:
    if url is None:
        return None
    from mdeploy.errors import InputError
    from mdeploy.ops.checks import PrometheusMetrics

    if not url.startswith(("http://", "https://")):
        raise InputError(f"--metrics-url {url!r}: an http(s) URL of the adapter's /metrics")
    token = os.environ.get(METRICS_TOKEN_ENV, "").strip()  # the adapter's API key, if guarded
    return PrometheusMetrics(url, headers={"Authorization": f"Bearer {token}"} if token else None)


def _confirm(question: str, yes: bool) -> None:
    from mdeploy.errors import InputError

    if yes:
        return
    if not _interactive():
        raise InputError(
            "refusing to change live traffic without confirmation in a non-interactive run",
            hint="pass --yes to confirm",
        )
    if not typer.confirm(question, default=False):
        raise InputError("cancelled; nothing was changed", hint="pass --yes to skip the question")


def _log(text: str) -> None:
    err_console.print(f"[dim]·[/] {escape(text)}", soft_wrap=True)


def promote_cmd(
    spec: SpecArg,
    target: RequiredTarget,
    env: EnvOption = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="Name of the new version (3-32 lowercase letters, digits, dashes). Default: "
            "v<model.version>-<hash of image and revision>.",
        ),
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option("--steps", help="Canary steps, e.g. 10,50,100 (default: rollout.steps)."),
    ] = None,
    bake: Annotated[
        str | None,
        typer.Option(
            "--bake", help="Time per step, e.g. 90s, 10m (default: rollout.bake_minutes)."
        ),
    ] = None,
    smoke_prompt: Annotated[
        str | None,
        typer.Option("--smoke-prompt", help="Chat message sent through the endpoint per step."),
    ] = None,
    smoke: Annotated[
        str | None,
        typer.Option(
            "--smoke",
            help="Shell command run per step instead (exit 0 passes); it gets "
            "MDEPLOY_PROMOTE_VERSION and MDEPLOY_PROMOTE_PERCENT.",
        ),
    ] = None,
    max_error_rate: Annotated[
        float | None, typer.Option("--max-error-rate", help="Fail a step above this (0..1).")
    ] = None,
    max_p95_ms: Annotated[
        float | None, typer.Option("--max-p95-ms", help="Fail a step above this p95 latency.")
    ] = None,
    metrics_url: Annotated[
        str | None,
        typer.Option(
            "--metrics-url",
            help="The new version's adapter /metrics (Prometheus text); a bearer token from "
            "$MDEPLOY_METRICS_TOKEN. Without it: the platform's own metrics where mdeploy "
            "reads them (SageMaker: CloudWatch; Azure ML: Azure Monitor), else only smoke checks.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the steps; touch nothing (offline).")
    ] = False,
    json_out: JsonOption = False,
    yes: YesOption = False,
) -> None:
    """Deploy the spec's model version beside the live one and shift traffic step by step."""
    with cli_errors(json_out=json_out):
        from mdeploy.deploy.program import resolve, stack_name
        from mdeploy.image._signals import on_sigterm
        from mdeploy.ops.promote import PromotionFailed, plan_promotion, promote
        from mdeploy.spec import check_guardrails, load_spec

        check_target(target)
        loaded = load_spec(spec, env)
        if loaded.strict:
            check_guardrails(loaded)
        resolved = resolve(loaded, target)
        settings = _settings(loaded.spec.rollout, steps, bake, max_error_rate, max_p95_ms)
        smoke_check = _smoke(resolved.args.served_model_name, smoke_prompt, smoke)
        metrics = _metrics(metrics_url) or _platform_metrics(resolved.target)
        store = _store()

        def plan_for(stack: str) -> Any:
            return plan_promotion(
                stack, resolved.target, resolved.args, settings, version=version,
                hourly_usd=resolved.candidate.hourly_usd, smoke=smoke_check, metrics=metrics,
            )  # fmt: skip

        if dry_run:
            stack = stack_name(loaded.spec.metadata.name, loaded.env, resolved.target)
            current = store.load(stack).get("current") or {}
            doc = {"dry_run": True, **plan_for(stack).to_json(live=current.get("name"))}
            if json_out:
                print_json(doc)
            else:
                _render_plan(doc)
            return
        stack, ops = live_ops(loaded, target, resolved)
        if metrics_url is None:
            metrics = _platform_metrics(resolved.target, ops)
        plan = plan_for(stack)
        _confirm(f"promote {plan.version.name} on {stack} (live traffic moves)?", yes)
        try:
            with on_sigterm(lambda: _STOPPED, hint=_RESUME_HINT):
                report = promote(ops, plan, store, smoke=smoke_check, metrics=metrics, log=_log)
        except PromotionFailed as exc:
            _render_report(exc.report, json_out)
            raise typer.Exit(report_error(exc, json_out=False)) from None  # one JSON document
        _render_report(report, json_out)


def rollback_cmd(
    spec: SpecArg,
    target: RequiredTarget,
    env: EnvOption = None,
    json_out: JsonOption = False,
    yes: YesOption = False,
) -> None:
    """Restore the last good version (redeployed if it was removed); a no-op when it is live."""
    with cli_errors(json_out=json_out):
        from mdeploy.ops.promote import rollback
        from mdeploy.spec import load_spec

        check_target(target)
        loaded = load_spec(spec, env)
        stack, ops = live_ops(loaded, target)
        _confirm(f"roll {stack} back to its last good version (live traffic moves)?", yes)
        report = rollback(ops, stack, target, _store(), log=_log)
        _render_report(report, json_out)


def ls_cmd(json_out: JsonOption = False) -> None:
    """Every stack mdeploy owns here: target, region, versions, state, hourly cost."""
    with cli_errors(json_out=json_out):
        from mdeploy.deploy.prereqs import mdeploy_home
        from mdeploy.ops.inventory import list_stacks

        home = mdeploy_home()
        rows = list_stacks(home)
        if json_out:
            print_json({"home": str(home), "stacks": rows})
            return
        if not rows:
            console.print(f"no stacks under {escape(str(home))}")
            return
        for row in rows:
            versions = ", ".join(f"{v['name']} ({v['role']})" for v in row["versions"]) or "-"
            cost = f"${row['hourly_usd']:.2f}/h" if row["hourly_usd"] is not None else "cost ?"
            promo = f" · promotion {row['promotion']}" if row["promotion"] else ""
            console.print(
                f"[bold]{escape(row['stack'])}[/] · {row['target'] or '?'} · "
                f"{row['region'] or '?'} · {escape(row['state'])}{escape(promo)} · {cost} · "
                f"versions {escape(versions)}",
                soft_wrap=True,
            )


def _render_plan(doc: dict[str, Any]) -> None:
    to = doc["to"]
    console.print(
        f"[bold]promote[/] {escape(to['name'])} on {escape(doc['stack'])} "
        f"({doc['strategy']}) · from {escape(doc['from']['name'] or 'the live version')}"
    )
    console.print(f"  image    {escape(to['image'])}", soft_wrap=True)
    console.print(f"  revision {escape(str(to['model_revision']))}")
    for step in doc["steps"]:
        console.print(
            f"  step {step['step']}: {step['to_percent']:>3} % new · bake {step['bake_s']:g} s · "
            f"checks {', '.join(step['checks'])}"
        )
    console.print(f"  metrics  {escape(str(doc['checks']['metrics']))}", soft_wrap=True)


def _render_report(report: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(report)
        return
    result = report.get("result")
    colour = "green" if result in ("promoted", "unchanged") else "red"
    console.print(
        f"[bold {colour}]{result}[/] · {escape(str(report.get('stack')))} · "
        f"{escape(str(report.get('from')))} → {escape(str(report.get('to')))}"
    )
    for step in report.get("steps", []):
        marks = ", ".join(f"{c['name']} {'ok' if c['ok'] else 'FAILED'}" for c in step["checks"])
        console.print(f"  step {step['step']}: {step['to_percent']:>3} % · {marks}")
        if step.get("note"):
            console.print(f"    [yellow]{step['split']}[/] {escape(step['note'])}", soft_wrap=True)
        for check in step["checks"]:
            if not check["ok"]:
                console.print(f"    {escape(check['detail'])}", soft_wrap=True)
    for name in report.get("removed", []):
        console.print(f"  removed {escape(name)}")
    if report.get("remove_error"):
        console.print(f"  [yellow]warning[/] {escape(report['remove_error'])}", soft_wrap=True)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add promote, rollback and ls to the root app."""
    app.command("promote")(promote_cmd)
    app.command("rollback")(rollback_cmd)
    app.command("ls")(ls_cmd)
