"""
`mdeploy plan` and `mdeploy compare`: where the spec should run, what it costs, and why.

Both are offline. The JSON of `plan --json` is a public contract (DESIGN.md); when nothing
fits it is still printed on stdout before exit 4, because CI reads it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mdeploy.cli._common import (
    EnvOption,
    JsonOption,
    PrettyOption,
    SpecArg,
    TargetOption,
    cli_errors,
    console,
    print_json,
)
from mdeploy.errors import EXIT_POLICY

if TYPE_CHECKING:
    from mdeploy.plan.compare import CompareRow
    from mdeploy.plan.models import Candidate, ModelSizing, Plan
    from mdeploy.spec import LoadedSpec

__all__ = ["register"]


def _load_and_plan(spec_path: Path, env: str | None, target: str | None) -> tuple[LoadedSpec, Plan]:
    from mdeploy.plan import make_plan
    from mdeploy.spec import check_guardrails, load_spec
    from mdeploy.targets import blocked_targets

    loaded = load_spec(spec_path, env)
    if loaded.strict:
        check_guardrails(loaded)
    targets = [target] if target else None
    blocked = blocked_targets(loaded.spec)
    result = make_plan(loaded.spec, targets=targets, base_dir=loaded.base_dir, blocked=blocked)
    if loaded.strict:
        _check_licence(loaded, result)
    return loaded, result


def _check_licence(loaded: LoadedSpec, result: Plan) -> None:
    """Prod refuses a non-commercial or conditional licence until the spec accepts it."""
    from mdeploy.errors import PolicyError
    from mdeploy.plan.fit import licence_problem

    sizing = result.model.sizing
    problem = licence_problem(sizing.license if sizing else None, loaded.spec.model)
    if problem:
        raise PolicyError(
            problem, hint="read the licence, then record its name in model.license_accepted"
        )


def _licence_line(m: ModelSizing) -> str:
    lic = m.sizing.license if m.sizing else None
    if lic is None:
        return "licence [dim]unknown (not in the catalog)[/]"
    colour = "green" if lic.commercial == "yes" else "yellow"
    condition = f" · {escape(lic.condition)}" if lic.condition else ""
    use = f"commercial [{colour}]{lic.commercial}[/]"
    return f"licence [bold]{escape(lic.name)}[/] · {use}{condition}"


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _table(*columns: str) -> Table:
    """A borderless table whose money columns align right and long names wrap, never cut."""
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in columns:
        money = col.startswith("$")
        table.add_column(col, justify="right" if money else "left", overflow="fold",
                         no_wrap=money)  # fmt: skip
    return table


def _candidate_table(candidates: list[Candidate]) -> Table:
    table = _table("target", "region", "instance", "GPUs", "$/h", "$/month", "where")
    for c in candidates:
        price = _money(c.hourly_usd) + ("*" if c.estimate else "")
        table.add_row(
            c.target, c.region, c.instance_type, f"{c.gpu}×{c.gpu_count}", price,
            f"${c.monthly_usd:,.0f}", f"{c.country}/{c.jurisdiction}",
        )  # fmt: skip
    return table


def _best_per_target(plan: Plan) -> list[Candidate]:
    seen: dict[str, Candidate] = {}
    for c in plan.candidates:
        seen.setdefault(c.target, c)
    return sorted(seen.values(), key=lambda c: c.hourly_usd)


def _render_plan(loaded: LoadedSpec, plan: Plan) -> None:
    spec, m = loaded.spec, plan.model
    env = f" · env [bold]{loaded.env}[/]" if loaded.env else ""
    if loaded.strict:
        env += " · [green]prod guardrails pass[/]"
    console.print(f"[bold]{spec.metadata.name}[/]{env} · {escape(m.id)} ({m.params_b:g} B params)")
    console.print(_licence_line(m))
    s = m.sizing
    if s is not None and s.sliding_layers and s.sliding_window:
        window = min(s.sliding_window, spec.model.max_context)
        tokens = (
            f"{s.kv_bytes_per_token_layer:,} B/token/layer × ({s.full_layers} full layers × "
            f"{spec.model.max_context:,} + {s.sliding_layers} sliding × {window:,} tokens)"
        )
    else:
        tokens = f"{m.kv_bytes_per_token:,} B/token × {spec.model.max_context:,} tokens"
    console.print(
        f"weights [bold]{m.weights_gib:.1f} GiB[/] · KV cache [bold]{m.kv_cache_gib:.1f} GiB[/] "
        f"({tokens} × {spec.serving.max_concurrency} sequences)"
    )
    c = plan.chosen
    if c is None:
        console.print("[bold red]No offer fits.[/] Rejections by reason:")
    else:
        console.print(
            f"[bold green]chosen[/] {c.target} {c.region} [bold]{c.instance_type}[/] "
            f"{c.gpu}×{c.gpu_count} tp={c.tensor_parallel} · {c.required_gib_per_gpu:.1f} of "
            f"{c.gpu_memory_gib:g} GiB per GPU · [bold]{_money(c.hourly_usd)}/h[/] "
            f"(${c.monthly_usd:,.0f}/month for {spec.serving.replicas.min} replica(s))"
            + (" [yellow]estimated price[/]" if c.estimate else "")
        )
        console.print(
            f"per GPU: weights {c.weights_gib_per_gpu:.2f} + KV {c.kv_gib_per_gpu:.2f} + reserve "
            f"{c.reserve_gib_per_gpu:.2f} = {c.required_gib_per_gpu:.2f} GiB ≤ "
            f"{spec.serving.gpu_memory_utilization:g} × {c.gpu_memory_gib:g} = "
            f"{spec.serving.gpu_memory_utilization * c.gpu_memory_gib:.2f} GiB"
        )
        console.print(f"[dim]engine: vllm {escape(' '.join(c.engine_args))}[/]")
        console.print("[bold]best per target[/]")
        console.print(_candidate_table(_best_per_target(plan)))
    counts = Counter(r.code for r in plan.rejected)
    summary = ", ".join(f"{code} {n}" for code, n in counts.most_common())
    console.print(
        f"{len(plan.candidates)} candidates, {len(plan.rejected)} offers rejected"
        + (f" ({summary})" if summary else "")
        + ". [dim]* = estimated price; --json lists every offer and reason[/]"
    )
    if c is None:
        for code, _ in counts.most_common(3):
            example = next(r for r in plan.rejected if r.code == code)
            console.print(
                f"  [bold]{code}[/]: e.g. {example.target} {example.region} "
                f"{example.instance_type}: {escape(example.reason)}"
            )


def plan(
    spec: SpecArg,
    env: EnvOption = None,
    target: TargetOption = None,
    as_json: JsonOption = False,
    pretty: PrettyOption = False,
) -> None:
    """Size the model and pick the cheapest placement that fits, explaining every rejection."""
    with cli_errors():
        loaded, result = _load_and_plan(spec, env, target)
    if as_json:
        print_json(result.to_json(), pretty=pretty)
    else:
        _render_plan(loaded, result)
    if result.chosen is None:
        raise typer.Exit(EXIT_POLICY)


def _render_compare(rows: list[CompareRow]) -> None:
    from mdeploy.plan.compare import to_text

    # Plain text, not a Rich table: thousands of regions lay out in milliseconds (issue 15).
    typer.echo(to_text(rows, max(console.width, 80)), nl=False)
    fits = sum(1 for r in rows if r.best)
    console.print(f"{fits} of {len(rows)} regions fit. [dim]* = estimated price[/]")


def compare(
    spec: SpecArg,
    env: EnvOption = None,
    target: TargetOption = None,
    as_json: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="A Markdown table.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV with a header row.")] = False,
    pretty: PrettyOption = False,
) -> None:
    """Cheapest fitting offer per cloud × region inside the residency, or why none fits."""
    from mdeploy.plan.compare import make_comparison, to_csv, to_markdown
    from mdeploy.targets import blocked_targets

    with cli_errors():
        from mdeploy.spec import load_spec

        loaded = load_spec(spec, env)
        targets = [target] if target else None
        result, rows = make_comparison(
            loaded.spec,
            targets=targets,
            base_dir=loaded.base_dir,
            blocked=blocked_targets(loaded.spec),
        )
    if as_json:
        print_json(
            {"model": result.model.to_json(), "regions": [r.to_json() for r in rows]},
            pretty=pretty,
        )
    elif markdown:
        typer.echo(to_markdown(rows), nl=False)
    elif as_csv:
        typer.echo(to_csv(rows), nl=False)
    else:
        _render_compare(rows)
    if not any(r.best for r in rows):
        raise typer.Exit(EXIT_POLICY)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("compare")(compare)
