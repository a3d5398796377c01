"""
`mdeploy up` after `mdeploy promote`: the promotion changed versions outside Pulumi, so `up`
refuses to race one (the lock, exit 4), to run over an interrupted one (exit 4), and to put
back the spec's version over a promoted one without --yes (exit 4, naming both versions).
Through the CLI and the fake `pulumi` CLI of tests/deploy (its fixtures, imported), and the
check itself (mdeploy/ops/drift.py) directly.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from deploy.conftest import (  # noqa: F401  (fixtures, used by name)
    DIGEST,
    IMAGE,
    REVISION,
    _no_cloud_quota_calls,
    cli,
    fake_pulumi,
    kube_api,
    kubeconfig,
    spec_file,
)

from mdeploy.errors import PolicyError
from mdeploy.ops.drift import check_before_up
from mdeploy.ops.state import StateStore, fresh_state

STACK = "mistral-7b-chat-default-kubernetes"
PROMOTED = {"name": "v2-abc123", "image": IMAGE.replace("5a" * 32, "7b" * 32),
            "model_revision": "r2", "replicas": 1}  # fmt: skip


def _store(home: Path) -> StateStore:
    return StateStore(home / "promotions")


def _state(phase: str, current: dict[str, Any]) -> dict[str, Any]:
    state = fresh_state(STACK)
    old = {"name": "mistral-7b-chat", "image": IMAGE, "model_revision": REVISION, "replicas": 1}
    state["promotion"] = {"from": old, "to": PROMOTED, "percents": [10, 50, 100],
                          "completed": 1 if phase == "shifting" else 3, "phase": phase}  # fmt: skip
    state["current"] = current
    state["history"] = [{"operation": "promote", "result": "promoted"}] if phase == "done" else []
    return state


def _home() -> Path:
    return Path(os.environ["MDEPLOY_HOME"])


@pytest.fixture
def up(request: pytest.FixtureRequest) -> Any:
    """`mdeploy up SPEC --target coreweave ARGS...` in-process, the fake pulumi first on PATH."""
    request.getfixturevalue("fake_pulumi")
    run, spec = request.getfixturevalue("cli"), request.getfixturevalue("spec_file")
    return lambda *args: run("up", spec, "--target", "coreweave", *args)


def test_up_is_refused_while_a_promotion_holds_the_lock(up: Any) -> None:
    lock = _store(_home()).lock(STACK, "promote")
    lock.acquire()  # this live process holds it, as a running `mdeploy promote` would
    try:
        result = up("--yes")
    finally:
        lock.release()
    assert result.exit_code == 4, result.stderr
    assert "another promote is running" in result.stderr and "`up` would change" in result.stderr
    assert f"pid {os.getpid()} on {socket.gethostname()}" in result.stderr


def test_up_is_refused_over_an_interrupted_promotion(up: Any) -> None:
    store = _store(_home())
    store.save(_state("shifting", {"name": "mistral-7b-chat", "image": IMAGE,
                                   "model_revision": REVISION}))  # fmt: skip
    result = up("--yes")
    assert result.exit_code == 4, result.stderr
    text = " ".join(result.stderr.split())
    assert "stopped after step 1 of 3" in text and "mdeploy rollback" in text
    assert "Traceback" not in result.stderr + result.stdout


def test_up_after_a_promotion_to_another_version_needs_yes(up: Any) -> None:
    _store(_home()).save(_state("done", PROMOTED))
    refused = up("--json")
    assert refused.exit_code == 4, refused.stderr
    text = " ".join(refused.stderr.split())
    assert "serves version v2-abc123" in text and "revision r2" in text
    assert f"revision {REVISION}" in text and "model.revision" in text and "--yes" in text
    done = up("--json", "--yes")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "succeeded"
    assert "serves version v2-abc123" in " ".join(done.stderr.split())  # said, not hidden


def test_up_proceeds_when_the_spec_declares_the_serving_version(up: Any) -> None:
    # The platform reports the image in the target's registry: same digest, other repository.
    copied = {"name": "v2-abc123", "image": f"registry.example.com/m/vllm@{DIGEST}",
              "model_revision": REVISION}  # fmt: skip
    _store(_home()).save(_state("done", copied))
    result = up("--json")
    assert result.exit_code == 0, result.stderr
    assert "outside Pulumi" in " ".join(result.stderr.split())  # a warning, not a refusal


def test_the_check_is_silent_without_any_promotion(tmp_path: Path) -> None:
    store = _store(tmp_path)
    check_before_up(store, STACK, IMAGE, REVISION)
    assert not store.folder.exists()  # `up` leaves no promotion folder behind


def test_a_rollback_to_the_declared_version_needs_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    state = _state("rolled-back", {"name": "m", "image": IMAGE, "model_revision": REVISION})
    store.save(state)
    warned: list[str] = []
    check_before_up(store, STACK, IMAGE, REVISION, warn=warned.append)
    assert len(warned) == 1 and "`mdeploy preview`" in warned[0]
    with pytest.raises(PolicyError, match="outside Pulumi"):
        check_before_up(store, STACK, IMAGE, "another-revision")
    warned.clear()
    check_before_up(store, STACK, IMAGE, "another-revision", yes=True, warn=warned.append)
    assert len(warned) == 1 and "mdeploy promote" in warned[0]
