"""
`up`'s pre-flight: what must hold before anything is created, each failure with its fix.

In order (the secret references were already checked by `prepare`, for every target alike):
1. quota: the target's `quota_problem(args)` (exit 3 with the quota and how to ask for more);
   a quota service that cannot be asked is a warning ("quota unknown"), or exit 3 with
   `--strict-quota`;
2. the image: with `serving.image` unset, `up` builds and pushes it when a repository is
   configured (`-c mdeploy:imageRepository=HOST/REPO`, or the Kubernetes `mdeploy:registry`),
   else exit 3 with the exact `mdeploy image build --push` line. A tag is resolved to its
   digest here, so every target deploys `repo@sha256:…` and never a tag that may move; a
   target that declares `accepted_manifest_types` (SageMaker) refuses another media type
   with exit 4, before the registry or the endpoint exist.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from mdeploy.deploy.prereqs import check_placement
from mdeploy.errors import CloudError, PolicyError, PrerequisiteError

if TYPE_CHECKING:
    from mdeploy.deploy.operation import Operation
    from mdeploy.image.refs import ImageRef

__all__ = ["IMAGE_REPOSITORY_KEY", "check_quota", "pin_image", "preflight"]

IMAGE_REPOSITORY_KEY = "mdeploy:imageRepository"
Warn = Callable[[str], None]


def preflight(op: Operation, *, strict_quota: bool = False, warn: Warn) -> None:
    """Placement, quota, then the image; on success `op.resolved.args.image` is a digest."""
    check_placement(op.target, op.resolved.args)
    check_quota(op, strict=strict_quota, warn=warn)
    image = pin_image(op)
    op.resolved = replace(op.resolved, args=replace(op.resolved.args, image=image))


def check_quota(op: Operation, *, strict: bool, warn: Warn) -> None:
    """Exit 3 when the target's quota is too small; 'unknown' warns unless `strict`."""
    try:
        problem = op.target.quota_problem(op.resolved.args)
    except CloudError as exc:
        if strict:
            raise PrerequisiteError(
                f"quota unknown: {exc.message}",
                hint="let the deployer read the cloud's quotas, or drop --strict-quota",
            ) from None
        warn(f"quota unknown ({exc.message}); deploying anyway (--strict-quota refuses)")
        return
    if problem is not None:
        raise PrerequisiteError(problem.message(), hint=f"request more: {problem.request_hint}")


def pin_image(op: Operation) -> str:
    """The image to deploy as `host/repo@sha256:…`, built first when the spec names none."""
    from mdeploy.image.refs import parse_ref

    declared = op.loaded.spec.serving.image
    media_type = None
    if declared:
        ref = parse_ref(declared)
    else:
        ref, media_type = _build_and_push(op)
    if not ref.is_registry:
        raise PrerequisiteError(
            f"serving.image {declared}: a {ref.transport}: image cannot be pulled by a cloud",
            hint="push it to a registry (`mdeploy image replicate`) and name that reference",
        )
    accepted = op.target.accepted_manifest_types
    if ref.digest and (media_type or not accepted):
        _check_media_type(op, str(ref), media_type)
        return str(ref.with_digest(ref.digest)).removeprefix("docker://")
    digest, media_type = _inspect(op, str(ref))
    if ref.digest and digest != ref.digest:
        raise CloudError(f"{ref} serves {digest}, not the digest it names")
    _check_media_type(op, str(ref), media_type)
    return str(ref.with_digest(digest)).removeprefix("docker://")


def _inspect(op: Operation, ref: str) -> tuple[str, str]:
    """(digest, media type) of `ref`, read from its registry; unreachable is exit 3."""
    import importlib

    replicate_mod = importlib.import_module("mdeploy.image.replicate")  # not the function
    try:
        return replicate_mod.inspect_image(ref)
    except CloudError as exc:
        raise PrerequisiteError(
            f"serving.image {ref} cannot be read from its registry: {exc.message}",
            hint="push the image there first (or log in), or set serving.image to "
            f"REPO@sha256:DIGEST; the image `mdeploy up` deploys to {op.target.name} is "
            "always pinned by digest",
        ) from None


def _check_media_type(op: Operation, ref: str, media_type: str | None) -> None:
    accepted = op.target.accepted_manifest_types
    if not accepted or media_type is None or media_type in accepted:
        return
    raise PolicyError(
        f"serving.image {ref}: {op.target.display_name} refuses manifest media type "
        f"{media_type} (it accepts {', '.join(accepted)})",
        hint="rebuild and push with `mdeploy image build --push REPO:TAG` (Docker v2 schema "
        "2), or convert: `skopeo copy --format v2s2 SRC DEST` (a new digest), then set "
        "serving.image to the new REPO@sha256:DIGEST",
    )


def _build_and_push(op: Operation) -> tuple[ImageRef, str | None]:
    """`serving.image: null`: build and push to the configured repository, or say how."""
    from mdeploy.image import BuildRequest, ImageLabels, build_image
    from mdeploy.image.refs import parse_ref

    config = op.extra_config
    keys = (IMAGE_REPOSITORY_KEY, *op.target.build_repository_keys)
    repository = next((config[key] for key in keys if config.get(key)), None)
    loaded = op.loaded
    if not repository:
        env = f" --env {shlex.quote(loaded.env)}" if loaded.env else ""
        spec = shlex.quote(str(loaded.path))
        raise PrerequisiteError(
            "serving.image is not set and no repository is configured to push a build to",
            hint=f"run `mdeploy image build --spec {spec}{env} --push REGISTRY/REPO:TAG` and "
            "set serving.image to the REGISTRY/REPO@sha256:DIGEST it prints, or pass "
            f"-c {IMAGE_REPOSITORY_KEY}=REGISTRY/REPO to have up build and push it",
        )
    labels, strict = ImageLabels.from_spec(loaded.path, loaded.env)
    tag = f"{loaded.spec.metadata.name}-{loaded.env or 'default'}"
    result = build_image(BuildRequest(labels=labels, push=f"{repository}:{tag}", strict=strict))
    if not result.pushed_digest:
        raise CloudError(f"the build pushed to {repository} reported no digest")
    return parse_ref(f"{repository}@{result.pushed_digest}"), result.pushed_media_type
