"""
The one reader of `env:NAME` and `file:PATH` secret references, shared by every target.

A target that stores such a secret in its cloud's secret store (Secrets Manager, Key Vault,
Secret Manager, a Kubernetes Secret) reads the value here, on the deployer's machine, at
`up`. One trimming rule for all of them: surrounding whitespace is dropped, so a token file
written by `echo` (trailing newline) or pasted with a stray space works the same everywhere,
and an empty value counts as missing. What a target does about a missing value (refuse, warn
and skip, deploy without it) stays the target's decision. Values are never logged, and no
message here contains one.
"""

from __future__ import annotations

import os
from pathlib import Path

from mdeploy.errors import InputError

__all__ = ["LOCAL_SCHEMES", "read_local_secret", "split_reference"]

LOCAL_SCHEMES = ("env", "file")


def split_reference(ref: str) -> tuple[str, str]:
    """`env:HF_TOKEN` → ("env", "HF_TOKEN"); the scheme is whatever precedes the first colon."""
    scheme, _, where = ref.partition(":")
    return scheme, where


def read_local_secret(kind: str, where: str, *, field: str | None = None) -> str | None:
    """
    The value behind `kind:where` (kind env or file), trimmed; None when unset or empty.

    A file that exists but cannot be read is an InputError naming `field` (the spec path,
    e.g. serving.secrets.HF_TOKEN) and the reason, never the content.
    """
    if kind == "env":
        value = os.environ.get(where)
    elif kind == "file":
        path = Path(where).expanduser()
        if not path.is_file():
            return None
        try:
            value = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise InputError(f"{field or 'secret'}: cannot read file:{where} ({reason})") from None
    else:
        raise InputError(f"{field or 'secret'}: {kind}: is not a local reference (env: or file:)")
    value = (value or "").strip()
    return value or None
