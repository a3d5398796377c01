"""
Offline synth: the resource graph a target's real component code declares, without a cloud.

The component runs under a recording mock engine (`mdeploy.deploy.mocks`), so what comes out is
the *intended* graph (type tokens, names, inputs, parents, dependencies), not a cloud preview:
provider-computed values are placeholders and nothing is checked against an account.

Contract (`synth --json`, stable): `{target, image, resources: [{urn, type, name, parent,
depends_on, inputs}]}`. Pulumi secrets, and any string input whose key names a password, token,
secret or key, show as "[secret]". Resources come parents-first, then in dependency order.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mdeploy.deploy.program import (
    PROJECT,
    Resolved,
    deploy_targets,
    endpoint_program,
    resolve,
    stack_name,
)
from mdeploy.errors import CloudError, MdeployError
from mdeploy.targets import get_target

if TYPE_CHECKING:
    from mdeploy.deploy.mocks import RecordedResource
    from mdeploy.errors import PolicyError
    from mdeploy.plan.models import Plan
    from mdeploy.spec import LoadedSpec
    from mdeploy.targets.base import EndpointArgs

__all__ = [
    "BANNER",
    "MASK",
    "SYNTH_PLACEHOLDER",
    "SynthResult",
    "mask_inputs",
    "order_resources",
    "synth",
    "synth_args",
    "synth_targets",
]

BANNER = (
    "intended resource graph from the real component code under a mock engine — not a cloud preview"
)
MASK = "[secret]"
SYNTH_PLACEHOLDER = "mdeploy-synth-placeholder"  # value of unset env: secrets during synth
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # pulumi.runtime.rpc._special_secret_sig
_SIG_KEY = "4dabf18193072939515e22adb298388d"  # pulumi.runtime.rpc._special_sig_key
_SENSITIVE = re.compile(
    r"password|passwd|passphrase|token|secret|apikey|accesskey|privatekey|secretkey|"
    r"accountkey|sharedkey|credential|connectionstring"
)
# Keys that *name* or *point at* a secret rather than hold one (secretName, secret_arn, ...).
_REFERENCE_SUFFIXES = (
    "name", "names", "ref", "arn", "id", "ids", "uri", "url", "path", "type", "kind",
    "version", "mode", "enabled", "ttl", "count", "seconds",
)  # fmt: skip


@dataclass
class SynthResult:
    """One target's synthesized graph plus what the human view shows around it."""

    target: str
    image: str
    resources: list[dict[str, Any]]
    resolved: Resolved | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The `synth --json` contract for one target."""
        return {"target": self.target, "image": self.image, "resources": self.resources}


def synth(loaded: LoadedSpec, target: str, *, plan: Plan | None = None) -> SynthResult:
    """Plan `target`, build its EndpointArgs, and record its component's resource graph."""
    resolved = resolve(loaded, target, plan=plan)
    result = synth_args(
        resolved.target,
        resolved.args,
        stack=stack_name(loaded.spec.metadata.name, loaded.env, resolved.target),
    )
    result.resolved = resolved
    return result


def synth_targets(
    loaded: LoadedSpec, target: str | None = None, *, all_targets: bool = False
) -> tuple[list[SynthResult], list[dict[str, str]]]:
    """
    Synth one target, every target the spec's placement reaches, or the planner's choice.

    Returns the graphs and, with `all_targets`, the targets skipped because nothing fits
    there ({target, reason}); a single requested target that cannot be synthesized raises.
    The planner runs once, or once per target with `all_targets` (each target is planned
    over its own catalog targets, in its own worker).
    """
    from mdeploy.errors import PolicyError

    if target and all_targets:
        from mdeploy.errors import InputError

        raise InputError("--target and --all-targets exclude each other", hint="pass one")
    if all_targets:
        results, skipped = [], []
        for name, outcome in _synth_each(loaded, deploy_targets(loaded.spec)):
            if isinstance(outcome, SynthResult):
                results.append(outcome)
            else:
                skipped.append({"target": name, "reason": outcome.message})
        if not results:
            raise PolicyError(
                "no target can host this spec: "
                + "; ".join(f"{s['target']}: {s['reason']}" for s in skipped),
                hint="run `mdeploy plan SPEC` to see every rejection",
            )
        return results, skipped
    if target:
        return [synth(loaded, target)], []
    chosen, plan = _overall_plan(loaded)
    return [synth(loaded, chosen, plan=plan)], []


