"""
Kubernetes manifests from a synthesized graph: what `synth --out` writes for this target
(through `KubernetesTarget.write_artifacts`).

The kubernetes provider's inputs *are* the objects it applies (apiVersion, kind, metadata,
spec), so a manifest is a recorded resource's masked inputs. Secret data stays "[secret]": the
files are for review, schema validation and security scans, not for `kubectl apply`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["APPLY_ORDER", "manifests", "write_manifests"]

# Kinds in the order a cluster needs them (the order Helm installs kinds in).
APPLY_ORDER = (
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Ingress",
)


def manifests(graph: dict[str, Any]) -> list[dict[str, Any]]:
    """The Kubernetes objects of a synth graph, in apply order (unknown kinds last)."""
    objects = [
        r["inputs"]
        for r in graph["resources"]
        if r["type"].startswith("kubernetes:") and r["inputs"].get("kind")
    ]

    def rank(obj: dict[str, Any]) -> tuple[int, str]:
        kind = obj["kind"]
        pos = APPLY_ORDER.index(kind) if kind in APPLY_ORDER else len(APPLY_ORDER)
        return pos, str(obj.get("metadata", {}).get("name", ""))

    return sorted(objects, key=rank)


def write_manifests(graph: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write one YAML file per object, numbered in apply order; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, obj in enumerate(manifests(graph), start=1):
        name = _slug(str(obj.get("metadata", {}).get("name", "object")))
        path = out_dir / f"{i:02d}-{obj['kind'].lower()}-{name}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))
        paths.append(path)
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-") or "object"
