"""
What every command shares: consoles, option types, JSON output and the error boundary.

Kept import-light: `mdeploy --help` loads this module, so nothing heavy at module level.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from mdeploy.errors import EXIT_INPUT, EXIT_PREREQUISITE, MdeployError

__all__ = [
    "EnvOption",
    "JsonOption",
    "PrettyOption",
    "SpecArg",
    "TargetOption",
    "YesOption",
    "cli_errors",
    "console",
    "err_console",
    "print_json",
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

SpecArg = Annotated[
    Path,
    typer.Argument(help="Deployment spec (YAML).", show_default=False, dir_okay=False),
]
EnvOption = Annotated[
    str | None,
    typer.Option("--env", "-e", help="Environment overlay from the spec's [bold]environments[/]."),
]
TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target", "-t", help="Restrict to one target: aws, azure, gcp, coreweave, kubernetes."
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Machine-readable JSON on stdout (stable contract).")
]
PrettyOption = Annotated[
    bool, typer.Option("--pretty", help="Indent --json output for people (default: compact).")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


# Optional packages → the extra that installs them (pyproject.toml [project.optional-dependencies]).
_EXTRAS = {
    "pulumi": "aws|azure|gcp|kubernetes",
    "pulumi_aws": "aws",
    "boto3": "aws",
    "botocore": "aws",
    "pulumi_azure_native": "azure",
    "azure": "azure",
    "pulumi_gcp": "gcp",
    "google": "gcp",
    "httpx": "gcp",
    "pulumi_kubernetes": "kubernetes",
    "pulumi_random": "kubernetes",
    "uvicorn": "serve",
}


def missing_package_hint(module: str) -> str:
    """How to install the optional dependency a command needs, from the module's name."""
    extra = _EXTRAS.get(module.split(".")[0])
    if extra is None:
        return "reinstall mdeploy with all extras: pip install 'mdeploy[all]'"
    choices = " or ".join(f"'mdeploy[{e}]'" for e in extra.split("|"))
    return f"install the optional dependencies: pip install {choices} (or 'mdeploy[all]')"


def print_json(data: Any, *, pretty: bool = False) -> None:
    """Write JSON to stdout unstyled, so pipes and CI parsers get exactly the document."""
    # Compact unless --pretty: indent forces Python's pure-Python encoder (~4× slower on
    # a plan listing 100k rejections); the document is the same either way.
    text = json.dumps(
        data,
        indent=2 if pretty else None,
        separators=None if pretty else (",", ":"),
        sort_keys=False,
        default=str,
    )
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn domain errors into a message on stderr and the documented exit code."""
    try:
        yield
    except MdeployError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
        if exc.hint:
            err_console.print(f"[dim]hint:[/] {escape(exc.hint)}", soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except ModuleNotFoundError as exc:
        # Cloud SDKs are optional extras, imported only by the command that needs them.
        name = exc.name or "a package"
        if name.split(".")[0] == "mdeploy":
            raise  # a broken install of mdeploy itself, not a missing extra
        err_console.print(f"[bold red]error:[/] this command needs the Python package {name!r}")
        err_console.print(f"[dim]hint:[/] {escape(missing_package_hint(name))}", soft_wrap=True)
        raise typer.Exit(EXIT_PREREQUISITE) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc.strerror or exc))}: {escape(str(exc.filename))}"
        )
        raise typer.Exit(EXIT_INPUT) from None
