"""
Stack lifecycle through the Pulumi Automation API: up, preview, destroy, status, outputs.

One stack per spec × environment × target (`<name>-<env>-<target>`), an inline program that
runs the same plan → EndpointArgs → component path as synth, state in a local file backend
under ~/.mdeploy/state (or $PULUMI_BACKEND_URL), encrypted with a passphrase.

Order of an operation: policy (guardrails, residency: exit 4) → prerequisites (Pulumi CLI,
credentials, secret references, passphrase: exit 3) → stack select/create, provider config,
plugins → the operation with streamed progress. `up` is two-phase when the image must move:
phase 1 creates only the target's registry repository, the image is copied there by digest,
phase 2 runs the full update. Ctrl-C cancels the running operation (exit 130 at the CLI):
the first one lets the Pulumi CLI, which got the same signal from the terminal, finish the
operations in flight and save the state; a second one stops waiting at once.

This module is the lifecycle; it leans on `operation` (the checked Operation), `shipping`
(plugins, phase 1 and the image copy), `interrupts` (Ctrl-C/SIGTERM around each CLI call)
and `engine_errors` (a failed CLI call → the message printed).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdeploy.deploy.engine_errors import last_line, state_hint
from mdeploy.deploy.interrupts import guarded, term_hint, tracked_pulumi
from mdeploy.deploy.operation import Operation
from mdeploy.deploy.prereqs import (
    PassphrasePrompt,
    backend_url,
    check_credentials,
    check_local_secrets,
    find_pulumi,
    mdeploy_home,
    passphrase_env,
)
from mdeploy.deploy.program import PROJECT, endpoint_program, resolve, stack_name
from mdeploy.deploy.shipping import install_plugins, ship_image
from mdeploy.errors import CloudError, InputError, MdeployError, PrerequisiteError
from mdeploy.image._signals import on_sigterm
from mdeploy.targets import get_target
from mdeploy.targets.base import EndpointHealth

if TYPE_CHECKING:
    from mdeploy.deploy.program import Resolved
    from mdeploy.deploy.progress import Progress
    from mdeploy.spec import LoadedSpec

__all__ = [
    "Confirm",
    "Operation",
    "StackAbsent",
    "destroy",
    "invoke",
    "live_ops",
    "open_stack",
    "outputs",
    "parse_config",
    "prepare",
    "preview",
    "status",
    "up",
]

Confirm = Callable[[str], bool]  # shows a question, returns the answer; None = non-interactive


def prepare(
    loaded: LoadedSpec,
    target: str,
    *,
    passphrase_prompt: PassphrasePrompt | None = None,
    need_secrets: bool = False,
    config: dict[str, str] | None = None,
    deploying: bool = True,
    resolved: Resolved | None = None,
) -> Operation:
    """
    Run every check, in the documented order, and return what the operation needs.

    `config` is extra stack config (e.g. {"mdeploy:awsAccountId": "..."}), stored on the stack.
    `deploying` (up, preview) applies the prod guardrails; destroy, status and outputs skip
    them, so an endpoint stays removable after its spec stopped complying. `resolved` is
    `resolve(loaded, target)` when the caller already has it (promote): planned once.
    """
    extra = parse_config(config or {})
    if deploying and loaded.strict:
        from mdeploy.spec import check_guardrails

        check_guardrails(loaded)
    if resolved is None:
        resolved = resolve(loaded, target)
    target_obj = get_target(resolved.target)
    blocked = target_obj.unsupported(loaded.spec)
    if blocked:
        field_name, why = next(iter(sorted(blocked.items())))
        raise InputError(f"{field_name}: {target_obj.display_name} cannot honour it: {why}")
    pulumi = find_pulumi()
    check_credentials(target_obj, resolved.args)
    if need_secrets:
        check_local_secrets(resolved.args)
    env = {"PULUMI_SKIP_UPDATE_CHECK": "true", **passphrase_env(passphrase_prompt)}
    return Operation(
        loaded=loaded,
        resolved=resolved,
        target=target_obj,
        stack=stack_name(loaded.spec.metadata.name, loaded.env, resolved.target),
        pulumi=pulumi,
        backend=backend_url(),
        env_vars=env,
        extra_config=extra,
    )


class StackAbsent(Exception):
    """The stack was never created: nothing is deployed for this spec × env × target."""


def open_stack(op: Operation, *, create: bool = True) -> Any:
    """
    Select (or create) the stack, write provider config, install the provider plugins.

    Read-only and teardown commands pass `create=False`: asking for the status of an
    endpoint never deployed must not leave an empty stack behind; StackAbsent is raised.
    """
    from pulumi import automation as auto

    work_dir = mdeploy_home() / "workspaces" / op.stack
    work_dir.mkdir(parents=True, exist_ok=True)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        project_settings=auto.ProjectSettings(
            name=PROJECT, runtime="python", backend=auto.ProjectBackend(url=op.backend)
        ),
        secrets_provider="passphrase",
        env_vars=op.env_vars,
        pulumi_command=_command(op.pulumi),
    )
    program = endpoint_program(op.target, op.resolved.args)
    open_fn = auto.create_or_select_stack if create else auto.select_stack
    try:
        stack = open_fn(op.stack, PROJECT, program, opts=opts)
        if op.config:
            stack.set_all_config({k: auto.ConfigValue(v) for k, v in op.config.items()})
        stored = stack.get_all_config()
    except auto.StackNotFoundError:
        raise StackAbsent(op.stack) from None
    except auto.CommandError as exc:
        raise CloudError(f"stack {op.stack}: {last_line(exc)}", hint=state_hint(op)) from None
    op.stack_config = {k: v.value for k, v in stored.items() if not v.secret}
    install_plugins(stack.workspace, op.target)
    return stack


def parse_config(config: dict[str, str]) -> dict[str, str]:
    """Check --config keys: namespaced (`mdeploy:registry`, `aws:profile`), no empty values."""
    for key, value in config.items():
        namespace, sep, name = key.partition(":")
        if not (sep and namespace and name):
            raise InputError(
                f"--config {key}: keys are namespaced, e.g. mdeploy:registry or aws:profile",
                hint="pass --config NAMESPACE:KEY=VALUE",
            )
        if value == "":
            raise InputError(f"--config {key}: empty value", hint="pass --config KEY=VALUE")
    return dict(config)


def up(
    op: Operation,
    progress: Progress,
    *,
    yes: bool = False,
    confirm: Confirm | None = None,
    strict_quota: bool = False,
) -> dict[str, Any]:
    """
    Deploy: pre-flight (quota, image pinned by digest), confirm destructive changes, ship
    the image by digest, then the full update.

    Returns the summary printed by `up --json`.
    """
    from mdeploy.deploy.preflight import preflight

    phase = ["pre-flight checks: nothing was created"]
    with tracked_pulumi(), on_sigterm(lambda: phase[0], hint=term_hint(op)):
        preflight(op, strict_quota=strict_quota, warn=lambda text: _warn(progress, text))
        _check_promotions(op, yes, progress)
        phase[0] = "opening the stack: no cloud resource was created"
        stack = open_stack(op)
        started = time.monotonic()
        if not yes and _has_history(stack, op):
            phase[0] = "previewing the update: nothing was changed"
            _confirm_destructive(stack, op, confirm, progress)
        phase[0] = "phase 1 (the registry repository) was cancelled; the endpoint was not touched"
        replication = ship_image(stack, op, progress, phase)
        phase[0] = (
            "the update was cancelled: Pulumi finished the operations in flight and saved "
            "the state of what it did; the endpoint may be partly created or updated"
        )
        result = guarded(stack, lambda: stack.up(on_event=progress, color="never"), op, progress)
    return _summary(
        op, "up", result.summary.result, progress, started,
        image=op.resolved.args.image, replication=replication, outputs=_masked(result.outputs),
    )  # fmt: skip


def _check_promotions(op: Operation, yes: bool, progress: Progress) -> None:
    """A promotion changed versions outside Pulumi: refuse to race or silently undo it."""
    from mdeploy.ops.drift import check_before_up
    from mdeploy.ops.state import StateStore

    args = op.resolved.args
    store = StateStore(mdeploy_home() / "promotions")  # where `mdeploy promote` keeps it
    warn = lambda text: _warn(progress, text)  # noqa: E731
    check_before_up(store, op.stack, args.image, args.model_revision, yes=yes, warn=warn)


def preview(op: Operation, progress: Progress) -> dict[str, Any]:
    """What `up` would change, from the engine (needs credentials; nothing is modified)."""
    stack = open_stack(op)
    started = time.monotonic()
    result = guarded(stack, lambda: stack.preview(on_event=progress, color="never"), op, progress)
    counts = {str(getattr(k, "value", k)): v for k, v in (result.change_summary or {}).items()}
    progress.summary = progress.summary or counts
    return _summary(op, "preview", "succeeded", progress, started)


def destroy(
    op: Operation,
    progress: Progress,
    *,
    yes: bool = False,
    confirm: Confirm | None = None,
) -> dict[str, Any]:
    """Delete every resource of the stack, after confirmation (or --yes)."""
    started = time.monotonic()
    try:
        stack = open_stack(op, create=False)
    except StackAbsent:  # never deployed: destroying it is already done (idempotent in CI)
        return _summary(op, "destroy", "absent", progress, started)
    question = f"destroy every resource of stack {op.stack} ({op.target.display_name})?"
    _require_confirmation(question, yes, confirm, progress)
    result = guarded(stack, lambda: stack.destroy(on_event=progress, color="never"), op, progress)
    return _summary(op, "destroy", result.summary.result, progress, started)


def outputs(op: Operation) -> dict[str, Any]:
    """The stack's outputs, secrets shown as "[secret]"; {} when it was never deployed."""
    try:
        stack = open_stack(op, create=False)
    except StackAbsent:
        return {}
    return _masked(guarded(stack, stack.outputs, op))


