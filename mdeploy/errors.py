"""
The one exception family mdeploy raises, with the documented exit codes.

Domain code raises these; the CLI boundary turns them into a message and an exit code,
never a traceback. Messages must be safe to print: no secret values, ever.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EXIT_CLOUD",
    "EXIT_INPUT",
    "EXIT_OK",
    "EXIT_POLICY",
    "EXIT_PREREQUISITE",
    "CloudError",
    "GuardrailError",
    "InputError",
    "Issue",
    "MdeployError",
    "PolicyError",
    "PrerequisiteError",
    "SpecError",
]

EXIT_OK = 0
EXIT_CLOUD = 1
EXIT_INPUT = 2
EXIT_PREREQUISITE = 3
EXIT_POLICY = 4


class MdeployError(Exception):
    """Base of every error mdeploy reports to a person."""

    exit_code = EXIT_CLOUD

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class CloudError(MdeployError):
    """A cloud or runtime call failed (exit 1)."""

    exit_code = EXIT_CLOUD


class InputError(MdeployError):
    """Bad flags or arguments (exit 2)."""

    exit_code = EXIT_INPUT


class PrerequisiteError(MdeployError):
    """A tool, plugin or credential is missing (exit 3); `hint` says how to get it."""

    exit_code = EXIT_PREREQUISITE


class PolicyError(MdeployError):
    """A policy refused the request: residency, prod guardrails (exit 4)."""

    exit_code = EXIT_POLICY


@dataclass(frozen=True)
class Issue:
    """One problem in a spec file, located as precisely as the YAML allows."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class SpecError(InputError):
    """A spec failed to load or validate; holds every issue found, not just the first."""

    def __init__(self, issues: list[Issue], *, hint: str | None = None) -> None:
        self.issues = list(issues)
        head = f"{len(self.issues)} problem(s) in spec" if len(self.issues) != 1 else "invalid spec"
        super().__init__(head + ":\n" + "\n".join(f"  {i}" for i in self.issues), hint=hint)


class GuardrailError(PolicyError):
    """A spec is valid but refused by prod guardrails; lists each violated rule."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = list(issues)
        super().__init__(
            "refused by prod guardrails:\n" + "\n".join(f"  {i}" for i in self.issues),
            hint="prod requires a pinned model revision (commit sha), an image pinned by "
            "@sha256 digest and auth other than none",
        )
