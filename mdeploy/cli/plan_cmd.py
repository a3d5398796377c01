"""
`mdeploy plan` and `mdeploy compare`: where the spec should run, what it costs, and why.

Both are offline. The JSON of `plan --json` is a public contract (docs/contracts.md); when nothing
fits it is still printed on stdout before exit 4, because CI reads it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mdeploy.cli._common import (
    EnvOption,
    JsonOption,
    PrettyOption,
    SpecArg,
    TargetOption,
    check_target,
    cli_errors,
    console,
    err_console,
    params_text,
    print_json,
)
from mdeploy.errors import EXIT_POLICY

if TYPE_CHECKING:
    from mdeploy.plan.compare import CompareRow
    from mdeploy.plan.models import Candidate, ModelSizing, Plan
    from mdeploy.spec import LoadedSpec

__all__ = ["register"]


def _load_and_plan(spec_path: Path, env: str | None, target: str | None) -> tuple[LoadedSpec, Plan]:
    """Bad input (exit 2, located) before policy (exit 4) before planning."""
    from mdeploy.cli.spec_cmd import offline_checks
    from mdeploy.plan import make_plan
    from mdeploy.spec import check_guardrails, load_spec
    from mdeploy.targets import blocked_targets

    check_target(target)
    loaded = load_spec(spec_path, env)
    offline_checks(loaded)
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


# Columns that give way at narrow widths (cut with an ellipsis, never folded mid-name);
# every other column keeps its full width: a price or a target cut short misleads.
_FLEXIBLE = ("region", "instance")
_GAP = 2  # blank columns between two table columns (padding 1 on each side)
_MIN_FLEX = 8  # below this a cut name says nothing: stack the rows instead


def _table(columns: list[str], rows: list[list[str]]) -> Table | Group:
    """
    A borderless table, one line per row, that fits the terminal without splitting a name.

    Fixed columns keep their full width; a long region or instance type is cut with an
    ellipsis (a folded `Standard_NC24ads_A100_v4` reads as two names); when even that does
    not fit, each row becomes one `label value` line. `--json` has every value whole. Cells
    are `Text`, so a `[` in a pool name or region is shown, not parsed as markup.
    """
    natural = [max([len(col), *(len(row[i]) for row in rows)]) for i, col in enumerate(columns)]
    widths = _fit(columns, natural, console.width)
    if widths is None:
        return _stacked(columns, rows)
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col, width in zip(columns, widths, strict=True):
        justify = "right" if col.startswith("$") else "left"
        table.add_column(col, justify=justify, overflow="ellipsis", no_wrap=True, width=width)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _fit(columns: list[str], natural: list[int], total: int) -> list[int] | None:
    """Column widths within `total`, shrinking only the flexible ones; None if impossible."""
    flexible = [i for i, col in enumerate(columns) if col in _FLEXIBLE]
    fixed = sum(w for i, w in enumerate(natural) if i not in flexible)
    room = total - fixed - _GAP * (len(columns) - 1)
    wanted = sum(natural[i] for i in flexible)
    if wanted <= room:
        return natural
    if room < _MIN_FLEX * len(flexible):
        return None
    widths = list(natural)
    cap = max(natural[i] for i in flexible)
    while sum(min(natural[i], cap) for i in flexible) > room:
        cap -= 1  # cut the widest first: a short region stays whole, a long name gives way
    for i in flexible:
        widths[i] = min(natural[i], cap)
    return widths


def _stacked(columns: list[str], rows: list[list[str]]) -> Group:
    """One wrapped line per row (`target aws · region eu-west-3 · ...`) for narrow terminals."""
    lines = []
    for row in rows:
        line = Text()
        for i, (col, cell) in enumerate(zip(columns, row, strict=True)):
            line.append(" · " if i else "")
            line.append(col + " ", style="dim")
            line.append(cell)
        lines.append(line)
    return Group(*lines)


def _candidate_table(candidates: list[Candidate]) -> Table | Group:
    rows = [
        [c.target, c.region, c.instance_type, _gpus(c),
         _price(c) + ("*" if c.estimate else ""),
         f"${c.monthly_usd:,.0f}" if c.priced else "no price",
         f"{c.country}/{c.jurisdiction}"]
        for c in candidates
    ]  # fmt: skip
    columns = ["target", "region", "instance", "GPUs", "$/h", "$/month", "where"]
    return _table(columns, rows)


def _gpus(c: Candidate) -> str:
    """`L40S×1`; the topology (`L40S×2 of 8, TP2`, `2 × 8×H100, TP8·PP2`) for part of a
    node or several nodes."""
    plain = c.nodes == 1 and c.gpu_count == (c.node_gpu_count or c.gpu_count)
    return f"{c.gpu}×{c.gpu_count}" if plain or not c.topology else c.topology


def _price(c: Candidate) -> str:
    return _money(c.hourly_usd) if c.priced else "no price"


def _best_per_target(plan: Plan) -> list[Candidate]:
    seen: dict[str, Candidate] = {}
    for c in plan.candidates:
        seen.setdefault(c.target, c)
    return sorted(seen.values(), key=lambda c: c.hourly_usd)


def _render_topology(c: Candidate) -> None:
    """The replica topology, its notes, and the engine flags (leader and workers if several)."""
    if c.topology:
        console.print(f"topology: [bold]{escape(c.topology)}[/]")
    for note in c.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if c.worker_engine_args:
        console.print(f"[dim]engine (leader): vllm {escape(' '.join(c.engine_args))}[/]")
        console.print(f"[dim]engine (workers): vllm {escape(' '.join(c.worker_engine_args))}[/]")
    else:
        console.print(f"[dim]engine: vllm {escape(' '.join(c.engine_args))}[/]")


def _render_plan(loaded: LoadedSpec, plan: Plan) -> None:
    spec, m = loaded.spec, plan.model
    env = f" · env [bold]{escape(loaded.env)}[/]" if loaded.env else ""
    if loaded.strict:
        env += " · [green]prod guardrails pass[/]"
    console.print(
        f"[bold]{spec.metadata.name}[/]{env} · {escape(m.id)} ({params_text(m.params_b)} B params)"
    )
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
            f"[bold green]chosen[/] {c.target} {escape(c.region)} "
            f"[bold]{escape(c.instance_type)}[/] {escape(c.gpu)}×{c.gpu_count} "
            f"tp={c.tensor_parallel} · {c.required_gib_per_gpu:.1f} of "
            f"{c.gpu_memory_gib:g} GiB per GPU · [bold]{_price(c)}/h[/] "
            f"(${c.monthly_usd:,.0f}/month for {spec.serving.replicas.min} replica(s))"
            + (" [yellow]estimated price[/]" if c.estimate else "")
        )
        console.print(
            f"per GPU: weights {c.weights_gib_per_gpu:.2f} + KV {c.kv_gib_per_gpu:.2f} + reserve "
            f"{c.reserve_gib_per_gpu:.2f} = {c.required_gib_per_gpu:.2f} GiB ≤ "
            f"{spec.serving.gpu_memory_utilization:g} × {c.gpu_memory_gib:g} = "
            f"{spec.serving.gpu_memory_utilization * c.gpu_memory_gib:.2f} GiB"
        )
        _render_topology(c)
        _render_placement_note(c)
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
                f"  [bold]{code}[/]: e.g. {example.target} {escape(example.region)} "
                f"{escape(example.instance_type)}: {escape(example.reason)}"
            )


CheckQuotasOption = Annotated[
    bool,
    typer.Option(
        "--check-quotas",
        help="Ask each cloud's quota service (needs credentials) and demote offers over quota.",
    ),
]


def plan(
    spec: SpecArg,
    env: EnvOption = None,
    target: TargetOption = None,
    as_json: JsonOption = False,
    pretty: PrettyOption = False,
    check_quotas: CheckQuotasOption = False,
) -> None:
    """Size the model and pick the cheapest placement that fits, explaining every rejection."""
    with cli_errors(json_out=as_json):
        loaded, result = _load_and_plan(spec, env, target)
        if check_quotas:
            from mdeploy.deploy.quotas import demote_over_quota

            result = demote_over_quota(loaded, result, warn=_warn)
        if as_json:
            print_json(result.to_json(), pretty=pretty)
        else:
            _render_plan(loaded, result)
    if result.chosen is None:
        raise typer.Exit(EXIT_POLICY)


def _render_placement_note(c: Candidate) -> None:
    """A target that cannot verify the place offline says when it will (e.g. at up)."""
    from mdeploy.targets import get_target

    note = getattr(get_target(c.target), "placement_note", None)
    text = note(c.region) if note else None
    if text:
        console.print(f"[dim]{escape(text)}[/]")


def _warn(text: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)


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

    with cli_errors(json_out=as_json):
        from mdeploy.cli.spec_cmd import offline_checks
        from mdeploy.spec import load_spec

        check_target(target)
        loaded = load_spec(spec, env)
        offline_checks(loaded)
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
