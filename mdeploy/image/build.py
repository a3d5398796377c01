"""
Build the inference image with buildah, podman or docker, reproducibly, and report its digest.

The tool is the first of buildah, podman, docker found on PATH (or the one asked for);
none is a PrerequisiteError (exit 3) saying how to install one. The context comes from the
installed package (`mdeploy.image.context`), the base is pinned by digest, and the build is
reproducible where the tool allows it: buildah/podman `--timestamp SOURCE_DATE_EPOCH`
(default 0) and no builder-version label, so the same sources give the same image digest.
buildah runs with `--isolation chroot` by default, which needs no daemon and no user
namespaces (CI containers). With `push`, the image is pushed and the registry's manifest
digest is reported (the digest to deploy; it differs from the local one, because layers
are compressed on the way), with its media type as the registry serves it: always Docker
v2 schema 2 (`--format v2s2`), the one manifest type every cloud registry and SageMaker
accept (see `mdeploy.image.manifests`).

Credentials for the base's registry and the push target come from `mdeploy.image.auth`
(a temporary 0600 auth file), never from an argv.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mdeploy import __version__
from mdeploy.errors import CloudError, InputError, MdeployError, PolicyError, PrerequisiteError
from mdeploy.image._tools import INSTALL_HINTS, require_tool, run_tool
from mdeploy.image.auth import AuthFile, Resolver, registry_authfile
from mdeploy.image.context import assemble_context, default_base_image
from mdeploy.image.refs import DIGEST_RE, ImageRef, parse_ref

__all__ = [
    "DEFAULT_TAG",
    "TOOLS",
    "BuildRequest",
    "BuildResult",
    "ImageLabels",
    "build_argv",
    "build_image",
    "detect_tool",
]

TOOLS = ("buildah", "podman", "docker")
DEFAULT_TAG = f"localhost/mdeploy-vllm:{__version__}"
BUILD_TIMEOUT_S = 7200.0
PUSH_TIMEOUT_S = 3600.0
INSPECT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ImageLabels:
    """What the image says it serves: model id and revision, and the spec's hash."""

    model_id: str = ""
    model_revision: str = ""
    spec_hash: str = ""

    @classmethod
    def from_spec(cls, path: Path, env: str | None = None) -> tuple[ImageLabels, bool]:
        """Labels from a spec file, and whether prod guardrails apply to it."""
        from mdeploy.spec import load_spec, spec_hash

        loaded = load_spec(path, env=env)
        model = loaded.spec.model
        return cls(_model_id(loaded), model.revision, spec_hash(loaded)), loaded.strict


@dataclass(frozen=True)
class BuildRequest:
    """One build; every field has a working default."""

    tag: str = DEFAULT_TAG
    base: str | None = None  # None: the Dockerfile's pinned default
    tool: str | None = None  # None: the first of TOOLS on PATH
    isolation: str = "chroot"  # buildah/podman --isolation
    labels: ImageLabels = field(default_factory=ImageLabels)
    push: str | None = None  # registry reference to push to after the build
    insecure: bool = False  # plain HTTP / unverified TLS for the base pull and the push
    source_date_epoch: int | None = None  # None: $SOURCE_DATE_EPOCH, else 0
    strict: bool = False  # prod: the base must be pinned by digest
    timeout: float = BUILD_TIMEOUT_S


@dataclass(frozen=True)
class BuildResult:
    """What was built: the `image build --json` document."""

    tool: str
    tag: str
    image_id: str
    digest: str | None  # local manifest digest (buildah/podman); None for docker
    base: str
    labels: dict[str, str]  # as the tool reads them back from the built image
    pushed: str | None = None  # REF as pushed
    pushed_digest: str | None = None  # the registry's manifest digest
    pushed_media_type: str | None = None  # as the registry serves it (None: not read back)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        push = None
        if self.pushed:
            push = {
                "ref": self.pushed,
                "digest": self.pushed_digest,
                "media_type": self.pushed_media_type,
            }
        return {
            "tool": self.tool,
            "tag": self.tag,
            "image_id": self.image_id,
            "digest": self.digest,
            "base": self.base,
            "labels": self.labels,
            "pushed": push,
            "seconds": round(self.seconds, 2),
        }


def _model_id(loaded: Any) -> str:
    """The catalog's canonical id for an alias (what the container serves), else the spec's."""
    from mdeploy.catalog import resolve_model

    try:
        return resolve_model(loaded.spec.model, base_dir=loaded.base_dir).id
    except MdeployError:  # an unknown model: labelled as written; plan refuses it anyway
        return str(loaded.spec.model.id)


