"""
A recording Pulumi mock engine: runs real component code offline and keeps what it declared.

`pulumi.runtime.set_mocks` alone hands `Mocks.new_resource` only the type, name and inputs; the
parent and explicit dependencies travel on the gRPC request, so `RecordingMonitor` wraps
`RegisterResource` to capture them. Secrets stay wrapped (Pulumi's secret signature) so that the
synth renderer can mask them. `MockSession` resets Pulumi's global runtime state on entry and exit:
each synth or test starts from an empty stack, config and RPC queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from mdeploy import targets

__all__ = ["MockSession", "RecordedResource", "RecordingMocks", "RecordingMonitor"]

T = TypeVar("T")


@dataclass
class RecordedResource:
    """One resource the program declared: what a cloud preview would be asked to create."""

    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    parent: str | None = None
    depends_on: list[str] = field(default_factory=list)
    provider: str | None = None
    custom: bool = True
    read: bool = False  # a `get` of an existing resource, not a creation

    @property
    def opts(self) -> dict[str, Any]:
        """The resource options the monitor saw (parent, dependencies, provider)."""
        return {"parent": self.parent, "depends_on": self.depends_on, "provider": self.provider}


def _fake_outputs(typ: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    """Plausible provider-computed outputs, from the target that owns `typ` (the registry)."""
    return targets.fake_outputs(typ, name, inputs, region)


# Provider function answers a test pins; every other token is answered by the registry.
_INVOKES: dict[str, dict[str, Any]] = {}


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers resource creations with their inputs (+ plausible computed outputs)."""

    def __init__(self, region: str = "eu-west-3") -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.region = region  # the stack's provider region, so ARNs and registry URLs match it

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        return f"{args.name}-id", _fake_outputs(args.typ, args.name, args.inputs, self.region)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        self.calls.append((args.token, dict(args.args)))
        if args.token in _INVOKES:
            return dict(_INVOKES[args.token]), []
        return dict(targets.fake_call(args.token, self.region)), []


class RecordingMonitor(_mocks.MockMonitor):
    """A MockMonitor that records every registration with its parent and dependencies."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []
        self._lock = threading.Lock()

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """URNs as the real engine writes them: the root Stack is not part of a type chain."""
        if parent and parent.split("::")[2].split("$")[-1] == "pulumi:pulumi:Stack":
            parent = ""
        return super().make_urn(parent, type_, name)

    def _record(self, request: Any, *, read: bool) -> None:
        inputs = rpc.deserialize_properties(request.properties if read else request.object)
        deps = [] if read else sorted(set(request.dependencies))
        entry = RecordedResource(
            urn=self.make_urn(request.parent, request.type, request.name),
            type=request.type,
            name=request.name,
            inputs=dict(inputs),
            parent=request.parent or None,
            depends_on=deps,
            provider=request.provider or None,
            custom=True if read else bool(request.custom),
            read=read,
        )
        with self._lock:
            self.recorded.append(entry)

    def RegisterResource(self, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            _mocks._ensure_event_loop()
            self._record(request, read=False)
        return super().RegisterResource(request)

    def ReadResource(self, request: Any) -> Any:
        _mocks._ensure_event_loop()
        self._record(request, read=True)
        return super().ReadResource(request)


class MockSession:
    """
    Context manager: a fresh mock Pulumi runtime with optional stack config.

    >>> with MockSession(config={"mdeploy:createNamespace": "false"}) as s:
    ...     s.run(lambda: make_component())          # doctest: +SKIP
    ...     s.resources                              # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        project: str = "mdeploy",
        stack: str = "synth",
        config: dict[str, str] | None = None,
        secret_keys: list[str] | None = None,
        preview: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self.project, self.stack, self.preview = project, stack, preview
        self.logger = logger
        self.config = dict(config or {})
        self.secret_keys = list(secret_keys or [])
        self.mocks = RecordingMocks(targets.stack_region(self.config))
        self.monitor = RecordingMonitor(self.mocks)

    def __enter__(self) -> MockSession:
        _ensure_loop()
        _reset_runtime()
        set_all_config(self.config, self.secret_keys)
        pulumi.runtime.set_mocks(
            self.mocks,
            project=self.project,
            stack=self.stack,
            preview=self.preview,
            monitor=self.monitor,
            logger=self.logger,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        _reset_runtime()

    def set_config(self, config: dict[str, str], secret_keys: list[str] | None = None) -> None:
        """Add stack config (full keys, e.g. "mdeploy:createNamespace") for the next run()."""
        self.config.update(config)
        self.secret_keys.extend(secret_keys or [])
        set_all_config(dict(self.config), list(self.secret_keys))

    @property
    def resources(self) -> list[RecordedResource]:
        """Everything registered so far, in registration order."""
        return list(self.monitor.recorded)

    def by_type(self, type_token: str) -> list[RecordedResource]:
        """The recorded resources of one Pulumi type token."""
        return [r for r in self.monitor.recorded if r.type == type_token]

    def one(self, type_token: str) -> RecordedResource:
        """The single recorded resource of `type_token` (AssertionError when not exactly one)."""
        found = self.by_type(type_token)
        assert len(found) == 1, f"expected one {type_token}, got {[r.name for r in found]}"
        return found[0]

    def run(self, program: Callable[[], T]) -> T:
        """Run `program` as a Pulumi program and wait until every RPC and output settles."""
        box: dict[str, T] = {}

        def body() -> None:
            box["result"] = program()

        settings.SETTINGS.rpc_manager.clear()
        settings.SETTINGS.outputs.clear()
        _sync_await(run_pulumi_func(body))
        return box["result"]

    def resolve(self, value: Any) -> Any:
        """The settled value of an Output (or plain value); secrets come back unwrapped."""
        out = pulumi.Output.from_input(value)
        return _sync_await(out.future())

    def is_secret(self, value: Any) -> bool:
        """Whether an Output is marked secret."""
        return bool(_sync_await(pulumi.Output.from_input(value).is_secret()))


def _ensure_loop() -> None:
    """Pulumi's runtime needs a usable event loop; asyncio.run() elsewhere may have unset it."""
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def _reset_runtime() -> None:
    """Forget the previous program: root stack, settings, config, queued RPCs and outputs."""
    settings.reset_options(project="mdeploy", stack="synth", preview=False)
    set_all_config({}, [])
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()


def iter_types(resources: list[RecordedResource]) -> Iterator[str]:
    """Type tokens in registration order (helper for quick assertions)."""
    return (r.type for r in resources)