def status(op: Operation) -> dict[str, Any]:
    """Stack outputs plus the target's own health view when it has day-2 operations."""
    outs = outputs(op)
    report: dict[str, Any] = {"stack": op.stack, "target": op.target.name, "outputs": outs}
    if not outs:
        report["deployed"] = False
        return report
    report["deployed"] = True
    try:
        health = op.target.ops(outs).status()
    except NotImplementedError as exc:
        health = EndpointHealth.unknown(str(exc))
    except MdeployError as exc:  # the cloud could not be asked; the outputs still stand
        health = EndpointHealth.unknown(exc.message)
    report["health"] = health.to_json()
    return report


def live_ops(op: Operation) -> Any:
    """
    The target's day-2 client for the deployed stack (CloudError when there is none).

    The outputs are read unmasked (a Kubernetes endpoint's API key is one) and stay in
    memory, inside the client.
    """
    try:
        stack = open_stack(op, create=False)
    except StackAbsent:
        raise CloudError(
            f"stack {op.stack} was never deployed", hint="run `mdeploy up` first"
        ) from None
    outs = {k: getattr(v, "value", v) for k, v in guarded(stack, stack.outputs, op).items()}
    if not outs:
        raise CloudError(f"stack {op.stack} has no outputs", hint="run `mdeploy up` first")
    return op.target.ops(outs)