def detect_tool(preferred: str | None = None) -> tuple[str, str]:
    """(name, path) of the build tool: `preferred`, else the first of buildah, podman, docker."""
    if preferred is not None:
        if preferred not in TOOLS:
            raise InputError(f"--tool {preferred!r}: expected one of {', '.join(TOOLS)}")
        return preferred, require_tool(preferred)
    for name in TOOLS:
        found = shutil.which(name)
        if found:
            return name, found
    raise PrerequisiteError(
        "no container build tool found on PATH (looked for buildah, podman, docker)",
        hint=INSTALL_HINTS["buildah"],
    )


def build_image(request: BuildRequest, *, auth: Resolver | None = None) -> BuildResult:
    """Assemble the context, build, optionally push; return ids and digests."""
    base = request.base or default_base_image()
    base_ref = _checked_base(base, strict=request.strict)
    push_ref = parse_ref(request.push) if request.push else None
    if push_ref is not None and not push_ref.is_registry:
        raise InputError(f"--push {request.push}: expected a registry reference")
    name, path = detect_tool(request.tool)
    epoch = _epoch(request.source_date_epoch)
    labels = _label_args(request.labels, base, epoch)
    started = time.monotonic()
    refs = [base_ref] if push_ref is None else [base_ref, push_ref]
    with (
        tempfile.TemporaryDirectory(prefix="mdeploy-build-") as tmp,
        registry_authfile(refs, resolver=auth) as authfile,
    ):
        context = assemble_context(Path(tmp) / "context", mtime=epoch)
        iidfile = Path(tmp) / "iid"
        argv = build_argv(name, path, request, base, labels, epoch, context, iidfile, authfile)
        run_tool(argv, timeout=request.timeout, secrets=_secrets(authfile), what=f"{name} build")
        image_id = iidfile.read_text().strip()
        digest, labels_found = _inspect(name, path, image_id)
        pushed_digest = media_type = None
        if push_ref is not None:
            pushed_digest = _push(name, path, request, image_id, push_ref, Path(tmp), authfile)
            media_type = _pushed_media_type(push_ref, pushed_digest, request.insecure, authfile)
    return BuildResult(
        tool=name,
        tag=request.tag,
        image_id=image_id,
        digest=digest,
        base=base,
        labels=labels_found,
        pushed=str(push_ref) if push_ref else None,
        pushed_digest=pushed_digest,
        pushed_media_type=media_type,
        seconds=time.monotonic() - started,
    )


def build_argv(
    name: str,
    path: str,
    request: BuildRequest,
    base: str,
    build_args: list[str],
    epoch: int,
    context: Path,
    iidfile: Path,
    authfile: AuthFile | None,
) -> list[str]:
    """The build command line for `name` (pure; no secret ever appears in it)."""
    argv = [path, "build", "--file", str(context / "Dockerfile"), "--tag", request.tag]
    argv += ["--iidfile", str(iidfile), "--build-arg", f"BASE_IMAGE={base}", *build_args]
    if name in ("buildah", "podman"):
        # OCI locally: buildah's docker-format config records the build container's id and
        # hostname, so no two builds would match. The push converts to Docker v2 schema 2
        # (deterministic: same image, same pushed digest), which SageMaker requires.
        argv += ["--timestamp", str(epoch), "--format", "oci"]
        argv += ["--pull=false" if name == "buildah" else "--pull=missing"]
        if request.isolation:
            argv += ["--isolation", request.isolation]
        if request.insecure:
            argv.append("--tls-verify=false")
        if authfile:
            argv += ["--authfile", str(authfile.path)]
        if name == "buildah":
            argv.append("--identity-label=false")
    else:
        argv += ["--build-arg", f"SOURCE_DATE_EPOCH={epoch}"]
    argv.append(str(context))
    return argv


def _checked_base(base: str, *, strict: bool) -> ImageRef:
    ref = parse_ref(base)
    if ref.transport != "docker":
        raise InputError(
            f"--base {base}: expected a registry reference (FROM cannot use {ref.transport}:)"
        )
    if strict and not ref.digest:
        raise PolicyError(
            f"prod refuses a base image without a digest: {base}",
            hint="pin it, e.g. --base docker.io/vllm/vllm-openai@sha256:<digest>",
        )
    return ref


