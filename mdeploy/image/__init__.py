"""
The inference image: build it (buildah, podman or docker), ship it by digest (skopeo) and
verify every copy. Light to import: the standard library only; container tools run as
subprocesses and cloud SDKs load only when a registry on that cloud needs a login.
"""

from mdeploy.image.auth import credentials_for, provider_for, registry_authfile
from mdeploy.image.build import (
    BuildRequest,
    BuildResult,
    ImageLabels,
    build_image,
    detect_tool,
)
from mdeploy.image.context import assemble_context, default_base_image
from mdeploy.image.refs import ImageRef, parse_ref
from mdeploy.image.replicate import (
    CopyResult,
    DigestMismatchError,
    ReplicationResult,
    Verification,
    manifest_digest,
    replicate,
    verify_image,
)

__all__ = [
    "BuildRequest",
    "BuildResult",
    "CopyResult",
    "DigestMismatchError",
    "ImageLabels",
    "ImageRef",
    "ReplicationResult",
    "Verification",
    "assemble_context",
    "build_image",
    "credentials_for",
    "default_base_image",
    "detect_tool",
    "manifest_digest",
    "parse_ref",
    "provider_for",
    "registry_authfile",
    "replicate",
    "verify_image",
]