def _synth_each(
    loaded: LoadedSpec, names: list[str]
) -> list[tuple[str, SynthResult | PolicyError]]:
    """
    Every target's graph (or the PolicyError that skips it), in `names` order.

    Each target runs in its own forked process when more than one core is ours: most of a
    synth is importing that target's Pulumi provider package (hundreds of ms each) and the
    mock engine keeps process-global state, so processes, not threads. The output does not
    depend on the order in which they finish. MDEPLOY_SYNTH_WORKERS=1 (or no fork on this
    platform, or a process that already runs threads, where fork is unsafe) runs them one
    after the other in this process. The CLI forks before any mock engine has started, with
    the Pulumi runtime imported once and frozen for the workers (`mdeploy._gc.frozen_for_fork`):
    10 % less CPU in all, measured.
    """
    workers = _workers(len(names))
    if workers <= 1:
        return [(name, _synth_one(loaded, name)) for name in names]
    import concurrent.futures
    import multiprocessing

    import mdeploy.deploy.mocks  # noqa: F401  the Pulumi runtime: imported once, for every worker
    from mdeploy._gc import frozen_for_fork

    context = multiprocessing.get_context("fork")
    with (
        frozen_for_fork(),
        concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool,
    ):
        futures = [pool.submit(_synth_child, loaded, name) for name in names]
        return [
            (name, _unpack(future.result())) for name, future in zip(names, futures, strict=True)
        ]


def _workers(count: int) -> int:
    import multiprocessing

    if count <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if threading.active_count() > 1:
        return 1  # forking a process with threads (gRPC of an earlier mock engine) can hang
    raw = os.environ.get("MDEPLOY_SYNTH_WORKERS", "").strip()
    if raw.isdigit() and int(raw) >= 1:
        return min(count, int(raw))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(count, cores or 1))


def _synth_one(loaded: LoadedSpec, name: str) -> SynthResult | PolicyError:
    from mdeploy.errors import PolicyError

    try:
        return synth(loaded, name)
    except PolicyError as exc:
        return exc


def _synth_child(loaded: LoadedSpec, name: str) -> tuple[str, Any, str, str | None]:
    """In a worker: ("ok", result, "", None) or (kind, None, message, hint) of an error."""
    try:
        outcome = _synth_one(loaded, name)
    except MdeployError as exc:
        return (type(exc).__name__, None, exc.message, exc.hint)
    if isinstance(outcome, SynthResult):
        if outcome.resolved is not None:  # the plan holds closures (lazy reasons): not sent
            outcome.resolved = replace(outcome.resolved, plan=None)  # type: ignore[arg-type]
        return ("ok", outcome, "", None)
    return ("PolicyError", None, outcome.message, outcome.hint)


def _unpack(packed: tuple[str, Any, str, str | None]) -> SynthResult | PolicyError:
    """A worker's answer back as a result, a skip, or the error raised here."""
    from mdeploy import errors

    kind, result, message, hint = packed
    if kind == "ok":
        return result
    if kind == "PolicyError":
        return errors.PolicyError(message, hint=hint)
    error = getattr(errors, kind, None)
    if not (isinstance(error, type) and issubclass(error, MdeployError)):
        error = CloudError
    raise error(message, hint=hint)


def _overall_plan(loaded: LoadedSpec) -> tuple[str, Plan]:
    """
    The planner's overall pick (what `mdeploy plan` recommends) and the plan over every
    target that chose it (PolicyError if nothing fits).

    Its chosen candidate is the best one of its target too, so synth builds that target's
    args from this plan instead of planning the target again.
    """
    from mdeploy.errors import PolicyError
    from mdeploy.plan import make_plan
    from mdeploy.targets import blocked_targets

    blocked = blocked_targets(loaded.spec)
    plan = make_plan(loaded.spec, base_dir=loaded.base_dir, blocked=blocked)
    if plan.chosen is None:
        raise PolicyError(
            "no offer fits this spec on any target",
            hint="run `mdeploy plan SPEC` to see every rejection",
        )
    return plan.chosen.target, plan


def synth_args(
    target: str,
    args: EndpointArgs,
    *,
    stack: str = "synth",
    config: dict[str, str] | None = None,
) -> SynthResult:
    """
    Run `target`'s component for `args` under a fresh mock engine and return its graph.

    `config` is extra stack config (full keys such as "mdeploy:createNamespace"); the target's
    own `stack_config(args)` is always applied first, as `up` would.
    """
    from mdeploy.deploy.mocks import MockSession

    target_obj = get_target(target)
    stack_config = {**target_obj.stack_config(args), **(config or {})}
    log = _Collector()
    session = MockSession(project=PROJECT, stack=stack, config=stack_config, logger=log.logger)
    with _placeholder_secrets(args), session as s:
        try:
            component = s.run(endpoint_program(target_obj, args))
        except MdeployError:
            raise
        except Exception as exc:  # a bug in component code: report it, no traceback
            raise CloudError(
                f"the {target_obj.name} component failed under the mock engine: "
                f"{type(exc).__name__}: {exc}",
                hint=f"this is a bug in mdeploy/targets/{target_obj.name}/component.py; "
                "please report it with the spec",
            ) from None
        outputs = {k: _settle(s, getattr(component, k, None)) for k in _OUTPUT_KEYS}
        recorded = s.resources
    resources = [_entry(r) for r in order_resources(recorded)]
    image = outputs.get("image") or args.image
    return SynthResult(
        target=target_obj.name,
        image=str(image),
        resources=resources,
        outputs={k: v for k, v in outputs.items() if v is not None},
        warnings=log.messages,
    )


