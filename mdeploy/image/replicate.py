"""
Ship one image to many registries by digest, and prove each copy is the same image.

`skopeo copy --all --preserve-digests` copies the manifest bytes unchanged (a multi-arch
index and every platform manifest in it), so the digest in every registry equals the
source's; layers a registry already holds are not sent again. The source is first resolved
to its digest and copied *by digest*, so a tag moved mid-copy cannot change what is shipped.
Each copy is then read back (`skopeo inspect --raw`) and its sha256 compared with the
source digest, including every child manifest of an index. A mismatch is a CloudError
(exit 1) naming the reference.

Runs skopeo only; no registry API is spoken here directly.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mdeploy.errors import CloudError, InputError
from mdeploy.image._tools import require_tool, run_tool
from mdeploy.image.auth import AuthFile, Resolver, registry_authfile
from mdeploy.image.refs import ImageRef, check_digest, parse_ref, require_pinned

__all__ = [
    "COPY_TIMEOUT_S",
    "CopyResult",
    "DigestMismatchError",
    "ReplicationResult",
    "Verification",
    "manifest_digest",
    "replicate",
    "verify_image",
]

COPY_TIMEOUT_S = 3600.0  # a 10 GB vLLM image over a slow link
INSPECT_TIMEOUT_S = 120.0
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


@dataclass(frozen=True)
class Verification:
    """What a registry holds under `ref`, compared with the expected digest."""

    ref: str
    expected: str
    digest: str
    verified: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "expected": self.expected,
            "digest": self.digest,
            "verified": self.verified,
        }


@dataclass(frozen=True)
class CopyResult:
    """One destination of a replication."""

    ref: str
    digest: str
    verified: bool
    pinned: str | None  # host/repo@sha256:... to deploy, for registry destinations

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "digest": self.digest,
            "verified": self.verified,
            "pinned": self.pinned,
        }


@dataclass(frozen=True)
class ReplicationResult:
    """The `image replicate --json` document: `{source, digest, copies: [...]}`."""

    source: str
    digest: str
    copies: tuple[CopyResult, ...]
    seconds: float

    @property
    def verified(self) -> bool:
        return all(c.verified for c in self.copies)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "digest": self.digest,
            "copies": [c.to_json() for c in self.copies],
        }


class DigestMismatchError(CloudError):
    """A copy does not hold the source's manifest; `result` says which (exit 1)."""

    def __init__(self, message: str, result: ReplicationResult | Verification) -> None:
        super().__init__(
            message,
            hint="something rewrote or replaced the image in that registry; copy it again "
            "and deploy by digest",
        )
        self.result = result


def replicate(
    source: str,
    targets: Sequence[str],
    *,
    insecure: bool = False,
    auth: Resolver | None = None,
    strict: bool = False,
    timeout: float = COPY_TIMEOUT_S,
) -> ReplicationResult:
    """
    Copy `source` to every ref in `targets` by digest and verify each copy.

    `strict` (prod) refuses destinations without a digest (PolicyError, exit 4). `auth`
    resolves credentials per reference (default: by registry host, see mdeploy.image.auth).
    Raises DigestMismatchError (exit 1) when a copy's digest differs from the source's.
    """
    src = parse_ref(source)
    dests = [parse_ref(t) for t in targets]
    if not dests:
        raise InputError("nothing to copy to", hint="give at least one --to REF")
    if strict:
        require_pinned(dests, why="prod refuses to replicate to a mutable tag")
    skopeo = require_tool("skopeo")
    started = time.monotonic()
    with registry_authfile([src, *dests], resolver=auth) as authfile:
        raw = _raw_manifest(skopeo, src, insecure, authfile)
        digest = _sha256(raw)
        pinned_src = src.with_digest(digest)
        for dest in dests:
            if dest.digest and dest.digest != digest:
                raise InputError(f"{dest} names {dest.digest} but the source is {digest}")
        copies = []
        for dest in dests:
            _copy(skopeo, pinned_src, dest, insecure, authfile, timeout)
            check = _verify(skopeo, dest, digest, insecure, authfile)
            copies.append(
                CopyResult(str(dest), check.digest, check.verified, dest.with_digest(digest).pinned)
            )
    result = ReplicationResult(str(src), digest, tuple(copies), time.monotonic() - started)
    bad = [c.ref for c in result.copies if not c.verified]
    if bad:
        raise DigestMismatchError(
            f"digest mismatch after copy: {', '.join(bad)} != {digest}", result
        )
    return result


