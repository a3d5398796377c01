"""
The traffic split of an Azure ML online endpoint, as a Pulumi dynamic resource.

Azure refuses a traffic map naming a deployment that does not exist yet, and the deployment
needs the endpoint first, so the map cannot be an input of the OnlineEndpoint (a cycle), nor of
a second OnlineEndpoint with the same name (azure-native will not create a resource that
already exists). `EndpointTraffic` depends on the deployment and does what
`az ml online-endpoint update --traffic` does (GET, edit `properties.traffic`, PUT) through
`ops.AzureOps`; on destroy it sets {} so the deployment can be deleted. Its diff reads the live
split, so a split changed by hand is put back by the next `up`.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic

from mdeploy.errors import MdeployError
from mdeploy.targets.base import NotFoundError, validate_weights

__all__ = ["EndpointTraffic"]


class _TrafficProvider(pulumi.dynamic.ResourceProvider):
    """Sets an endpoint's traffic split after its deployments exist (see module docstring)."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._apply(props)
        return pulumi.dynamic.CreateResult(f"{props['endpoint_id']}/traffic", outs)

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        same = olds.get("endpoint_id") == news.get("endpoint_id") and dict(
            olds.get("traffic") or {}
        ) == dict(news.get("traffic") or {})
        if same:
            same = _live_traffic(news) in (None, dict(news.get("traffic") or {}))
        return pulumi.dynamic.DiffResult(changes=not same)

    def update(
        self, _id: str, _olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(self._apply(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        from mdeploy.targets.azure.ops import AzureOps, EndpointRef

        ops = AzureOps(EndpointRef.from_id(props["endpoint_id"]))
        try:
            ops.put_traffic({})
        except NotFoundError:  # the endpoint is already gone
            return

    @staticmethod
    def _apply(props: dict[str, Any]) -> dict[str, Any]:
        from mdeploy.targets.azure.ops import AzureOps, EndpointRef

        traffic = {str(k): int(v) for k, v in dict(props["traffic"]).items()}
        AzureOps(EndpointRef.from_id(props["endpoint_id"])).put_traffic(validate_weights(traffic))
        return {"endpoint_id": props["endpoint_id"], "traffic": traffic}


def _live_traffic(props: dict[str, Any]) -> dict[str, int] | None:
    """The endpoint's current split, or None when it cannot be read (then inputs decide)."""
    from mdeploy.targets.azure.ops import AzureOps, EndpointRef

    try:
        return AzureOps(EndpointRef.from_id(props["endpoint_id"])).traffic()
    except MdeployError:
        return None


class EndpointTraffic(pulumi.dynamic.Resource, module="azure", name="EndpointTraffic"):
    """The traffic split of an online endpoint, e.g. {"v2": 100}; applied after deployments."""

    endpoint_id: pulumi.Output[str]
    traffic: pulumi.Output[dict[str, int]]

    def __init__(
        self,
        name: str,
        *,
        endpoint_id: pulumi.Input[str],
        traffic: pulumi.Input[dict[str, int]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            _TrafficProvider(), name, {"endpoint_id": endpoint_id, "traffic": traffic}, opts
        )