def _epoch(value: int | None) -> int:
    if value is not None:
        return value
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise InputError(f"SOURCE_DATE_EPOCH={raw!r} is not a number of seconds")
    return int(raw)


def _build_args(labels: ImageLabels, base: str, epoch: int) -> dict[str, str]:
    """The build arguments the Dockerfile turns into labels, by name."""
    created = datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "MDEPLOY_VERSION": __version__,
        "MODEL_ID": labels.model_id,
        "MODEL_REVISION": labels.model_revision,
        "SPEC_HASH": labels.spec_hash,
        "IMAGE_CREATED": created,
        "BASE_IMAGE": base,
    }


def _label_args(labels: ImageLabels, base: str, epoch: int) -> list[str]:
    args: list[str] = []
    for key, value in _build_args(labels, base, epoch).items():
        if key != "BASE_IMAGE":
            args += ["--build-arg", f"{key}={value}"]
    return args


def _inspect(name: str, path: str, image_id: str) -> tuple[str | None, dict[str, str]]:
    """(local manifest digest or None, labels) of a built image, as the tool reports them."""
    if name == "buildah":
        argv = [path, "inspect", "--type", "image", image_id]
    else:
        argv = [path, "image", "inspect", image_id]
    out = run_tool(argv, timeout=INSPECT_TIMEOUT_S, what=f"{name} inspect")
    try:
        doc = json.loads(out)
        doc = doc[0] if isinstance(doc, list) else doc
        if name == "buildah":
            digest, labels = doc.get("FromImageDigest"), doc["OCIv1"]["config"].get("Labels")
        elif name == "podman":
            digest, labels = doc.get("Digest"), doc.get("Labels")
        else:  # docker knows a manifest digest only once pushed
            digest, labels = None, doc["Config"].get("Labels")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise CloudError(f"{name} inspect {image_id} returned an unexpected document") from None
    found = digest if isinstance(digest, str) and DIGEST_RE.match(digest) else None
    return found, dict(labels or {})


def _push(
    name: str,
    path: str,
    request: BuildRequest,
    image_id: str,
    ref: ImageRef,
    tmp: Path,
    authfile: AuthFile | None,
) -> str:
    target = str(ref).removeprefix("docker://")
    if name == "docker":
        # docker reads only its own logins (`docker login`), not an auth file.
        run_tool([path, "tag", image_id, target], timeout=INSPECT_TIMEOUT_S, what="docker tag")
        run_tool([path, "push", target], timeout=PUSH_TIMEOUT_S, what="docker push")
        return _docker_repo_digest(path, target, ref)
    digestfile = tmp / "digest"
    argv = [path, "push", "--digestfile", str(digestfile), "--format", "v2s2"]
    if request.insecure:
        argv.append("--tls-verify=false")
    if authfile:
        argv += ["--authfile", str(authfile.path)]
    argv += [image_id, str(ref)]
    run_tool(argv, timeout=PUSH_TIMEOUT_S, secrets=_secrets(authfile), what=f"{name} push")
    digest = digestfile.read_text().strip()
    if not DIGEST_RE.match(digest):
        raise CloudError(f"{name} push to {ref} reported no digest")
    return digest


def _pushed_media_type(
    ref: ImageRef, digest: str, insecure: bool, authfile: AuthFile | None
) -> str | None:
    """
    The media type the registry serves for the pushed digest (skopeo reads it back).

    None when skopeo is not installed. A registry serving other bytes under the digest
    is a CloudError: what was pushed is not what a cloud would pull.
    """
    if shutil.which("skopeo") is None:
        return None
    from mdeploy.image.replicate import read_manifest

    found, media_type = read_manifest(ref.with_digest(digest), insecure=insecure, authfile=authfile)
    if found != digest:
        raise CloudError(f"{ref} serves {found} under {digest} after the push")
    return media_type


def _docker_repo_digest(path: str, target: str, ref: ImageRef) -> str:
    fmt = "{{range .RepoDigests}}{{println .}}{{end}}"
    out = run_tool([path, "image", "inspect", "--format", fmt, target], timeout=INSPECT_TIMEOUT_S)
    for line in out.decode().split():
        repo, _, digest = line.partition("@")
        if DIGEST_RE.match(digest) and parse_ref(repo).name == ref.name:
            return digest
    raise CloudError(f"docker push to {target} left no repo digest to report")


def _secrets(authfile: AuthFile | None) -> tuple[str, ...]:
    return authfile.secrets if authfile else ()
