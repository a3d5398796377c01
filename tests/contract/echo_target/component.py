"""The echo component: the Kubernetes one, plus the one output echo's ops reads back."""

from __future__ import annotations

from typing import Any

from mdeploy.targets.base import EndpointArgs
from mdeploy.targets.kubernetes.component import KubernetesEndpoint


class EchoEndpoint(KubernetesEndpoint):
    """A Kubernetes endpoint whose outputs also carry a note for EchoOps."""

    def __init__(self, name: str, args: EndpointArgs, opts: Any = None) -> None:
        super().__init__(name, args, opts)
        self.echo_note = f"echo of {args.name} in {args.region}"
