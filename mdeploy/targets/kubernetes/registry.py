"""
Where Kubernetes (and CoreWeave) pulls the image from: any OCI registry.

The login is the generic one every target shares (`mdeploy.targets.registry`: the
MDEPLOY_REGISTRY_* variables, else the auth file a `podman login` wrote); what is Kubernetes'
own is the repository naming a cluster pulls from.
"""

from __future__ import annotations

import re

from mdeploy.errors import InputError
from mdeploy.targets.registry import Credentials, registry_credentials, registry_host

__all__ = ["Credentials", "registry_credentials", "registry_host", "repository_for"]

_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_PATH = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


def repository_for(registry: str, name: str, *, namespace: str | None = None) -> str:
    """
    The repository a cluster pulls from, e.g. `registry.example.com/ml/vllm`.

    >>> repository_for("registry.example.com", "vllm", namespace="ml")
    'registry.example.com/ml/vllm'
    """
    if not _HOST.match(registry):
        raise InputError(f"registry {registry!r}: expected host or host:port")
    path = f"{namespace}/{name}" if namespace else name
    if not _PATH.match(path):
        raise InputError(
            f"repository {path!r}: lowercase letters, digits and . _ - separators only"
        )
    return f"{registry}/{path}"
