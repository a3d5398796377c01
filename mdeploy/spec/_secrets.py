"""
Catch credentials pasted where a spec carries plain values: `serving.engine_args`.

A token in engine_args would be baked into cloud resource definitions, stack state and
`synth` output. `serving.secrets` holds references (env:NAME, aws-sm:ARN, ...) that are
resolved at deploy time; this check points people there. Messages name the field and the
kind of credential, never the value.
"""

from __future__ import annotations

import re

from mdeploy.errors import Issue
from mdeploy.spec._yaml import Node

__all__ = ["find_pasted_secrets", "looks_like_secret"]

# Shapes of credentials that are unambiguous enough to refuse outright.
_TOKEN_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("an OpenAI-style API key", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
)
# vLLM flags whose value is a credential: give them through serving.secrets instead.
_CREDENTIAL_FLAGS = {
    "api-key": "VLLM_API_KEY",
    "hf-token": "HF_TOKEN",
}


def looks_like_secret(text: str) -> str | None:
    """Return what kind of credential `text` contains, or None."""
    for kind, pattern in _TOKEN_SHAPES:
        if pattern.search(text):
            return kind
    return None


def find_pasted_secrets(root: Node, file: str) -> list[Issue]:
    """List every engine_args entry that holds a credential."""
    serving = root.value.get("serving")
    if serving is None or not isinstance(serving.value, dict):
        return []
    args = serving.value.get("engine_args")
    if args is None or not isinstance(args.value, dict):
        return []
    issues = []
    for flag, node in args.value.items():
        message = _problem(flag, node)
        if message:
            field = f"serving.engine_args.{flag}"
            issues.append(Issue(file, node.line, node.column, field, message))
    return issues


def _problem(flag: str, node: Node) -> str | None:
    if flag in _CREDENTIAL_FLAGS:
        env = _CREDENTIAL_FLAGS[flag]
        return (
            f"--{flag} carries a credential; remove it and set "
            f"serving.secrets.{env} to a reference such as env:{env}"
        )
    kind = looks_like_secret(node.value) if isinstance(node.value, str) else None
    if kind:
        return (
            f"looks like {kind}; put credentials in serving.secrets as a reference "
            "(env:NAME, aws-sm:ARN, ...), never in engine_args (the value was not printed)"
        )
    return None
