"""
Garbage-collector policy for the phases that build large, long-lived object graphs.

Planning (the catalog's offers, ranked: 10^5 objects at 100x the bundled catalog) and building
a Pulumi component (its provider's generated type modules: 10^5-10^6 objects) allocate data
that lives until the process ends. Each full collection walks all of it again, so such a
phase runs with the cyclic collector paused: 20-40 % of `plan` at 100x and of `synth`, measured
(benchmarks/plan_scale.py, benchmarks/cli.py).

At the end of a phase, a short-lived process freezes what is alive (`gc.freeze`): frozen
objects sit in the permanent generation, which collections skip, and reference counting still
frees them. Only the CLI turns that on (`freeze_after_long_lived_phases`), because frozen
reference cycles are never collected: a long-lived process that uses mdeploy as a library (the
test suite, a service) only gets the pause, and its garbage cycles are collected as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_after_long_lived_phases", "frozen_for_fork", "long_lived_phase"]

_freeze = False


def freeze_after_long_lived_phases() -> None:
    """For a short-lived process (the CLI): freeze what each long-lived phase leaves alive."""
    global _freeze
    _freeze = True


@contextmanager
def long_lived_phase() -> Iterator[None]:
    """Run the block with the cyclic collector paused (a caller that disabled it keeps it off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _freeze:
            gc.freeze()
        if enabled:
            gc.enable()


@contextmanager
def frozen_for_fork() -> Iterator[None]:
    """
    Freeze before forking workers, as the Python docs advise: the children's collections then
    leave the pages they share with this process alone. A library caller gets its objects back
    into collection afterwards; the CLI keeps them frozen (its exit skips walking them).
    """
    gc.freeze()
    try:
        yield
    finally:
        if not _freeze:
            gc.unfreeze()