_OUTPUT_KEYS = ("endpoint_name", "endpoint_url", "image", "repository_url")


@contextmanager
def _placeholder_secrets(args: EndpointArgs) -> Iterator[None]:
    """
    Give unset `env:` secret references a placeholder while the mock engine runs.

    Synth is offline and needs no secrets, but component code reads `env:` references the way
    `up` does. The placeholder is never a real value, and it is masked like any secret.
    """
    missing = sorted(
        {ref[4:] for ref in args.secrets.values() if ref.startswith("env:")} - set(os.environ)
    )
    for name in missing:
        os.environ[name] = SYNTH_PLACEHOLDER
    try:
        yield
    finally:
        for name in missing:
            os.environ.pop(name, None)


def order_resources(recorded: list[RecordedResource]) -> list[RecordedResource]:
    """
    Parents before children, dependencies before dependents, ties by type then name.

    Registration order depends on thread timing in the mock engine; this order does not.
    """
    by_urn = {r.urn: r for r in recorded}
    needs = {r.urn: {u for u in [r.parent, *r.depends_on] if u in by_urn} for r in recorded}
    users: dict[str, list[str]] = {u: [] for u in by_urn}
    for urn, deps in needs.items():
        for dep in deps:
            users[dep].append(urn)
    ready = [(by_urn[u].type, by_urn[u].name, u) for u, deps in needs.items() if not deps]
    heapq.heapify(ready)
    out: list[RecordedResource] = []
    while ready:
        _, _, urn = heapq.heappop(ready)
        out.append(by_urn[urn])
        for user in users[urn]:
            needs[user].discard(urn)
            if not needs[user]:
                heapq.heappush(ready, (by_urn[user].type, by_urn[user].name, user))
    placed = {r.urn for r in out}  # a cycle cannot happen in Pulumi; keep the rest anyway
    return out + sorted((r for r in recorded if r.urn not in placed), key=lambda r: r.urn)


def mask_inputs(value: Any, key: str = "") -> Any:
    """
    A JSON-safe copy of recorded inputs with every secret replaced by "[secret]".

    Masked: Pulumi secrets (wrapped by the engine; a secret map keeps its keys), string
    values under a key that names a secret (password, token, apiKey, ...), and the `value`
    of a {name, value} env entry whose name does.
    """
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return _mask_all(value.get("value"))
        if value.get(_SIG_KEY):
            return _special(value)
        out = {str(k): mask_inputs(value[k], str(k)) for k in sorted(value, key=str)}
        if isinstance(out.get("name"), str) and "value" in out and _sensitive(out["name"]):
            out["value"] = MASK
        return out
    if isinstance(value, list | tuple):
        return [mask_inputs(v, key) for v in value]
    if isinstance(value, str):
        return MASK if value and _sensitive(key) else value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else value
    if value is None or isinstance(value, bool | int):
        return value
    return str(value)


def _mask_all(value: Any) -> Any:
    """A secret: keep a map's keys (names such as HF_TOKEN), hide every value."""
    if isinstance(value, dict):
        return {str(k): _mask_all(value[k]) for k in sorted(value, key=str)}
    return MASK


def _sensitive(key: str) -> bool:
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    return bool(_SENSITIVE.search(norm)) and not norm.endswith(_REFERENCE_SUFFIXES)


def _special(value: dict[str, Any]) -> Any:
    """Assets, archives and resource references, rendered as short strings."""
    if "urn" in value:
        return value["urn"]
    if "path" in value or "uri" in value:
        return f"asset:{value.get('path') or value.get('uri')}"
    return "[computed]"


def _entry(r: RecordedResource) -> dict[str, Any]:
    parent = r.parent if r.parent and "::pulumi:pulumi:Stack::" not in r.parent else None
    return {
        "urn": r.urn,
        "type": r.type,
        "name": r.name,
        "parent": parent,
        "depends_on": sorted(r.depends_on),
        "inputs": mask_inputs(r.inputs),
    }


def _settle(session: Any, value: Any) -> Any:
    """A component output's value, or "[secret]" when it is a Pulumi secret."""
    if value is None:
        return None
    if session.is_secret(value):
        return MASK
    return session.resolve(value)


class _Collector:
    """Keeps the engine's log messages (pulumi.log.*) for the human view, off the console."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.logger = logging.getLogger(f"mdeploy.synth.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.handlers = [_ListHandler(self.messages)]


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())
