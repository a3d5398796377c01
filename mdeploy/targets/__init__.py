"""
Deployment targets, one folder each, and the registry that finds them.

A target is a folder `targets/<name>/` with a `target.py` that defines `TARGET`, an instance
of a `Target` subclass (see docs/adding-a-target.md). The registry finds the folders by a
scan (no entry points, no import of any SDK) and imports only the light `target.py` modules,
so listing targets stays cheap; Pulumi and cloud SDKs load later, in the methods that need
them. Every list the core used to hand-write (target names, extras, registry hosts, output
names, plugin packages, fake outputs for offline synth, help text) is derived from here.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from mdeploy.errors import InputError
from mdeploy.target_names import placement_names, target_folders

if TYPE_CHECKING:
    from mdeploy.spec.models import Deployment
    from mdeploy.targets.base import Target

__all__ = [
    "TARGET_NAMES",
    "all_targets",
    "blocked_targets",
    "deploy_target_for",
    "extras_for_modules",
    "fake_call",
    "fake_outputs",
    "get_target",
    "output_names",
    "placement_names",
    "refresh",
    "registry_provider",
    "stack_region",
    "target_names",
]

# The outputs every component exports; each target adds what its day-2 client reads back.
COMMON_OUTPUTS = ("endpoint_name", "endpoint_url", "image", "repository_url")


def target_names() -> tuple[str, ...]:
    """The deploy target folders, sorted (aws, azure, gcp, kubernetes, ...)."""
    return tuple(target_folders())


def __getattr__(name: str) -> Any:
    """`TARGET_NAMES`, computed from the scan when first read (kept for callers)."""
    if name == "TARGET_NAMES":
        return target_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def refresh() -> None:
    """Forget what the registry found (a test that adds a target folder calls this)."""
    from mdeploy import target_names as names

    names.clear_caches()
    _load.cache_clear()
    _deployed_by.cache_clear()


@lru_cache(maxsize=64)
def _load(folder: str) -> Target:
    return import_module(f"mdeploy.targets.{folder}.target").TARGET


def all_targets() -> tuple[Target, ...]:
    """Every registered Target, in name order (imports each light target.py)."""
    return tuple(_load(folder) for folder in target_names())


@lru_cache(maxsize=8)
def _deployed_by() -> dict[str, str]:
    """Catalog / placement target → the folder that deploys it (coreweave → kubernetes)."""
    return {
        placement: target.name for target in all_targets() for placement in target.catalog_targets
    }


def deploy_target_for(placement_target: str) -> str:
    """Map a catalog target (coreweave) to the folder that deploys it (kubernetes)."""
    try:
        return _deployed_by()[placement_target]
    except KeyError:
        raise InputError(
            f"unknown target {placement_target!r}",
            hint=f"use one of: {', '.join(placement_names())}",
        ) from None


def get_target(name: str) -> Target:
    """Return the Target for a catalog or deploy target name (coreweave → kubernetes)."""
    return _load(deploy_target_for(name))


def extras_for_modules() -> dict[str, str]:
    """Top-level Python module → the extra(s) that install it ("a|b" when several do)."""
    found: dict[str, list[str]] = {}
    for target in all_targets():
        for module in target.python_modules:
            found.setdefault(module, []).append(target.name)
    return {module: "|".join(sorted(names)) for module, names in found.items()}


def registry_provider(host: str) -> str | None:
    """The target whose `registry.py` logs in to `host`, else the generic one (None: none)."""
    name = host.lower()
    generic = None
    for target in all_targets():
        if any(re.match(pattern, name) for pattern in target.registry_hosts):
            return target.name
        if target.generic_registry:
            generic = target.name
    return generic


def stack_region(config: dict[str, str], default: str = "eu-west-3") -> str:
    """The region a stack's provider config names (`<plugin>:region`), for offline synth."""
    for target in all_targets():
        for plugin in target.pulumi_plugins:
            if config.get(f"{plugin}:region"):
                return config[f"{plugin}:region"]
    return default


def output_names() -> tuple[str, ...]:
    """Component attributes exported as stack outputs: the common four, then each target's."""
    names = list(COMMON_OUTPUTS)
    for target in all_targets():
        names.extend(n for n in target.output_names if n not in names)
    return tuple(names)


def fake_outputs(typ: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    """Plausible provider-computed outputs for an offline synth, from the owning target."""
    out = dict(inputs)
    for target in all_targets():
        for key, value in target.fake_outputs(typ, name, inputs, region).items():
            out.setdefault(key, value)
    return out


def fake_call(token: str, region: str) -> dict[str, Any]:
    """The answer to a provider function (getCallerIdentity, ...) in an offline synth."""
    for target in all_targets():
        answer = target.fake_call(token, region)
        if answer is not None:
            return answer
    return {}


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
