"""
A failed Pulumi CLI call, turned into the message mdeploy prints (exit 1).

The Automation API raises CommandError with the CLI's exit code, stdout and stderr folded
into one string; the useful sentence is in one of three places (the CLI's own error on
stderr, the engine's diagnostic events, the "Diagnostics:" block on stdout). This module
finds it, and says where the state lives when the stack itself is the problem.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mdeploy.deploy.operation import Operation
    from mdeploy.deploy.progress import Progress

__all__ = ["failure", "last_line", "state_hint"]

_COMMAND_RESULT = re.compile(r"\A\s*code: (-?\d+)\n stdout: (.*)\n stderr: (.*)\Z", re.S)
_GENERIC = re.compile(r"(error: )?(update|preview|destroy|refresh) failed\.?", re.I)
_MAX_MESSAGE = 600


def _command_output(exc: Exception) -> tuple[str, str, str]:
    """(exit code, stdout, stderr) of a failed Pulumi CLI call."""
    match = _COMMAND_RESULT.match(str(exc))
    if match is None:
        return "", "", str(exc)
    return match.group(1), match.group(2), match.group(3)


def last_line(exc: Exception) -> str:
    """The useful part of a CommandError: the last non-empty line of its stderr."""
    code, _, stderr = _command_output(exc)
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if lines:
        return lines[-1]
    return f"the Pulumi CLI exited with code {code}" if code else type(exc).__name__


def failure(exc: Exception, progress: Progress | None) -> str:
    """
    Why an operation failed, in the engine's words.

    A resource failure is reported by the engine as a diagnostic (event stream, and the
    "Diagnostics:" block on stdout); the CLI then exits 255 with nothing on stderr (the
    error is a "bail": already shown). Errors the CLI itself raises (no stack, locked
    stack, bad passphrase) are on stderr. Specific messages beat the generic
    "update failed".
    """
    _, stdout, stderr = _command_output(exc)
    engine = [e for e in (progress.errors if progress is not None else []) if e]
    # stderr: the CLI's own error comes last; diagnostics: the first is the root cause.
    sources = (_error_lines(stderr)[::-1], engine, _error_lines(stdout))
    for found in sources:
        specific = [e for e in found if not _GENERIC.fullmatch(e)]
        if specific:
            text = " ".join(specific[0].split())
            if len(text) > _MAX_MESSAGE:
                text = text[: _MAX_MESSAGE - 1] + "…"
            more = len(specific) - 1
            return text + (f" (and {more} more error{'s' * (more > 1)})" if more else "")
    generic = [e for found in sources for e in found]
    return generic[0] if generic else last_line(exc)


def _error_lines(text: str) -> list[str]:
    """The messages of the `error: ...` lines of a CLI stream, colour directives removed."""
    from mdeploy.deploy.progress import clean_message

    out = []
    for line in text.splitlines():
        line = clean_message(line)
        if line.startswith("error:"):
            message = line[len("error:") :].strip()
            if message:
                out.append(message)
    return out


def state_hint(op: Operation) -> str:
    return (
        f"state backend {op.backend}; check the passphrase (PULUMI_CONFIG_PASSPHRASE) and "
        f"`pulumi stack --stack {op.stack}` for details"
    )
