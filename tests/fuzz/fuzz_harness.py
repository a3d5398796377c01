"""
Run the CLI in-process, fast, and check one outcome against the promises every input keeps.

`typer.testing.CliRunner` rebuilds the Click command from the Typer app on every call (about
40 ms); building it once and invoking Click directly costs a few ms, which is what lets the
fuzz tests run thousands of cases. The promises checked (README, issue 11):

- no traceback and no unexpected exception, whatever the input;
- only the documented exit codes for validate and plan: 0, 2 (bad input), 4 (policy/no fit);
- with --json, stdout is one valid JSON document (NaN/Infinity refused, as strict parsers do);
- a credential-shaped value that went into the spec is never printed back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import click
import typer
from click.testing import CliRunner

from mdeploy.cli.app import app

DOCUMENTED = {"validate": {0, 2, 4}, "plan": {0, 2, 4}, "compare": {0, 2, 4}}

# Credential shapes the detector in mdeploy/spec/_secrets.py knows, made up for the tests.
TOKENS = (
    "hf_" + "Q7xWm2Lp9R" * 4,
    "sk-" + "proj_Z8k2Lq" * 3,
    "AKIA" + "J7Q2WZ8K4L6M3N5P",
    "ghp_" + "x9Y8w7V6u5" * 4,
)


@cache
def _command() -> click.Command:
    return typer.main.get_command(app)


@dataclass
class Outcome:
    """What one CLI run did."""

    args: list[str]
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None


def run(*args: str) -> Outcome:
    """Invoke `mdeploy ARGS` in-process with a fixed 80-column terminal."""
    result = CliRunner().invoke(_command(), list(args), env={"COLUMNS": "80"})
    exc = result.exception
    if isinstance(exc, SystemExit):
        exc = None
    return Outcome(list(args), result.exit_code, result.stdout, result.stderr, exc)


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def problems(outcome: Outcome, *, secrets: tuple[str, ...] = TOKENS) -> list[str]:
    """Every broken promise of one run; [] when it behaved."""
    found = []
    command = outcome.args[0]
    if outcome.exception is not None:
        found.append(f"exception {type(outcome.exception).__name__}: {outcome.exception}")
    text = outcome.stdout + outcome.stderr
    if "Traceback" in text:
        found.append("traceback printed")
    if outcome.code not in DOCUMENTED.get(command, {0, 1, 2, 3, 4}):
        found.append(f"exit code {outcome.code}")
    if "--json" in outcome.args:
        try:
            json.loads(outcome.stdout, parse_constant=_no_constant)
        except ValueError as exc:
            found.append(f"invalid JSON on stdout: {exc}")
    for secret in secrets:
        if secret in text:
            found.append(f"secret-shaped value echoed ({secret[:4]}…)")
    return found
