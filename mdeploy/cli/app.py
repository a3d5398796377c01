"""
The `mdeploy` Typer app: one thin command per verb, the logic lives in the layers below.

Every command module imports only typer/rich and mdeploy's light layers at module level;
cloud SDKs and Pulumi are imported inside the command that needs them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mdeploy import __version__
from mdeploy._gc import freeze_after_long_lived_phases
from mdeploy.cli import (
    catalog_cmd,
    deploy_cmd,
    image_cmd,
    plan_cmd,
    promote_cmd,
    serve_cmd,
    spec_cmd,
)

app = typer.Typer(
    name="mdeploy",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mdeploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    """
    Deploy open-weight LLMs to [bold]SageMaker[/], [bold]Azure ML[/], [bold]Vertex AI[/] or
    [bold]Kubernetes[/] from one spec, with the same image everywhere.

    Offline: validate, plan, compare, catalog, synth. Cloud: up, preview, destroy, status.
    """


spec_cmd.register(app)
plan_cmd.register(app)
catalog_cmd.register(app)
deploy_cmd.register(app)
image_cmd.register(app)
serve_cmd.register(app)
promote_cmd.register(app)


def main() -> None:
    freeze_after_long_lived_phases()  # a short-lived process: see mdeploy/_gc.py
    app()
