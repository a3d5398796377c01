"""
`mdeploy catalog offers|gpus|regions|models|refresh`: look at the offline catalog, or
refresh its prices into a directory MDEPLOY_CATALOG_DIR can point at.

Thin commands: parse flags, call one `mdeploy.catalog` function, render a Rich table or the
`--json` contract. The catalog is imported inside each command so `mdeploy --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from mdeploy.cli._common import JsonOption, PrettyOption, cli_errors, console, print_json
from mdeploy.target_names import placement_names

if TYPE_CHECKING:
    from rich.table import Table

    from mdeploy.catalog import Offer

catalog_app = typer.Typer(
    name="catalog",
    help="GPU offers, regions and model architectures [bold]offline[/]; refresh prices online.",
    rich_markup_mode="rich",
    no_args_is_help=True,
)

TargetsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--target", "-t", help=f"Only these targets (repeatable): {', '.join(placement_names())}."
    ),
]
GpuOption = Annotated[
    list[str] | None,
    typer.Option("--gpu", "-g", help="Only these GPUs (repeatable), e.g. L4, H100."),
]
RegionOption = Annotated[
    list[str] | None, typer.Option("--region", "-r", help="Only these regions (repeatable).")
]
JurisdictionOption = Annotated[
    list[str] | None,
    typer.Option("--jurisdiction", help="Only these jurisdictions: EU, EEA, UK, CH, US, other."),
]
CountryOption = Annotated[
    list[str] | None, typer.Option("--country", help="Only these ISO countries, e.g. FR, DE.")
]
AllOption = Annotated[
    bool, typer.Option("--all", help="Include flagged offers (source price looks wrong).")
]


def _price(value: float | None) -> str:
    return "?" if value is None else f"{value:,.2f}"


def _table(title: str) -> Table:
    """A left-titled Rich table; imported here so `mdeploy --help` does not pay for it."""
    from rich.table import Table

    return Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)


def _offers_table(offers: list[Offer], *, show_flags: bool) -> Table:
    table = _table(f"{len(offers)} offers")
    for name, justify in (
        ("target", "left"),
        ("region", "left"),
        ("instance type", "left"),
        ("GPU", "left"),
        ("n", "right"),
        ("GiB/GPU", "right"),
        ("$/h", "right"),
        ("where", "left"),
        ("est.", "center"),
    ):
        fold = name in ("region", "instance type")
        table.add_column(name, justify=justify, overflow="fold" if fold else "ellipsis")  # type: ignore[arg-type]
    if show_flags:
        table.add_column("flagged", style="yellow")
    for o in offers:
        row = [
            o.target,
            o.region,
            o.instance_type,
            o.gpu,
            str(o.gpu_count),
            f"{o.gpu_memory_gib:g}",
            _price(o.hourly_usd),
            f"{o.country} ({o.jurisdiction})",
            "~" if o.estimate else "",
        ]
        cells = [*row, *([o.flagged or ""] if show_flags else [])]
        table.add_row(*(escape(c) for c in cells))  # a catalog dir may be the user's
    return table


@catalog_app.command("offers")
def offers_cmd(
    *,
    target: TargetsOption = None,
    gpu: GpuOption = None,
    region: RegionOption = None,
    jurisdiction: JurisdictionOption = None,
    country: CountryOption = None,
    all_: AllOption = False,
    json_: JsonOption = False,
    pretty: PrettyOption = False,
) -> None:
    """GPU offers the planner may rank, by target then price ([dim]~ = estimate[/])."""
    with cli_errors(json_out=json_):
        from mdeploy.catalog import find_offers

        offers = find_offers(
            target,
            gpus=gpu or (),
            regions=region or (),
            jurisdictions=jurisdiction or (),
            countries=country or (),
            include_flagged=all_,
        )
        if json_:
            print_json([o.to_json() for o in offers], pretty=pretty)
        else:
            console.print(_offers_table(offers, show_flags=all_))


@catalog_app.command("gpus")
def gpus_cmd(
    *, all_: AllOption = False, json_: JsonOption = False, pretty: PrettyOption = False
) -> None:
    """GPUs in the catalog: usable memory M, where offered, lowest $ per GPU-hour."""
    with cli_errors(json_out=json_):
        from mdeploy.catalog import gpu_summary

        rows = gpu_summary(include_flagged=all_)
        if json_:
            print_json([r.to_json() for r in rows], pretty=pretty)
            return
        table = _table("GPUs (M = usable GiB per GPU, ~ = estimated)")
        for name in ("GPU", "M GiB", "memory", "targets", "offers", "min $/GPU-h"):
            table.add_column(name)
        for r in rows:
            memory = f"{r.memory_gib:g}{' ~' if r.estimated else ''}"
            cheapest = _price(r.min_usd_per_gpu_hour)
            cells = (r.gpu, memory, r.memory, ", ".join(r.targets), str(r.offers), cheapest)
            table.add_row(*map(escape, cells))
        console.print(table)


@catalog_app.command("regions")
def regions_cmd(
    *,
    target: TargetsOption = None,
    jurisdiction: JurisdictionOption = None,
    country: CountryOption = None,
    json_: JsonOption = False,
    pretty: PrettyOption = False,
) -> None:
    """Regions with their country and jurisdiction (what residency rules match)."""
    with cli_errors(json_out=json_):
        from mdeploy.catalog import find_regions

        regions = find_regions(target, jurisdictions=jurisdiction or (), countries=country or ())
        if json_:
            print_json([vars(r) for r in regions], pretty=pretty)
            return
        table = _table(f"{len(regions)} regions")
        for name in ("target", "region", "country", "jurisdiction", "access", "notes"):
            table.add_column(name)
        for r in regions:
            cells = (r.target, r.region, r.country, r.jurisdiction, r.access, r.notes)
            table.add_row(*map(escape, cells))
        console.print(table)


models_app = typer.Typer(
    name="models",
    help="Model architectures the catalog knows; `add PATH` sizes a local config.json.",
    rich_markup_mode="rich",
    invoke_without_command=True,
)
catalog_app.add_typer(models_app)


def _params(m: Any) -> str:
    """'675 B' dense, '41 / 675 B' MoE (active / total)."""
    if m.params_b_active:
        return f"{m.params_b_active:.3g} / {m.params_b:.4g}"
    return f"{m.params_b:.4g}"


def _licence(m: Any) -> str:
    lic = m.license
    if lic is None:
        return "?"
    return lic.name + ("" if lic.commercial == "yes" else f" ({lic.commercial})")


@models_app.callback()
def models_cmd(ctx: typer.Context, *, json_: JsonOption = False) -> None:
    """Model architectures the catalog knows (use these ids as model.id)."""
    if ctx.invoked_subcommand is not None:
        return
    with cli_errors(json_out=json_):
        from mdeploy.catalog import load_models

        models = load_models()
        if json_:
            print_json([m.to_json() for m in models])
            return
        table = _table(f"{len(models)} models")
        table.add_column("id", overflow="fold")
        table.add_column("class")
        table.add_column("params B (active / total)", justify="right")
        for name in ("layers", "context"):
            table.add_column(name, justify="right")
        table.add_column("checkpoints")
        table.add_column("licence", overflow="fold")
        for m in models:
            context = str(m.max_position_embeddings or "?")
            formats = ",".join(dict.fromkeys(c.format for c in m.checkpoints)) or (
                m.checkpoint or "bf16"
            )
            cells = (m.id, m.classes, _params(m), str(m.layers), context, formats, _licence(m))
            table.add_row(*map(escape, cells))
        console.print(table)


@models_app.command("add")
def models_add_cmd(
    path: Annotated[Path, typer.Argument(help="A local config.json or a model folder.")],
    *,
    model_id: Annotated[
        str | None, typer.Option("--id", help="The id to plan it under (default: its name).")
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Size a local config.json and add it to your models file (never the installed package)."""
    with cli_errors(json_out=json_):
        from mdeploy.catalog._models import add_user_model

        arch, file = add_user_model(path, model_id=model_id)
        if json_:
            print_json({"file": str(file), "model": arch.to_json()})
            return
        console.print(
            f"[green]added[/] {escape(arch.id)}: {arch.classes}, {_params(arch)} B params, "
            f"{arch.layers} layers → {escape(str(file))}",
            soft_wrap=True,
        )


@catalog_app.command("refresh")
def refresh_cmd(
    *,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder to write (default ~/.cache/mdeploy/catalog)."),
    ] = None,
    target: Annotated[
        list[str] | None, typer.Option("--target", "-t", help="Only refresh aws or azure.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per HTTP request.", min=1)] = 30.0,
    json_: JsonOption = False,
) -> None:
    """Rebuild prices from public price APIs (network); the bundled catalog is untouched."""
    with cli_errors(json_out=json_):
        from mdeploy.catalog.refresh import REFRESHABLE, default_out_dir, refresh

        report = refresh(out or default_out_dir(), targets=target or REFRESHABLE, timeout=timeout)
        if json_:
            print_json(report.to_json())
            return
        out_dir = escape(str(report.out))
        counts = ", ".join(f"{t} {n}" for t, n in sorted(report.counts.items()))
        console.print(f"[green]wrote[/] {out_dir} ({counts} offers)", soft_wrap=True)
        for note in report.notes:
            console.print(f"[dim]- {escape(note)}[/]")
        console.print(f"use it: [bold]export MDEPLOY_CATALOG_DIR={out_dir}[/]", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `mdeploy catalog ...` to the root app."""
    app.add_typer(catalog_app, name="catalog")
