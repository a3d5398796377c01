"""`status --json` has one health shape, also when the cloud cannot be asked (stack.status)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from mdeploy.deploy import stack
from mdeploy.errors import CloudError
from mdeploy.targets.base import EndpointHealth

SHAPE = set(EndpointHealth(state="ready").to_json())


class _Target:
    name = "echo"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def ops(self, outputs: dict[str, Any]) -> Any:
        del outputs
        raise self.error


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (NotImplementedError("echo: day-2 operations are not implemented"), "not implemented"),
        (CloudError("the endpoint API timed out"), "timed out"),
    ],
)
def test_status_falls_back_to_the_one_shape(
    error: Exception, detail: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack, "outputs", lambda op: {"endpoint_name": "e"})
    op = SimpleNamespace(stack="s", target=_Target(error))
    report = stack.status(op)  # type: ignore[arg-type]
    assert set(report["health"]) == SHAPE
    assert report["health"]["state"] == "unknown" and detail in report["health"]["detail"]
