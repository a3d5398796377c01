"""
Image references as skopeo understands them, and the rules mdeploy applies to them.

A reference is either skopeo transport syntax (`docker://host/repo:tag`, `oci:DIR:TAG`,
`containers-storage:NAME`, ...) or a plain registry reference (`host/repo:tag`), which means
`docker://`. Only `docker://` references name a registry, so only they have a host to
authenticate against and a digest form (`host/repo@sha256:...`) to deploy.

Pure parsing: no I/O, no subprocess, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from mdeploy.errors import InputError, PolicyError

__all__ = [
    "DIGEST_RE",
    "ImageRef",
    "check_digest",
    "parse_ref",
    "require_pinned",
]

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

# Transports skopeo 1.9+ accepts, besides docker://, written as `<name>:<rest>`.
_TRANSPORTS = (
    "containers-storage",
    "dir",
    "docker-archive",
    "docker-daemon",
    "oci",
    "oci-archive",
    "ostree",
    "sif",
    "tarball",
)
_DOCKER_HUB = "docker.io"
_NAME_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ImageRef:
    """
    One parsed reference.

    >>> parse_ref("127.0.0.1:5000/m/vllm:1").transport, parse_ref("oci:/tmp/l:1").transport
    ('docker', 'oci')
    """

    transport: str  # docker, oci, containers-storage, dir, ...
    name: str  # docker: host/repository; other transports: the part after `<transport>:`
    tag: str | None = None  # docker only
    digest: str | None = None  # docker only

    @property
    def is_registry(self) -> bool:
        """Whether the reference points at a registry (the docker transport)."""
        return self.transport == "docker"

    @property
    def host(self) -> str | None:
        """Registry host[:port] of a docker reference, None for local transports."""
        return self.name.split("/", 1)[0] if self.is_registry else None

    @property
    def repository(self) -> str | None:
        """Repository path under the host, e.g. `team/vllm`."""
        return self.name.split("/", 1)[1] if self.is_registry else None

    @property
    def pinned(self) -> str | None:
        """`host/repo@sha256:...` when the digest is known: the form to deploy."""
        if self.is_registry and self.digest:
            return f"{self.name}@{self.digest}"
        return None

    def with_digest(self, digest: str) -> ImageRef:
        """The same image addressed by digest only (skopeo refuses tag and digest together)."""
        if not self.is_registry:
            return self
        return replace(self, tag=None, digest=check_digest(digest))

    def __str__(self) -> str:
        if not self.is_registry:
            return f"{self.transport}:{self.name}"
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return f"docker://{text}"


def parse_ref(text: str) -> ImageRef:
    """
    Parse skopeo transport syntax or a plain registry reference (which means docker://).

    Raises InputError when a registry reference is malformed.
    """
    raw = text.strip()
    if not raw:
        raise InputError("empty image reference")
    if raw.startswith("docker://"):
        return _parse_docker(raw[len("docker://") :], raw)
    transport, sep, rest = raw.partition(":")
    if sep and transport in _TRANSPORTS:
        if not rest:
            raise InputError(f"{raw!r}: nothing after the {transport}: transport")
        return ImageRef(transport=transport, name=rest)
    if "://" in raw:
        raise InputError(
            f"{raw!r}: unknown transport",
            hint="use docker://, oci:DIR:TAG, containers-storage:NAME or a plain host/repo:tag",
        )
    return _parse_docker(raw, raw)


def check_digest(digest: str) -> str:
    """Return `digest` when it is `sha256:` plus 64 lowercase hex digits, else InputError."""
    if not DIGEST_RE.match(digest):
        raise InputError(
            f"{digest!r} is not a sha256 digest",
            hint="write it as sha256: followed by 64 lowercase hex digits",
        )
    return digest


def require_pinned(refs: list[ImageRef], *, why: str) -> None:
    """Refuse (PolicyError, exit 4) any reference that is not addressed by digest."""
    mutable = [str(ref) for ref in refs if not ref.digest]
    if mutable:
        raise PolicyError(
            f"{why}: mutable reference(s) without a digest: {', '.join(mutable)}",
            hint="address each copy by digest, e.g. registry/repo@sha256:<digest> "
            "(the digest `mdeploy image replicate` prints for the source)",
        )


def _parse_docker(body: str, raw: str) -> ImageRef:
    name, digest = body, None
    if "@" in body:
        name, digest = body.split("@", 1)
        check_digest(digest)
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InputError(f"{raw!r}: invalid tag {tag!r}")
    name = _qualify(name, raw)
    return ImageRef(transport="docker", name=name, tag=tag, digest=digest)


def _qualify(name: str, raw: str) -> str:
    """Add docker.io (and library/) the way Docker resolves a short name; check the path."""
    first, sep, rest = name.partition("/")
    has_host = bool(sep) and ("." in first or ":" in first or first == "localhost")
    host, path = (first, rest) if has_host else (_DOCKER_HUB, name)
    if host == _DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    bad = [c for c in path.split("/") if not _NAME_COMPONENT.match(c)]
    if not path or bad:
        raise InputError(
            f"{raw!r}: invalid repository name",
            hint="repository components are lowercase letters, digits and . _ - separators",
        )
    return f"{host}/{path}"
