"""
What every command shares: consoles, option types, JSON output and the error boundary.

Kept import-light: `mdeploy --help` loads this module, so nothing heavy at module level.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape

from mdeploy.errors import EXIT_CLOUD, EXIT_INPUT, EXIT_PREREQUISITE, Issue, MdeployError
from mdeploy.target_names import placement_names

__all__ = [
    "EnvOption",
    "JsonOption",
    "PrettyOption",
    "SpecArg",
    "TargetOption",
    "YesOption",
    "check_target",
    "cli_errors",
    "console",
    "err_console",
    "error_json",
    "params_text",
    "print_json",
    "redact",
    "report_error",
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
    typer.Option("--target", "-t", help=f"Restrict to one target: {', '.join(placement_names())}."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Machine-readable JSON on stdout (stable contract).")
]
PrettyOption = Annotated[
    bool, typer.Option("--pretty", help="Indent --json output for people (default: compact).")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


# Optional packages → the extra that installs them (pyproject.toml [project.optional-dependencies]).
# Each target's extra is named after it and lists its modules (Target.python_modules).
_EXTRAS = {"uvicorn": "serve"}


def missing_package_hint(module: str) -> str:
    """How to install the optional dependency a command needs, from the module's name."""
    from mdeploy.targets import extras_for_modules

    top = module.split(".")[0]
    extra = _EXTRAS.get(top) or extras_for_modules().get(top)
    if extra is None:
        return "reinstall mdeploy with all extras: pip install 'mdeploy[all]'"
    choices = " or ".join(f"'mdeploy[{e}]'" for e in extra.split("|"))
    return f"install the optional dependencies: pip install {choices} (or 'mdeploy[all]')"


def print_json(data: Any, *, pretty: bool = False) -> None:
    """
    Write JSON to stdout unstyled, so pipes and CI parsers get exactly the document.

    `allow_nan=False`: `Infinity`/`NaN` are not JSON and strict parsers reject the whole
    document, so a non-finite number is an error naming where it is, not silent bad output.
    """
    try:
        # Compact unless --pretty: indent forces Python's pure-Python encoder (~4× slower on
        # a plan listing 100k rejections); the document is the same either way.
        text = json.dumps(
            data,
            indent=2 if pretty else None,
            separators=None if pretty else (",", ":"),
            sort_keys=False,
            default=str,
            allow_nan=False,
        )
    except ValueError:
        where = _non_finite_path(data) or "a value"
        _fail(
            EXIT_INPUT,
            f"cannot write JSON: {where} is not a finite number (Infinity or NaN)",
            "use finite numbers in the spec and catalog",
            [],
            json_out=True,
        )
        raise typer.Exit(EXIT_INPUT) from None
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _non_finite_path(data: Any, path: str = "") -> str | None:
    """Dotted path of the first inf/nan float in `data`, for the error message."""
    if isinstance(data, float) and not math.isfinite(data):
        return path or "the document"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(
        data, list | tuple) else ()  # fmt: skip
    for key, value in items:
        found = _non_finite_path(value, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def redact(text: str) -> str:
    """`text` with every credential-shaped part replaced (the one detector, spec/_secrets)."""
    from mdeploy.spec._secrets import redact as _redact

    return _redact(text)


def _issue_json(issue: Issue) -> dict[str, Any]:
    return {
        "path": redact(issue.field),
        "file": issue.file,
        "line": issue.line,
        "column": issue.column,
        "message": redact(issue.message),
    }


def error_json(code: int, message: str, hint: str | None, issues: list[Issue]) -> dict[str, Any]:
    """The `--json` error object every command prints on stdout when it fails."""
    return {
        "error": {
            "code": code,
            "message": redact(message),
            "hint": redact(hint) if hint else None,
            "issues": [_issue_json(i) for i in issues],
        }
    }


def _fail(
    code: int, message: str, hint: str | None, issues: list[Issue], *, json_out: bool
) -> None:
    """Say what failed on stderr and, for --json, as the error object on stdout."""
    err_console.print(f"[bold red]error:[/] {escape(redact(message))}", soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint:[/] {escape(redact(hint))}", soft_wrap=True)
    if json_out:
        document = error_json(code, message, hint, issues)
        sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def report_error(exc: MdeployError, *, json_out: bool = False) -> int:
    """Print `exc` as cli_errors would and return its exit code (for commands that go on)."""
    _fail(exc.exit_code, exc.message, exc.hint, getattr(exc, "issues", []), json_out=json_out)
    return exc.exit_code


def check_target(target: str | None) -> None:
    """Refuse an unknown --target name as bad input (exit 2), before any planning."""
    if target is not None:
        from mdeploy.targets import deploy_target_for

        deploy_target_for(target)


@contextmanager
def cli_errors(json_out: bool = False) -> Iterator[None]:
    """
    Turn every failure into a message on stderr and the documented exit code.

    With `json_out`, the same failure is also printed on stdout as
    `{"error": {"code", "message", "hint", "issues": [{"path", "line", "column", "message"}]}}`
    so CI reads every outcome. Anything unexpected is exit 1 with one line, never a
    traceback (MDEPLOY_DEBUG=1 shows it); messages are redacted of credential shapes.
    """
    try:
        yield
    except MdeployError as exc:
        raise typer.Exit(report_error(exc, json_out=json_out)) from None
    except ModuleNotFoundError as exc:
        # Cloud SDKs are optional extras, imported only by the command that needs them.
        name = exc.name or "a package"
        if name.split(".")[0] == "mdeploy":
            raise  # a broken install of mdeploy itself, not a missing extra
        message = f"this command needs the Python package {name!r}"
        _fail(EXIT_PREREQUISITE, message, missing_package_hint(name), [], json_out=json_out)
        raise typer.Exit(EXIT_PREREQUISITE) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        message = f"{exc.strerror or exc}: {exc.filename}"
        _fail(EXIT_INPUT, message, None, [], json_out=json_out)
        raise typer.Exit(EXIT_INPUT) from None
    except (typer.Exit, typer.Abort, click.exceptions.Exit, click.Abort, click.ClickException):
        raise  # an exit code chosen on purpose, or click's own usage error
    except Exception as exc:
        if os.environ.get("MDEPLOY_DEBUG"):
            raise
        message = f"internal error: {type(exc).__name__}: {exc}"
        hint = "a bug in mdeploy: rerun with MDEPLOY_DEBUG=1 for the traceback and report it"
        _fail(EXIT_CLOUD, message, hint, [], json_out=json_out)
        raise typer.Exit(EXIT_CLOUD) from None


def params_text(params_b: float) -> str:
    """Billions of parameters for people: 7.25, 46.7, 671, 1,026 (three figures at most)."""
    return f"{params_b:,.0f}" if params_b >= 100 else f"{params_b:.3g}"