def verify_image(
    ref: str, digest: str, *, insecure: bool = False, auth: Resolver | None = None
) -> Verification:
    """
    Check that `ref` holds the manifest whose sha256 is `digest` (and all its children).

    Raises DigestMismatchError (exit 1) naming the reference when it does not.
    """
    expected = check_digest(digest)
    target = parse_ref(ref)
    skopeo = require_tool("skopeo")
    with registry_authfile([target], resolver=auth) as authfile:
        check = _verify(skopeo, target, expected, insecure, authfile)
    if not check.verified:
        raise DigestMismatchError(
            f"{check.ref} holds {check.digest}, expected {expected}{check.detail}", check
        )
    return check


def manifest_digest(ref: str, *, insecure: bool = False, auth: Resolver | None = None) -> str:
    """The sha256 of the manifest bytes `ref` resolves to (the digest to deploy)."""
    target = parse_ref(ref)
    skopeo = require_tool("skopeo")
    with registry_authfile([target], resolver=auth) as authfile:
        return _sha256(_raw_manifest(skopeo, target, insecure, authfile))


def _copy(
    skopeo: str,
    src: ImageRef,
    dest: ImageRef,
    insecure: bool,
    authfile: AuthFile | None,
    timeout: float,
) -> None:
    argv = [skopeo, "copy", "--all", "--preserve-digests", "--retry-times", "3", "--quiet"]
    if insecure:
        argv += ["--src-tls-verify=false", "--dest-tls-verify=false"]
    if authfile:
        argv += ["--src-authfile", str(authfile.path), "--dest-authfile", str(authfile.path)]
    argv += [str(src), str(dest)]
    run_tool(argv, timeout=timeout, secrets=_secrets(authfile), what=f"skopeo copy to {dest}")


def _verify(
    skopeo: str, ref: ImageRef, expected: str, insecure: bool, authfile: AuthFile | None
) -> Verification:
    raw = _raw_manifest(skopeo, ref, insecure, authfile)
    digest = _sha256(raw)
    if digest != expected:
        return Verification(str(ref), expected, digest, False)
    for child in _children(raw) if ref.is_registry else []:
        try:
            got = _sha256(_raw_manifest(skopeo, ref.with_digest(child), insecure, authfile))
        except CloudError as exc:
            if "manifest unknown" not in exc.message:
                raise
            got = None
        if got != child:
            note = f" (platform manifest {child} is missing)"
            return Verification(str(ref), expected, digest, False, note)
    return Verification(str(ref), expected, digest, True)


def _raw_manifest(skopeo: str, ref: ImageRef, insecure: bool, authfile: AuthFile | None) -> bytes:
    argv = [skopeo, "inspect", "--raw", "--retry-times", "3"]
    if insecure:
        argv.append("--tls-verify=false")
    if authfile:
        argv += ["--authfile", str(authfile.path)]
    argv.append(str(ref))
    return run_tool(
        argv, timeout=INSPECT_TIMEOUT_S, secrets=_secrets(authfile), what=f"skopeo inspect {ref}"
    )


def _children(raw: bytes) -> list[str]:
    """Digests of the platform manifests of an index, [] for a single manifest."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise CloudError("the registry returned a manifest that is not JSON") from None
    media = doc.get("mediaType") if isinstance(doc, dict) else None
    if media not in _INDEX_TYPES and not (isinstance(doc, dict) and "manifests" in doc):
        return []
    return [m["digest"] for m in doc.get("manifests", []) if isinstance(m, dict) and "digest" in m]


def _sha256(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _secrets(authfile: AuthFile | None) -> tuple[str, ...]:
    return authfile.secrets if authfile else ()
