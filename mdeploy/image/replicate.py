"""
Ship one image to many registries by digest, and prove each copy is the same image.

`skopeo copy --all --preserve-digests` copies the manifest bytes unchanged (a multi-arch
index and every platform manifest in it), so the digest in every registry equals the
source's; layers a registry already holds are not sent again. The source is first resolved
to its digest and copied *by digest*, so a tag moved mid-copy cannot change what is shipped.
Each copy is then read back (`skopeo inspect --raw`) and its sha256 compared with the
source digest, including every child manifest of an index. A mismatch is a CloudError
(exit 1) naming the reference. `verify_image` goes further: it streams every blob (config
and layers of every platform) and checks each one's sha256 (`mdeploy.image.blobs`), so a
corrupted layer is reported too. A registry that cannot be reached is exit 3, not 1.

Manifests keep their bytes, so their media type: the JSON documents report it (SageMaker
accepts Docker v2 schema 2 only, see `mdeploy.image.manifests`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mdeploy.errors import CloudError, InputError
from mdeploy.image._signals import on_sigterm
from mdeploy.image._tools import require_tool, run_tool
from mdeploy.image.auth import AuthFile, Resolver, registry_authfile
from mdeploy.image.blobs import BlobReader, is_unreachable, unreachable
from mdeploy.image.manifests import INDEX_TYPES, blobs_of, media_type_of
from mdeploy.image.refs import ImageRef, check_digest, parse_ref, require_pinned

__all__ = [
    "COPY_TIMEOUT_S",
    "CopyResult",
    "DigestMismatchError",
    "ReplicationResult",
    "Verification",
    "manifest_digest",
    "read_manifest",
    "replicate",
    "verify_image",
]

COPY_TIMEOUT_S = 3600.0  # a 10 GB vLLM image over a slow link
INSPECT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Verification:
    """What a registry holds under `ref`, compared with the expected digest."""

    ref: str
    expected: str
    digest: str
    verified: bool
    detail: str = ""
    media_type: str = ""  # of the manifest found under `ref`
    blobs_checked: int = 0  # blobs whose sha256 was recomputed (config + layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "expected": self.expected,
            "digest": self.digest,
            "media_type": self.media_type,
            "blobs_checked": self.blobs_checked,
            "verified": self.verified,
        }


@dataclass(frozen=True)
class CopyResult:
    """One destination of a replication."""

    ref: str
    digest: str
    verified: bool
    pinned: str | None  # host/repo@sha256:... to deploy, for registry destinations
    media_type: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "digest": self.digest,
            "media_type": self.media_type,
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
    media_type: str = ""

    @property
    def verified(self) -> bool:
        return all(c.verified for c in self.copies)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "digest": self.digest,
            "media_type": self.media_type,
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
    copies: list[CopyResult] = []
    current: list[str] = []
    with (
        on_sigterm(lambda: _stopped_state(copies, current, len(dests)), hint=_RERUN),
        registry_authfile([src, *dests], resolver=auth) as authfile,
    ):
        raw = _raw_manifest(skopeo, src, insecure, authfile)
        digest = _sha256(raw)
        pinned_src = src.with_digest(digest)
        for dest in dests:
            if dest.digest and dest.digest != digest:
                raise InputError(f"{dest} names {dest.digest} but the source is {digest}")
        for dest in dests:
            current[:] = [str(dest)]
            _copy(skopeo, pinned_src, dest, insecure, authfile, timeout)
            check = _verify(skopeo, dest, digest, insecure, authfile)
            pinned = dest.with_digest(digest).pinned
            copies.append(
                CopyResult(str(dest), check.digest, check.verified, pinned, check.media_type)
            )
            current.clear()
    result = ReplicationResult(
        str(src), digest, tuple(copies), time.monotonic() - started, media_type_of(raw)
    )
    bad = [c.ref for c in result.copies if not c.verified]
    if bad:
        raise DigestMismatchError(
            f"digest mismatch after copy: {', '.join(bad)} != {digest}", result
        )
    return result


_RERUN = "run the same command again: layers already in a registry are not sent twice"


def _stopped_state(copies: list[CopyResult], current: list[str], total: int) -> str:
    """What a SIGTERM left behind, for the message (exit 143)."""
    done = ", ".join(c.ref for c in copies) or "none"
    text = f"{len(copies)} of {total} copies finished ({done})"
    if current:
        text += (
            f"; the copy to {current[0]} was stopped (that registry may hold some of its "
            "layers, and no manifest unless the copy had finished)"
        )
    return text + "; skopeo stopped, the temporary registry auth file removed"


def verify_image(
    ref: str, digest: str, *, insecure: bool = False, auth: Resolver | None = None
) -> Verification:
    """
    Check that `ref` holds the manifest whose sha256 is `digest`, all its children, and
    every blob they name (streamed and hashed; a registry reference only).

    Raises DigestMismatchError (exit 1) naming the reference when it does not, and
    PrerequisiteError (exit 3) when the registry cannot be reached.
    """
    expected = check_digest(digest)
    target = parse_ref(ref)
    skopeo = require_tool("skopeo")
    with registry_authfile([target], resolver=auth) as authfile:
        check = _verify(skopeo, target, expected, insecure, authfile, blobs=True)
    if not check.verified:
        raise DigestMismatchError(
            f"{check.ref} holds {check.digest}, expected {expected}{check.detail}", check
        )
    return check


def read_manifest(
    ref: ImageRef, *, insecure: bool = False, authfile: AuthFile | None = None
) -> tuple[str, str]:
    """(digest, media type) of the manifest `ref` resolves to, read with skopeo."""
    raw = _raw_manifest(require_tool("skopeo"), ref, insecure, authfile)
    return _sha256(raw), media_type_of(raw)


def inspect_image(
    ref: str, *, insecure: bool = False, auth: Resolver | None = None
) -> tuple[str, str]:
    """(digest, media type) of what `ref` resolves to, logging in as replicate does."""
    target = parse_ref(ref)
    with registry_authfile([target], resolver=auth) as authfile:
        return read_manifest(target, insecure=insecure, authfile=authfile)


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
    skopeo: str,
    ref: ImageRef,
    expected: str,
    insecure: bool,
    authfile: AuthFile | None,
    *,
    blobs: bool = False,
) -> Verification:
    raw = _raw_manifest(skopeo, ref, insecure, authfile)
    digest, media_type = _sha256(raw), media_type_of(raw)
    if digest != expected:
        return Verification(str(ref), expected, digest, False, media_type=media_type)
    manifests = [raw]
    for child in _children(raw) if ref.is_registry else []:
        try:
            child_raw = _raw_manifest(skopeo, ref.with_digest(child), insecure, authfile)
        except CloudError as exc:
            if "manifest unknown" not in exc.message:
                raise
            child_raw = None
        if child_raw is None or _sha256(child_raw) != child:
            note = f" (platform manifest {child} is missing)"
            return Verification(str(ref), expected, digest, False, note, media_type)
        manifests.append(child_raw)
    checked = 0
    if blobs and ref.is_registry:
        checked, problem = _check_blobs(ref, manifests, insecure, authfile)
        if problem:
            return Verification(str(ref), expected, digest, False, problem, media_type, checked)
    return Verification(str(ref), expected, digest, True, "", media_type, checked)


def _check_blobs(
    ref: ImageRef, manifests: list[bytes], insecure: bool, authfile: AuthFile | None
) -> tuple[int, str]:
    """(blobs checked, first problem or ""): every config and layer blob, hashed as served."""
    reader = BlobReader(ref, insecure=insecure, authfile=authfile.path if authfile else None)
    seen: set[str] = set()
    for raw in manifests:
        for blob in blobs_of(raw):
            if blob.digest in seen:
                continue
            seen.add(blob.digest)
            got = reader.sha256(blob.digest)
            if got is None:
                return len(seen), f" (blob {blob.digest} is missing)"
            if got != blob.digest:
                return len(seen), f" (blob {blob.digest} is corrupted: its bytes hash to {got})"
    return len(seen), ""


def _raw_manifest(skopeo: str, ref: ImageRef, insecure: bool, authfile: AuthFile | None) -> bytes:
    argv = [skopeo, "inspect", "--raw", "--retry-times", "3"]
    if insecure:
        argv.append("--tls-verify=false")
    if authfile:
        argv += ["--authfile", str(authfile.path)]
    argv.append(str(ref))
    try:
        return run_tool(
            argv,
            timeout=INSPECT_TIMEOUT_S,
            secrets=_secrets(authfile),
            what=f"skopeo inspect {ref}",
        )
    except CloudError as exc:
        if ref.is_registry and is_unreachable(exc.message):
            raise unreachable(ref.host or "", exc.message) from None
        raise


def _children(raw: bytes) -> list[str]:
    """Digests of the platform manifests of an index, [] for a single manifest."""
    if media_type_of(raw) not in INDEX_TYPES:
        return []
    doc = json.loads(raw)
    return [m["digest"] for m in doc.get("manifests", []) if isinstance(m, dict) and "digest" in m]


def _sha256(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _secrets(authfile: AuthFile | None) -> tuple[str, ...]:
    return authfile.secrets if authfile else ()
