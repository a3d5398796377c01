"""
The one credential detector: find, refuse and redact values shaped like secrets.

A token pasted anywhere in a spec — an engine flag or its name, `model.id`, a label, an
unknown key, `residency` — would be baked into cloud resource definitions, stack state and
`plan`/`synth` output, and printed back in error messages. So:

- `find_pasted_secrets` refuses every credential-shaped key or value of the spec, and a URL
  that carries `user:password@`, with the field and the kind of credential, never the value;
- `redact` replaces credential shapes in any text about to be printed; the CLI boundary runs
  every message through it as a last line of defence.

`serving.secrets` holds references (env:NAME, aws-sm:ARN, ...) resolved at deploy time;
these messages point people there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mdeploy.errors import Issue
from mdeploy.spec._yaml import Node

__all__ = ["REDACTED", "find_pasted_secrets", "looks_like_secret", "redact"]

REDACTED = "<redacted>"

# Shapes of credentials that are unambiguous enough to refuse outright. Prefixes from each
# vendor's documentation: Hugging Face user access tokens (hf_), OpenAI keys (sk-), AWS
# access key ids (AKIA/ASIA + 16), GitHub tokens (ghp_/gho_/ghu_/ghs_/ghr_, github_pat_),
# Slack tokens (xox?-), Google API keys (AIza + 35), PEM private key blocks.
_TOKEN_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a Hugging Face token", re.compile(r"hf_[A-Za-z0-9]{30,}")),
    ("an OpenAI-style API key", re.compile(r"sk-[A-Za-z0-9_-]{20,}")),
    ("an AWS access key id", re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}")),
    ("a GitHub token", re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("a Slack token", re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"AIza[0-9A-Za-z_-]{35}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
)
_ANY_TOKEN = re.compile("|".join(f"(?:{p.pattern})" for _, p in _TOKEN_SHAPES))
# scheme://user:password@host — credentials in a URL (a user name alone is not refused).
_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]*@")
# vLLM flags whose value is a credential: give them through serving.secrets instead.
_CREDENTIAL_FLAGS = {
    "api-key": "VLLM_API_KEY",
    "hf-token": "HF_TOKEN",
}
_ENGINE_ARGS = ("serving", "engine_args")


def looks_like_secret(text: str) -> str | None:
    """Return what kind of credential `text` contains, or None."""
    for kind, pattern in _TOKEN_SHAPES:
        if pattern.search(text):
            return kind
    if _URL_USERINFO.search(text):
        return "a password in a URL (user:password@)"
    return None


def redact(text: str) -> str:
    """`text` with every credential shape (and URL password) replaced by <redacted>."""
    text = _ANY_TOKEN.sub(REDACTED, text)
    return _URL_USERINFO.sub(lambda m: m.group(0).split("://")[0] + f"://{REDACTED}@", text)


def find_pasted_secrets(root: Node, file: str) -> list[Issue]:
    """An issue for every credential-shaped key or value of the spec, values never printed."""
    issues = []
    for path, node, is_key, text in _strings(root, ()):
        message = _problem(path, node, is_key, text)
        if message:
            field = ".".join(redact(str(p)) for p in path)
            issues.append(Issue(file, node.line, node.column, field, message))
    return issues


def _strings(node: Node, path: tuple[str | int, ...]) -> Iterator[tuple[tuple, Node, bool, str]]:
    """(path, node, is_key, text) for every key and scalar under `node` (text "" if not str)."""
    if isinstance(node.value, dict):
        for key, child in node.value.items():
            key_node = Node(key, *(child.key_at or (child.line, child.column)))
            yield (*path, key), key_node, True, key
            yield from _strings(child, (*path, key))
    elif isinstance(node.value, list):
        for i, child in enumerate(node.value):
            yield from _strings(child, (*path, i))
    else:
        yield path, node, False, node.value if isinstance(node.value, str) else ""


def _problem(path: tuple, node: Node, is_key: bool, text: str) -> str | None:
    if not is_key and len(path) == 3 and path[:2] == ("serving", "secrets"):
        return None  # must be a reference: the schema refuses any value there, unprinted
    in_engine_args = len(path) == 3 and path[:2] == _ENGINE_ARGS
    if in_engine_args and not is_key and path[2] in _CREDENTIAL_FLAGS:
        env = _CREDENTIAL_FLAGS[str(path[2])]
        return (
            f"--{path[2]} carries a credential; remove it and set "
            f"serving.secrets.{env} to a reference such as env:{env}"
        )
    kind = looks_like_secret(text)
    if kind is None:
        return None
    what = "this key" if is_key else "this value"
    where = "never in engine_args" if in_engine_args else "never in the spec itself"
    return (
        f"{what} looks like {kind}; put credentials in serving.secrets as a reference "
        f"(env:NAME, file:PATH, ...), {where} (the value was not printed)"
    )
