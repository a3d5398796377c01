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
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdeploy.deploy.prereqs import (
    PULUMI_INSTALL_HINT,
    PassphrasePrompt,
    backend_url,
    check_credentials,
    check_local_secrets,
    find_pulumi,
    mdeploy_home,
    passphrase_env,
)
from mdeploy.deploy.program import (
    PROJECT,
    Resolved,
    endpoint_program,
    resolve,
    stack_name,
)
from mdeploy.errors import CloudError, InputError, MdeployError, PrerequisiteError
from mdeploy.image._signals import forward, on_sigterm, track
from mdeploy.targets import get_target
from mdeploy.targets.base import EndpointHealth, image_with_registry, repository_of

if TYPE_CHECKING:
    from mdeploy.deploy.progress import Progress
    from mdeploy.spec import LoadedSpec
    from mdeploy.targets.base import Target

__all__ = [
    "Confirm",
    "Operation",
    "destroy",
    "invoke",
    "live_ops",
    "open_stack",
    "outputs",
    "parse_config",
    "plugin_version",
    "prepare",
    "preview",
    "status",
    "up",
]

Confirm = Callable[[str], bool]  # shows a question, returns the answer; None = non-interactive


@dataclass
class Operation:
    """Everything checked and resolved before a stack operation touches anything."""

    loaded: LoadedSpec
    resolved: Resolved
    target: Target
    stack: str
    pulumi: str
    backend: str
    env_vars: dict[str, str] = field(default_factory=dict, repr=False)  # may hold a passphrase
    extra_config: dict[str, str] = field(default_factory=dict)  # --config KEY=VALUE
    stack_config: dict[str, str] = field(default_factory=dict)  # all plain config, once open

    @property
    def config(self) -> dict[str, str]:
        """Config mdeploy writes to the stack: provider config, then --config (never secrets)."""
        return {**self.target.stack_config(self.resolved.args), **self.extra_config}


def prepare(
    loaded: LoadedSpec,
    target: str,
    *,
    passphrase_prompt: PassphrasePrompt | None = None,
    need_secrets: bool = False,
    config: dict[str, str] | None = None,
    deploying: bool = True,
) -> Operation:
    """
    Run every check, in the documented order, and return what the operation needs.

    `config` is extra stack config (e.g. {"mdeploy:awsAccountId": "..."}), stored on the stack.
    `deploying` (up, preview) applies the prod guardrails; destroy, status and outputs skip
    them, so an endpoint stays removable after its spec stopped complying.
    """
    extra = parse_config(config or {})
    if deploying and loaded.strict:
        from mdeploy.spec import check_guardrails

        check_guardrails(loaded)
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
        raise CloudError(f"stack {op.stack}: {_last_line(exc)}", hint=_state_hint(op)) from None
    op.stack_config = {k: v.value for k, v in stored.items() if not v.secret}
    _install_plugins(stack.workspace, op.target)
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
    with _tracked_pulumi(), on_sigterm(lambda: phase[0], hint=_term_hint(op)):
        preflight(op, strict_quota=strict_quota, warn=lambda text: _warn(progress, text))
        _check_promotions(op, yes, progress)
        phase[0] = "opening the stack: no cloud resource was created"
        stack = open_stack(op)
        started = time.monotonic()
        if not yes and _has_history(stack, op):
            phase[0] = "previewing the update: nothing was changed"
            _confirm_destructive(stack, op, confirm, progress)
        phase[0] = "phase 1 (the registry repository) was cancelled; the endpoint was not touched"
        replication = _ship_image(stack, op, progress, phase)
        phase[0] = (
            "the update was cancelled: Pulumi finished the operations in flight and saved "
            "the state of what it did; the endpoint may be partly created or updated"
        )
        result = _guarded(stack, lambda: stack.up(on_event=progress, color="never"), op, progress)
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
    result = _guarded(stack, lambda: stack.preview(on_event=progress, color="never"), op, progress)
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
    result = _guarded(stack, lambda: stack.destroy(on_event=progress, color="never"), op, progress)
    return _summary(op, "destroy", result.summary.result, progress, started)


