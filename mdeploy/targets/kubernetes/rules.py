"""
The Kubernetes rules: kubeconfig files and contexts, the secret kinds a cluster can read.

Light module: no Pulumi or Kubernetes client at import; kubeconfig files are read, no API
call is made.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mdeploy.targets.base import unloadable_source

if TYPE_CHECKING:
    from mdeploy.spec.models import Deployment

__all__ = [
    "NATIVE_REFS",
    "check_context",
    "kube_contexts",
    "kubeconfig_paths",
    "merged_kubeconfig",
    "unsupported",
]

# What a pod can read itself; any other reference is another cloud's secret manager, whichever
# target declares it (so a fifth cloud's scheme is refused here too, not only at `up`).
NATIVE_REFS = ("k8s:", "env:", "file:")


def kubeconfig_paths(environ: dict[str, str] | None = None) -> list[Path]:
    """The kubeconfig files kubectl would read: $KUBECONFIG (path list) or ~/.kube/config."""
    env = os.environ if environ is None else environ
    raw = env.get("KUBECONFIG", "")
    if raw:
        return [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
    return [Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"]


def merged_kubeconfig(paths: list[Path]) -> dict[str, Any]:
    """Contexts, clusters and users of every file; the first definition of a name wins."""
    merged: dict[str, Any] = {"contexts": {}, "clusters": {}, "users": {}, "current-context": None}
    for path in paths:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict):
            continue
        base = path.parent
        for kind, inner in (("contexts", "context"), ("clusters", "cluster"), ("users", "user")):
            for entry in doc.get(kind) or []:
                if isinstance(entry, dict) and entry.get("name") not in merged[kind]:
                    merged[kind][entry.get("name")] = {**(entry.get(inner) or {}), "_base": base}
        merged["current-context"] = merged["current-context"] or doc.get("current-context")
    return merged


def kube_contexts(paths: list[Path]) -> tuple[set[str], str | None]:
    """Context names defined across `paths`, and the first current-context found."""
    merged = merged_kubeconfig(paths)
    return set(merged["contexts"]) - {None}, merged["current-context"] or None


def check_context(context: str | None = None) -> tuple[bool, str]:
    """Whether a kubeconfig defines `context` (or a current context); files only, no API."""
    paths = kubeconfig_paths()
    existing = [p for p in paths if p.is_file()]
    if not existing:
        return False, f"no kubeconfig at {', '.join(str(p) for p in paths)}"
    names, current = kube_contexts(existing)
    wanted = context or current
    if not wanted:
        return False, "the kubeconfig sets no current-context"
    if wanted not in names:
        return False, f"kube context {wanted!r} is not in {', '.join(map(str, existing))}"
    return True, f"kube context {wanted!r}"


def unsupported(spec: Deployment) -> dict[str, str]:
    out = {}
    for var, ref in spec.serving.secrets.items():
        if not ref.startswith(NATIVE_REFS):
            out[f"serving.secrets.{var}"] = (
                "cloud secret managers are not read by the cluster; use k8s:SECRET/KEY "
                "(e.g. synced by External Secrets Operator), env:NAME or file:PATH"
            )
    # The image's boot step (mdeploy/serve/boot.py) fetches hf://, s3:// and gs:// only; any
    # other scheme stops the container at start, so the pod would only crash-loop.
    if scheme := unloadable_source(spec, ("hf", "s3", "gs")):
        out["model.source"] = (
            f"{scheme}:// weights are not downloaded by the image; use hf://, s3:// or gs://, "
            "or leave model.source out (the engine downloads model.id from the Hub)"
        )
    return out
