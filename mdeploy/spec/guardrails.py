"""
Prod guardrails and the spec's content hash.

A strict spec (the `prod` environment, or `guardrails: strict`) must describe exactly one
thing that can be rebuilt later: the model at a commit, the image at a digest, and an
endpoint that asks for credentials. The rules, each reported with its line:

- `model.revision` is a full 40-hex commit sha. Hugging Face revisions are git commits;
  a branch (`main`) or tag can move, and a short sha is ambiguous, so neither is accepted.
- `serving.image` is set and pinned as `repo@sha256:<64 hex>` (a tag before the digest is
  allowed; the digest wins).
- `serving.auth` is not `none`.

A local-path model source is fine: its contents are the operator's responsibility.
"""

from __future__ import annotations

import hashlib
import json
import re

from mdeploy.errors import GuardrailError, Issue
from mdeploy.spec.loader import LoadedSpec

__all__ = ["check_guardrails", "guardrail_issues", "spec_hash"]

_COMMIT_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
_PINNED_IMAGE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


def check_guardrails(loaded: LoadedSpec) -> None:
    """Raise GuardrailError (exit 4) listing every prod rule the spec breaks."""
    issues = guardrail_issues(loaded)
    if issues:
        raise GuardrailError(issues)


def guardrail_issues(loaded: LoadedSpec) -> list[Issue]:
    """Every prod rule the spec breaks, located in the file; [] when it complies."""
    spec = loaded.spec
    issues = []
    if not _COMMIT_SHA.match(spec.model.revision):
        issues.append(
            loaded.issue(
                "model.revision",
                f"{spec.model.revision!r} can move; pin the full 40-character commit sha "
                "(the model page's 'Files and versions' history shows it)",
            )
        )
    image = spec.serving.image
    if image is None:
        issues.append(
            loaded.issue(
                "serving.image",
                "not set; prod needs the inference image pinned as repo@sha256:<digest>",
            )
        )
    elif not _PINNED_IMAGE.match(image):
        issues.append(
            loaded.issue(
                "serving.image",
                "not pinned by digest; use repo@sha256:<64 hex> so every cloud runs the same bytes",
            )
        )
    if spec.serving.auth == "none":
        issues.append(
            loaded.issue("serving.auth", "an unauthenticated endpoint is refused; use key or iam")
        )
    return issues


def spec_hash(loaded: LoadedSpec) -> str:
    """
    Return the sha256 (hex) of the merged spec as canonical JSON.

    Defaults are filled in and `environments` is left out, so the hash names what gets
    deployed: two files that mean the same deployment hash the same, and editing an
    unrelated overlay changes nothing. Used for image labels and stack names.
    """
    data = loaded.spec.model_dump(mode="json", by_alias=True, exclude={"environments"})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
