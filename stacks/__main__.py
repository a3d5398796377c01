"""
The mdeploy Pulumi program for `pulumi up` run directly in this folder.

Reads `mdeploy:spec`, `mdeploy:env` and `mdeploy:target` from stack config, then runs exactly
what `mdeploy up` runs: guardrails, plan, EndpointArgs from the best candidate for the target,
the target's component, its outputs exported. Errors are reported as Pulumi errors with
mdeploy's message and hint (no Python traceback).

What `mdeploy up` adds on top, and this program does not: the prerequisite checks with
install hints, and copying the image into the target's registry by digest between the two
phases. Run `mdeploy image replicate` first, or point serving.image at the target registry.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from mdeploy.errors import MdeployError


def main() -> None:
    """Load, check and plan the spec, then declare the target's component."""
    from mdeploy.deploy.prereqs import check_local_secrets
    from mdeploy.deploy.program import endpoint_program, resolve
    from mdeploy.spec import check_guardrails, load_spec
    from mdeploy.targets import get_target

    cfg = pulumi.Config("mdeploy")
    loaded = load_spec(Path(cfg.require("spec")), cfg.get("env") or None)
    if loaded.strict:
        check_guardrails(loaded)
    resolved = resolve(loaded, cfg.require("target"))
    target = get_target(resolved.target)
    _check_provider_config(target.stack_config(resolved.args))
    if not pulumi.runtime.is_dry_run():
        check_local_secrets(resolved.args)
    endpoint_program(target, resolved.args)()


def _check_provider_config(wanted: dict[str, str]) -> None:
    """The stack's provider config must match the plan (e.g. aws:region = planned region)."""
    for key, value in wanted.items():
        namespace, _, name = key.partition(":")
        have = pulumi.Config(namespace).get(name)
        if have != value:
            raise MdeployError(
                f"stack config {key} is {have!r} but the plan places the endpoint in {value!r}",
                hint=f"pulumi config set {key} {value}",
            )


try:
    main()
except MdeployError as exc:
    raise pulumi.RunError(f"{exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else "")) from None
