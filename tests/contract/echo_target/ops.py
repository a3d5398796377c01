"""Day-2 for echo: status is the stack outputs, echoed in the one EndpointHealth shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mdeploy.targets.base import EndpointHealth, VersionHealth


@dataclass
class EchoOps:
    """The Ops protocol without a cloud: what the outputs say is what status says."""

    outputs: dict[str, Any]

    def status(self) -> EndpointHealth:
        version = VersionHealth(
            name="v1", traffic_percent=100, image=self.outputs.get("image"), replicas=1
        )
        return EndpointHealth(
            state="ready",
            url=self.outputs.get("endpoint_url"),
            versions=[version],
            replicas=1,
            details={"note": self.outputs.get("echo_note")},
        )

    def invoke(self, body: bytes | str | dict[str, Any], *, stream: bool = False) -> Any:
        del stream  # Unused: the echo answers at once.
        return {"echo": body}