def invoke(op: Operation, body: dict[str, Any], *, stream: bool = False) -> Any:
    """One request through the deployed endpoint with the target's own client (the smoke test)."""
    return live_ops(op).invoke(body, stream=stream)


# --- helpers ---------------------------------------------------------------------------


def _warn(progress: Progress, text: str) -> None:
    """A warning on stderr, with the live table (if any) out of the way."""
    with progress.paused():
        sys.stderr.write(f"warning: {text}\n")
        sys.stderr.flush()


def _command(path: str) -> Any:
    """A PulumiCommand for the CLI found by find_pulumi (PATH or $PULUMI_HOME/bin)."""
    from pulumi import automation as auto

    binary = Path(path)
    try:
        if binary.parent.name == "bin":
            return auto.PulumiCommand(root=str(binary.parent.parent))
        return auto.PulumiCommand()
    except Exception as exc:  # InvalidVersionError, CalledProcessError, OSError
        raise PrerequisiteError(
            f"the Pulumi CLI at {path} does not work: {exc}",
            hint="reinstall it: curl -fsSL https://get.pulumi.com | sh",
        ) from None


def _has_history(stack: Any, op: Operation) -> bool:
    """
    Whether the stack was ever updated (so live resources may exist).

    `pulumi stack history --json` prints `[]` for a stack never updated, so a failure here is
    a real one (backend unreachable, wrong passphrase): it stops `up` rather than skipping the
    question about replacing live resources.
    """
    return guarded(stack, lambda: stack.info(show_secrets=False), op) is not None


def _confirm_destructive(
    stack: Any, op: Operation, confirm: Confirm | None, progress: Progress | None = None
) -> None:
    """Preview first; a replace/delete of a live resource needs a yes."""
    from rich.console import Console

    from mdeploy.deploy.progress import Progress

    quiet = Progress(Console(quiet=True), live=False)
    guarded(stack, lambda: stack.preview(on_event=quiet, color="never"), op, quiet)
    risky = quiet.destructive
    if risky:
        listing = "\n  ".join(risky)
        _require_confirmation(
            f"this update deletes or replaces live resources of {op.stack}:\n  {listing}\n"
            "continue?",
            False,
            confirm,
            progress,
        )


def _require_confirmation(
    question: str, yes: bool, confirm: Confirm | None, progress: Progress | None = None
) -> None:
    if yes:
        return
    if confirm is None:
        raise InputError(
            "refusing to change live resources without confirmation in a non-interactive run",
            hint="pass --yes to confirm",
        )
    # The question is asked with the live table off the screen: its refresh hides a prompt.
    with progress.paused() if progress is not None else contextlib.nullcontext():
        answer = confirm(question)
    if not answer:
        raise InputError("cancelled; nothing was changed", hint="pass --yes to skip the question")


def _summary(
    op: Operation,
    operation: str,
    result: str,
    progress: Progress,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "stack": op.stack,
        "target": op.target.name,
        "operation": operation,
        "result": result,
        "changes": progress.counts(),
        "duration_s": round(time.monotonic() - started, 1),
        **{k: v for k, v in extra.items() if v is not None},
    }


def _masked(outs: dict[str, Any]) -> dict[str, Any]:
    """Stack outputs as plain values, secrets replaced by "[secret]"."""
    from mdeploy.deploy.synth import MASK

    return {
        k: MASK if getattr(v, "secret", False) else getattr(v, "value", v)
        for k, v in sorted(outs.items())
    }
