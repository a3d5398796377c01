"""
The Operation a stack command runs: everything `stack.prepare` checked and resolved.

Its own module so the lifecycle (`stack`) and the parts it uses (`engine_errors`,
`interrupts`, `shipping`) all name it without importing one another in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mdeploy.deploy.program import Resolved
    from mdeploy.spec import LoadedSpec
    from mdeploy.targets.base import Target

__all__ = ["Operation"]


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