def outputs(op: Operation) -> dict[str, Any]:
    """The stack's outputs, secrets shown as "[secret]"; {} when it was never deployed."""
    try:
        stack = open_stack(op, create=False)
    except StackAbsent:
        return {}
    return _masked(_guarded(stack, stack.outputs, op))


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
    outs = {k: getattr(v, "value", v) for k, v in _guarded(stack, stack.outputs, op).items()}
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


def _install_plugins(workspace: Any, target: Target) -> None:
    """Install each provider plugin at the version the installed Python SDK was built for."""
    from pulumi import automation as auto

    for plugin in target.pulumi_plugins:
        version = plugin_version(plugin, target.name)
        try:
            workspace.install_plugin(plugin, f"v{version}")
        except auto.CommandError as exc:
            raise PrerequisiteError(
                f"cannot install the Pulumi plugin {plugin} v{version}: {_last_line(exc)}",
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


def _ship_image(
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

        _guarded(stack, phase1, op, progress)
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


def _has_history(stack: Any, op: Operation) -> bool:
    """
    Whether the stack was ever updated (so live resources may exist).

    `pulumi stack history --json` prints `[]` for a stack never updated, so a failure here is
    a real one (backend unreachable, wrong passphrase): it stops `up` rather than skipping the
    question about replacing live resources.
    """
    return _guarded(stack, lambda: stack.info(show_secrets=False), op) is not None


def _confirm_destructive(
    stack: Any, op: Operation, confirm: Confirm | None, progress: Progress | None = None
) -> None:
    """Preview first; a replace/delete of a live resource needs a yes."""
    from rich.console import Console

    from mdeploy.deploy.progress import Progress

    quiet = Progress(Console(quiet=True), live=False)
    _guarded(stack, lambda: stack.preview(on_event=quiet, color="never"), op, quiet)
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


def _guarded(
    stack: Any, call: Callable[[], Any], op: Operation, progress: Progress | None = None
) -> Any:
    """
    Run a stack call: Ctrl-C cancels it, engine failures become CloudError (exit 1).

    The Pulumi CLI runs in its own session (`_tracked_pulumi`), so each SIGINT mdeploy gets,
    from a terminal or sent to it alone, is forwarded to the CLI exactly once. On the first,
    the CLI cancels gracefully: it lets the resource operations in flight finish and writes
    the state, and mdeploy keeps waiting for it; leaving earlier would orphan it (its stdout
    closed under it) and, on the local file backend, `pulumi cancel` would delete the lock
    of an update still running. A second Ctrl-C stops the CLI and the wait at once; only
    then is `cancel()` called, to clear the lock a killed CLI leaves.
    """
    from pulumi import automation as auto

    with _tracked_pulumi(), _deferred_interrupt() as interrupted:
        try:
            result = call()
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                stack.cancel()
            raise
        except auto.CommandError as exc:
            if interrupted():
                raise KeyboardInterrupt from None
            raise CloudError(
                f"stack {op.stack}: {_failure(exc, progress)}", hint=_state_hint(op)
            ) from None
        except RuntimeError as exc:
            if "summary event never found" not in str(exc):
                raise
            # The SDK's own error when the CLI ended without an engine summary (it crashed
            # or was killed before the engine finished): a runtime failure, not a bug here.
            raise CloudError(
                f"stack {op.stack}: the Pulumi engine ended without a summary",
                hint=_state_hint(op),
            ) from None
        except auto.InvalidVersionError as exc:
            raise PrerequisiteError(
                f"the Pulumi CLI is too old for this operation: {exc}", hint=PULUMI_INSTALL_HINT
            ) from None
    if interrupted():
        raise KeyboardInterrupt
    return result


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """
    While a Pulumi CLI call runs: the first SIGINT is noted (the CLI cancels on its own),
    a second one raises KeyboardInterrupt. Yields "was it interrupted?".
    """
    count = 0

    def interrupted() -> bool:
        return count > 0

    def handler(signum: int, frame: Any) -> None:
        nonlocal count
        count += 1
        forward(signal.SIGINT)  # the CLI is in its own session: only we can tell it
        if count > 1:
            raise KeyboardInterrupt
        sys.stderr.write(
            "\ncancelling: Pulumi finishes the operations in flight and saves the state; "
            "press Ctrl-C again to stop waiting now\n"
        )
        sys.stderr.flush()

    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
    if previous is None or previous == signal.SIG_IGN:  # not ours to handle
        yield interrupted
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _tracked_pulumi() -> Iterator[None]:
    """
    Pulumi CLI processes the Automation API starts in the block run in their own session
    and are tracked, so mdeploy decides which signal reaches them (`mdeploy.image._signals`).

    The Automation API offers no hook for its Popen; its module's `subprocess` is replaced
    by a shim for the block. If that internal ever moves, nothing is patched and the CLI
    shares mdeploy's process group as before (a terminal's Ctrl-C then reaches both).
    """
    try:
        from pulumi.automation import _cmd
    except ImportError:
        yield
        return
    real = getattr(_cmd, "subprocess", None)
    if real is None or isinstance(real, _PopenShim) or not hasattr(real, "Popen"):
        yield
        return
    _cmd.subprocess = _PopenShim(real)
    try:
        yield
    finally:
        _cmd.subprocess = real


class _PopenShim:
    """The `subprocess` module, but Popen starts a new session and tracks the child."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def Popen(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("start_new_session", True)
        return track(self._real.Popen(*args, **kwargs))


def _term_hint(op: Operation) -> str:
    return (
        f"run `mdeploy up` again to finish (or `mdeploy destroy` to remove what exists); if "
        f"the stack stays locked: `pulumi cancel --stack {op.stack}`"
    )


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


# str(CommandError) is "\n code: N\n stdout: ...\n stderr: ..." (CommandResult.__str__); the
# exception keeps no stdout/stderr attributes of its own.
_COMMAND_RESULT = re.compile(r"\A\s*code: (-?\d+)\n stdout: (.*)\n stderr: (.*)\Z", re.S)
_GENERIC = re.compile(r"(error: )?(update|preview|destroy|refresh) failed\.?", re.I)
_MAX_MESSAGE = 600


def _command_output(exc: Exception) -> tuple[str, str, str]:
    """(exit code, stdout, stderr) of a failed Pulumi CLI call."""
    match = _COMMAND_RESULT.match(str(exc))
    if match is None:
        return "", "", str(exc)
    return match.group(1), match.group(2), match.group(3)


def _last_line(exc: Exception) -> str:
    """The useful part of a CommandError: the last non-empty line of its stderr."""
    code, _, stderr = _command_output(exc)
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if lines:
        return lines[-1]
    return f"the Pulumi CLI exited with code {code}" if code else type(exc).__name__


def _failure(exc: Exception, progress: Progress | None) -> str:
    """
    Why an operation failed, in the engine's words.

    A resource failure is reported by the engine as a diagnostic (event stream, and the
    "Diagnostics:" block on stdout); the CLI then exits 255 with nothing on stderr (the
    error is a "bail": already shown). Errors the CLI itself raises (no stack, locked
    stack, bad passphrase) are on stderr. Specific messages beat the generic
    "update failed".
    """
    _, stdout, stderr = _command_output(exc)
    engine = [e for e in (progress.errors if progress is not None else []) if e]
    # stderr: the CLI's own error comes last; diagnostics: the first is the root cause.
    sources = (_error_lines(stderr)[::-1], engine, _error_lines(stdout))
    for found in sources:
        specific = [e for e in found if not _GENERIC.fullmatch(e)]
        if specific:
            text = " ".join(specific[0].split())
            if len(text) > _MAX_MESSAGE:
                text = text[: _MAX_MESSAGE - 1] + "…"
            more = len(specific) - 1
            return text + (f" (and {more} more error{'s' * (more > 1)})" if more else "")
    generic = [e for found in sources for e in found]
    return generic[0] if generic else _last_line(exc)


def _error_lines(text: str) -> list[str]:
    """The messages of the `error: ...` lines of a CLI stream, colour directives removed."""
    from mdeploy.deploy.progress import clean_message

    out = []
    for line in text.splitlines():
        line = clean_message(line)
        if line.startswith("error:"):
            message = line[len("error:") :].strip()
            if message:
                out.append(message)
    return out


def _state_hint(op: Operation) -> str:
    return (
        f"state backend {op.backend}; check the passphrase (PULUMI_CONFIG_PASSPHRASE) and "
        f"`pulumi stack --stack {op.stack}` for details"
    )
