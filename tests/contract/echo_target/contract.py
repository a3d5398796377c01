"""What the contract test needs from echo: its stand-in, placement and capabilities."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PLACEMENT = "echo"  # the catalog target the contract spec is planned through
TRAFFIC_OPS = False  # EchoOps has status and invoke only


@contextmanager
def standin(outputs: dict[str, Any], monkeypatch: Any) -> Iterator[None]:
    """Echo's status needs no network: nothing to stand in for."""
    del outputs, monkeypatch
    yield
