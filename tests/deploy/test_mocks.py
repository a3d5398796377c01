"""The recording mock engine: parents, dependencies, secrets, config, and a clean reset."""

from __future__ import annotations

import pulumi
import pytest

from mdeploy.deploy.mocks import MockSession
from mdeploy.deploy.synth import order_resources

SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"


class _Pair(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("test:index:Pair", name, {}, opts)
        from pulumi_random import RandomPassword, RandomPet

        child = pulumi.ResourceOptions(parent=self)
        self.first = RandomPet("first", length=2, opts=child)
        cfg = pulumi.Config("mdeploy")
        self.second = RandomPassword(
            "second",
            length=int(cfg.get("length") or 16),
            keepers={"token": pulumi.Output.secret("s3cr3t")},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.first]),
        )
        self.register_outputs({})


def test_records_parent_dependencies_and_secret_inputs():
    with MockSession(stack="t") as s:
        pair = s.run(lambda: _Pair("pair"))
        urn = s.resolve(pair.urn)
        first, second = (
            s.one("random:index/randomPet:RandomPet"),
            s.one("random:index/randomPassword:RandomPassword"),
        )
    assert urn == "urn:pulumi:t::mdeploy::test:index:Pair::pair"
    assert first.parent == second.parent == urn
    assert second.depends_on == [first.urn]
    chain = "test:index:Pair$random:index/randomPassword:RandomPassword"
    assert second.urn == f"urn:pulumi:t::mdeploy::{chain}::second"
    keepers = second.inputs["keepers"]
    assert keepers[SIG_KEY] == SECRET_SIG and keepers["value"] == {"token": "s3cr3t"}
    assert second.opts["depends_on"] == [first.urn]


def test_config_is_visible_and_reset_between_sessions():
    with MockSession(config={"mdeploy:length": "40"}) as s:
        s.run(lambda: _Pair("pair"))
        assert s.one("random:index/randomPassword:RandomPassword").inputs["length"] == 40
    with MockSession() as s:
        s.run(lambda: _Pair("pair"))
        assert s.one("random:index/randomPassword:RandomPassword").inputs["length"] == 16
        assert len(s.resources) == 3  # nothing left over from the first program


def test_program_errors_propagate():
    def broken() -> None:
        raise ValueError("boom")

    with MockSession() as s, pytest.raises(ValueError, match="boom"):
        s.run(broken)


def test_order_is_topological_and_stable():
    with MockSession() as s:
        s.run(lambda: _Pair("pair"))
        recorded = s.resources
    ordered = order_resources(list(reversed(recorded)))
    assert [r.name for r in ordered] == ["pair", "first", "second"]
    assert order_resources(recorded) == ordered


def test_works_after_asyncio_run_unset_the_loop():
    import asyncio

    asyncio.run(asyncio.sleep(0))  # leaves no current event loop in the main thread
    with MockSession() as s:
        s.run(lambda: _Pair("pair"))
        assert len(s.resources) == 3
