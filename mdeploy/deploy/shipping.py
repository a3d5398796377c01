"""
What a stack needs from outside Pulumi's own update: provider plugins and the image.

`install_plugins` installs each provider plugin at the version its installed Python SDK was
built for. `ship_image` is phase 1 of a two-phase `up`: only the target's registry
repository (and what it depends on) is created, then the image is copied there by digest,
so phase 2 deploys an image that already sits next to the endpoint.
"""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdeploy.deploy.engine_errors import last_line
from mdeploy.deploy.interrupts import guarded
from mdeploy.deploy.program import PROJECT, endpoint_program
from mdeploy.errors import PrerequisiteError
from mdeploy.targets.base import image_with_registry, repository_of

if TYPE_CHECKING:
    from mdeploy.deploy.operation import Operation
    from mdeploy.deploy.progress import Progress
    from mdeploy.targets.base import Target

__all__ = ["install_plugins", "plugin_version", "ship_image"]


def install_plugins(workspace: Any, target: Target) -> None:
    """Install each provider plugin at the version the installed Python SDK was built for."""
    from pulumi import automation as auto

    for plugin in target.pulumi_plugins:
        version = plugin_version(plugin, target.name)
        try:
            workspace.install_plugin(plugin, f"v{version}")
        except auto.CommandError as exc:
            raise PrerequisiteError(
                f"cannot install the Pulumi plugin {plugin} v{version}: {last_line(exc)}",
                hint=f"run `pulumi plugin install resource {plugin} v{version}` where the "
                "network allows it, or copy ~/.pulumi/plugins from a machine that has it",
            ) from None


def plugin_version(plugin: str, target: str) -> str:
    """
    The plugin version an installed provider SDK expects: its `pulumi-plugin.json`.

    Found without importing the (large) SDK package; falls back to the package version.
    """
    package = f"pulumi-{plugin}"  # every provider SDK: plugin X ships as pulumi-X
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise PrerequisiteError(
            f"the Python package {package} is not installed",
            hint=f"pip install 'mdeploy[{target}]'",
        )
    manifest = Path(next(iter(spec.submodule_search_locations))) / "pulumi-plugin.json"
    try:
        return str(json.loads(manifest.read_text())["version"]).lstrip("v")
    except (OSError, ValueError, KeyError):
        return metadata.version(package)


def ship_image(
    stack: Any, op: Operation, progress: Progress, phase: list[str] | None = None
) -> dict[str, Any] | None:
    """Phase 1 + replication: the image lands in the target's registry with the same digest."""
    args = op.resolved.args
    repo = op.target.registry_repository(args, op.stack_config)
    source = args.image
    if repository_of(source) == repo:
        return None  # serving.image already points at the target's repository
    urns = _repository_targets(op)
    if urns:

        def phase1() -> Any:
            return stack.up(target=urns, on_event=progress, color="never")

        guarded(stack, phase1, op, progress)
    from mdeploy.image.replicate import replicate

    dest = image_with_registry(source, repo)
    if phase is not None:
        phase[0] = (
            f"the image copy to {repo} was stopped (the registry repository exists; the "
            "endpoint was not touched)"
        )
    result = replicate(source, [dest], strict=op.loaded.strict)
    return result.to_json()


def _repository_targets(op: Operation) -> list[str]:
    """
    URNs phase 1 must create: the repository, what it depends on, and its explicit provider.

    A targeted update refuses a resource whose dependencies are neither in state nor
    targeted (on Azure the registry needs its resource group), so the closure over
    `depends_on` and parents, as recorded by the mock engine, is targeted with it.
    """
    from mdeploy.deploy.mocks import MockSession

    with MockSession(project=PROJECT, stack=op.stack, config=op.stack_config) as session:
        component = session.run(endpoint_program(op.target, op.resolved.args))
        repository = getattr(component, "repository", None)
        if repository is None:
            return []
        urn = session.resolve(repository.urn)
        recorded = {r.urn: r for r in session.resources}
    urns: list[str] = []
    pending = [urn]
    while pending:
        current = pending.pop()
        if current in urns or current not in recorded:
            continue
        urns.append(current)
        res = recorded[current]
        pending += [*res.depends_on, *([res.parent] if res.parent else [])]
        provider = res.provider.rpartition("::")[0] if res.provider else ""
        if provider and not provider.rsplit("::", 1)[-1].startswith("default"):
            pending.append(provider)
    return urns
