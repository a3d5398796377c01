"""
Registry logins every target shares: the `Credentials` value, the registry host of a
reference, the containers auth file (auth.json) lookup, and the generic login any OCI
registry takes. Each cloud's own `targets/<cloud>/registry.py` adds its token exchange on top.

Generic credentials come from the environment
(`MDEPLOY_REGISTRY_USER` / `MDEPLOY_REGISTRY_PASSWORD`: for the host `MDEPLOY_REGISTRY_HOST`
names, or without it for every registry except the public ones images are pulled from, so a
private login never reaches docker.io or ghcr.io) or from an auth file a `podman login` /
`skopeo login` / `docker login` already wrote. Nothing here writes files or talks to the
network.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Credentials",
    "auth_file_candidates",
    "default_auth_file",
    "read_auth_file",
    "registry_credentials",
    "registry_host",
]

ENV_USER = "MDEPLOY_REGISTRY_USER"
ENV_PASSWORD = "MDEPLOY_REGISTRY_PASSWORD"  # the variable name, not a value
ENV_HOST = "MDEPLOY_REGISTRY_HOST"
# Public registries images are pulled from: a private login must never be sent there unless
# MDEPLOY_REGISTRY_HOST names one explicitly.
PUBLIC_REGISTRIES = frozenset(
    {
        "docker.io",
        "registry-1.docker.io",
        "index.docker.io",
        "ghcr.io",
        "quay.io",
        "nvcr.io",
        "registry.k8s.io",
        "mcr.microsoft.com",
        "public.ecr.aws",
    }
)


@dataclass(frozen=True)
class Credentials:
    """A registry login. The password is never shown by repr or str."""

    username: str
    password: str = field(repr=False)
    source: str = ""  # where it came from, e.g. "ecr get-authorization-token"; never the value

    def __str__(self) -> str:
        return f"Credentials(username={self.username!r}, source={self.source!r})"

    def auth_entry(self) -> dict[str, str]:
        """The auth.json entry for this login (`{"auth": base64(user:password)}`)."""
        token = f"{self.username}:{self.password}".encode()
        return {"auth": base64.b64encode(token).decode()}


def registry_host(ref: str) -> str:
    """Registry host[:port] of a plain or docker:// reference (docker.io when there is none)."""
    body = ref.removeprefix("docker://")
    first, sep, _ = body.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def registry_credentials(
    ref: str, *, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """
    Login for the registry of `ref`: the MDEPLOY_REGISTRY_* variables, else the auth file.

    Returns None when neither has one (skopeo then tries anonymous access).
    """
    env = os.environ if environ is None else environ
    host = registry_host(ref)
    user, password = env.get(ENV_USER), env.get(ENV_PASSWORD)
    scoped = env.get(ENV_HOST)
    applies = scoped == host if scoped else host not in PUBLIC_REGISTRIES
    if user and password and applies:
        return Credentials(user, password, source=f"{ENV_USER}/{ENV_PASSWORD}")
    path = default_auth_file(env)
    if path is None:
        return None
    entry = read_auth_file(path).get("auths", {}).get(host, {})
    return _decode_entry(entry, source=str(path))


def auth_file_candidates(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Auth files in the order containers/image reads them (REGISTRY_AUTH_FILE first)."""
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    paths: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    paths.append(home / ".config" / "containers" / "auth.json")
    paths.append(Path(env.get("DOCKER_CONFIG") or home / ".docker") / "config.json")
    return paths


def default_auth_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The first existing auth file, or None."""
    return next((p for p in auth_file_candidates(environ) if p.is_file()), None)


def read_auth_file(path: Path) -> dict[str, Any]:
    """Parse an auth.json / docker config.json; an unreadable file counts as empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _decode_entry(entry: Any, *, source: str) -> Credentials | None:
    if not isinstance(entry, dict) or not entry.get("auth"):
        return None  # absent, or held by a credential helper skopeo will call itself
    try:
        user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, TypeError):
        return None
    return Credentials(user, password, source=source) if sep and user else None
