"""
Registry logins for skopeo and buildah: pick the cloud from the host, hand over a 0600 file.

The provider is chosen by the registry host: the target whose `registry_hosts` patterns match
it (the registry of targets, `mdeploy.targets`), else the one with the generic OCI login. Its
`registry_credentials(ref)` is imported only when a reference on that host is used.

Credentials reach the tools only through a temporary auth.json (mode 0600, in a 0700
directory, deleted on exit), merged over the user's own auth file so existing logins and
credential helpers keep working. They never appear in an argv, a log line or an error.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdeploy.image.refs import ImageRef

if TYPE_CHECKING:
    from mdeploy.targets.registry import Credentials

__all__ = ["AuthFile", "Resolver", "credentials_for", "provider_for", "registry_authfile"]

Resolver = Callable[[ImageRef], "Credentials | None"]


class AuthFile:
    """A temporary auth.json and the secrets in it (for masking tool output)."""

    def __init__(self, path: Path, secrets: tuple[str, ...]) -> None:
        self.path = path
        self.secrets = secrets

    def __repr__(self) -> str:
        return f"AuthFile({str(self.path)!r}, secrets=[{len(self.secrets)} hidden])"


def provider_for(host: str) -> str | None:
    """Which target's registry module logs in to `host` (None: only the generic login)."""
    from mdeploy.targets import registry_provider

    return registry_provider(host)


def credentials_for(ref: ImageRef) -> Credentials | None:
    """Credentials for a docker:// reference from its provider; None for local transports."""
    if not ref.is_registry or ref.host is None:
        return None
    provider = provider_for(ref.host)
    where = f"mdeploy.targets.{provider}.registry" if provider else "mdeploy.targets.registry"
    return importlib.import_module(where).registry_credentials(ref.name)


@contextmanager
def registry_authfile(
    refs: Iterable[ImageRef], *, resolver: Resolver | None = None
) -> Iterator[AuthFile | None]:
    """
    Yield a temporary auth file holding a login for each registry host in `refs`.

    Yields None when no host needs one, so the tools keep their own defaults. The file is
    created 0600 inside a fresh 0700 directory and removed when the block exits.
    """
    resolve = resolver or credentials_for
    logins: dict[str, Credentials] = {}
    for ref in refs:
        if ref.is_registry and ref.host and ref.host not in logins:
            creds = resolve(ref)
            if creds is not None:
                logins[ref.host] = creds
    if not logins:
        yield None
        return
    workdir = Path(tempfile.mkdtemp(prefix="mdeploy-auth-"))  # mkdtemp makes it 0700
    try:
        path = workdir / "auth.json"
        _write_private(path, _merged_auth(logins))
        yield AuthFile(path, tuple(c.password for c in logins.values()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _merged_auth(logins: dict[str, Credentials]) -> dict[str, Any]:
    from mdeploy.targets.registry import default_auth_file, read_auth_file

    existing = default_auth_file()
    data: dict[str, Any] = read_auth_file(existing) if existing else {}
    auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
    data["auths"] = {**auths, **{host: c.auth_entry() for host, c in logins.items()}}
    helpers = data.get("credHelpers")
    if isinstance(helpers, dict):  # a helper would win over our entry for that host
        data["credHelpers"] = {h: v for h, v in helpers.items() if h not in logins}
    return data


def _write_private(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
