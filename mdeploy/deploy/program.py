"""
From a loaded spec to one target's component: naming, planning and the Pulumi program.

Shared by offline synth, the Automation API lifecycle and the `stacks/` Pulumi project, so all
three build the very same EndpointArgs and component. No Pulumi import at module level: the
program function imports it when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mdeploy._gc import long_lived_phase
from mdeploy.errors import InputError, PolicyError
from mdeploy.targets import deploy_target_for, output_names, target_names
from mdeploy.targets.base import EndpointArgs

if TYPE_CHECKING:
    from mdeploy.plan.models import Candidate, Plan
    from mdeploy.spec import LoadedSpec
    from mdeploy.spec.models import Deployment
    from mdeploy.targets.base import Target

__all__ = [
    "PROJECT",
    "Resolved",
    "canonical_model_id",
    "deploy_targets",
    "endpoint_program",
    "plan_targets",
    "resolve",
    "source_image",
    "stack_name",
    "with_model_id",
]

PROJECT = "mdeploy"


@dataclass(frozen=True)
class Resolved:
    """One target's inputs: the plan's best candidate turned into EndpointArgs."""

    target: str  # deploy target folder (mdeploy.targets.target_names())
    args: EndpointArgs
    candidate: Candidate
    plan: Plan


def stack_name(name: str, env: str | None, target: str) -> str:
    """
    One stack per spec × environment × target.

    >>> stack_name("mistral-7b-chat", None, "coreweave")
    'mistral-7b-chat-default-kubernetes'
    """
    return f"{name}-{env or 'default'}-{deploy_target_for(target)}"


def deploy_targets(spec: Deployment) -> list[str]:
    """The deploy targets the spec's placement.clouds reach, in spec order, no repeats."""
    out: list[str] = []
    for cloud in spec.placement.clouds:
        folder = deploy_target_for(cloud)
        if folder not in out:
            out.append(folder)
    return out


def plan_targets(spec: Deployment, target: str) -> list[str]:
    """The catalog targets (coreweave, kubernetes pools...) that `target` deploys for this spec."""
    folder = deploy_target_for(target)
    if target != folder:  # e.g. --target coreweave: only that catalog target
        wanted = [target]
    else:
        wanted = [c for c in spec.placement.clouds if deploy_target_for(c) == folder]
    allowed = [c for c in wanted if c in spec.placement.clouds]
    if not allowed:
        raise InputError(
            f"placement.clouds {list(spec.placement.clouds)} does not include {target}",
            hint=f"add {target} to placement.clouds or pick one of: "
            f"{', '.join(deploy_targets(spec))}",
        )
    return allowed


def source_image(loaded: LoadedSpec) -> str:
    """serving.image, or the tag `mdeploy image build` gives outside prod (prod pins a digest)."""
    image = loaded.spec.serving.image
    if image:
        return image
    if loaded.strict:
        raise PolicyError(
            "serving.image is not set; prod deploys an image pinned by digest",
            hint="build and push it (`mdeploy image build`), then set serving.image to "
            "REPO@sha256:DIGEST",
        )
    from mdeploy.image.build import DEFAULT_TAG

    return DEFAULT_TAG


def resolve(loaded: LoadedSpec, target: str, *, plan: Plan | None = None) -> Resolved:
    """
    Plan `target` alone and build EndpointArgs from its best candidate.

    Raises PolicyError (exit 4) naming the closest rejections when nothing fits there.
    """
    from mdeploy.plan import make_plan

    folder = deploy_target_for(target)
    if folder not in target_names():
        raise InputError(
            f"unknown target {target!r}", hint=f"use one of: {', '.join(target_names())}"
        )
    spec = loaded.spec
    if plan is None:
        plan = make_plan(spec, targets=plan_targets(spec, target), base_dir=loaded.base_dir)
    candidate = plan.chosen
    if candidate is None:
        raise PolicyError(_nothing_fits(plan, target), hint=_no_fit_hint(plan))
    args = EndpointArgs.from_plan(
        spec,
        candidate,
        env=loaded.env,
        image=source_image(loaded),
        weights_gib=plan.model.weights_gib,
    )
    args = with_model_id(args, canonical_model_id(loaded))
    return Resolved(target=folder, args=args, candidate=candidate, plan=plan)


def canonical_model_id(loaded: LoadedSpec) -> str:
    """
    The model id to emit: the catalog's canonical id for an alias (`Mistral-7B` →
    `mistralai/Mistral-7B-Instruct-v0.3`), else the spec's own.

    The planner sized the model that `mdeploy.catalog.resolve_model` resolved, so that is
    the authority: a container given the alias would ask the Hub for a repository that does
    not exist (404). A checkpoint repository keeps its own id (the catalog resolves it to
    itself), and so do specs that state the architecture or point at a local config.json.
    """
    from mdeploy.catalog import resolve_model

    return resolve_model(loaded.spec.model, base_dir=loaded.base_dir).id


def with_model_id(args: EndpointArgs, model_id: str) -> EndpointArgs:
    """`args` with `model_id` wherever the model id is emitted, the engine's flags included."""
    if args.model_id == model_id:
        return args
    flags = list(args.engine_args)
    for i, flag in enumerate(flags[:-1]):
        if flag == "--served-model-name" and flags[i + 1] == args.served_model_name:
            flags[i + 1] = model_id
    return replace(
        args,
        model_id=model_id,
        served_model_name=model_id
        if args.served_model_name == args.model_id
        else args.served_model_name,
        engine_args=tuple(flags),
    )


def endpoint_program(target: Target, args: EndpointArgs) -> Callable[[], Any]:
    """A Pulumi program: the target's component, and its outputs exported on the stack."""

    def program() -> Any:
        import pulumi

        with long_lived_phase():  # the provider's type modules are imported here
            component = target.component(args.name, args)
        for name in output_names():
            value = getattr(component, name, None)
            if value is not None:
                pulumi.export(name, value)
        return component

    return program


def _nothing_fits(plan: Plan, target: str) -> str:
    reasons = sorted({r.reason for r in plan.rejected})
    head = f"no offer of {target} fits this spec"
    if not reasons:
        return head + " (the catalog has no offer for it)"
    shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    return f"{head}: {shown}"


def _no_fit_hint(plan: Plan) -> str:
    del plan  # Unused: the same advice whatever was rejected.
    return (
        "run `mdeploy plan SPEC --target T` to see every rejection; relax residency, gpus, "
        "max_hourly_usd or max_context"
    )
