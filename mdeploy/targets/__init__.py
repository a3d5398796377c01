"""
Deployment targets, one folder each: aws/, azure/, gcp/, kubernetes/.

`get_target(name)` imports only the chosen target's light module; Pulumi and SDKs load later.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from mdeploy.errors import InputError

if TYPE_CHECKING:
    from mdeploy.spec.models import Deployment
    from mdeploy.targets.base import Target

__all__ = ["TARGET_NAMES", "blocked_targets", "deploy_target_for", "get_target"]

TARGET_NAMES = ("aws", "azure", "gcp", "kubernetes")
# Catalog / placement targets → the deploy target that provisions them.
_DEPLOYED_BY = {
    "aws": "aws",
    "azure": "azure",
    "gcp": "gcp",
    "coreweave": "kubernetes",
    "kubernetes": "kubernetes",
}


def deploy_target_for(placement_target: str) -> str:
    """Map a catalog target (coreweave) to the folder that deploys it (kubernetes)."""
    try:
        return _DEPLOYED_BY[placement_target]
    except KeyError:
        raise InputError(
            f"unknown target {placement_target!r}",
            hint=f"use one of: {', '.join(sorted(_DEPLOYED_BY))}",
        ) from None


def get_target(name: str) -> Target:
    """Return the Target for a catalog or deploy target name (coreweave → kubernetes)."""
    folder = deploy_target_for(name)
    module = import_module(f"mdeploy.targets.{folder}.target")
    return module.TARGET


def blocked_targets(spec: Deployment) -> dict[str, str]:
    """
    Placement targets of the spec that cannot deploy it, each with the first reason and fix.

    Fed to the planner so it never chooses an offer on a cloud that would refuse the spec
    at `up` (a secret kind that cloud cannot read, auth it cannot switch off, ...).
    """
    blocked = {}
    for name in spec.placement.clouds:
        problems = get_target(name).unsupported(spec)
        if problems:
            field, why = sorted(problems.items())[0]
            blocked[name] = f"{field}: {why}"
    return blocked
