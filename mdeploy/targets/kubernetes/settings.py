"""
The Kubernetes target's stack settings (`pulumi config set mdeploy:<key>`), every key optional.

The field descriptions are the documentation; the table below is rendered from them by
`settings_table(KubernetesSettings, markdown=False)` and a test keeps the two equal.

=================  =============================================================================
createNamespace    true | false (default true)
registry           existing repository for the image
imagePullSecret    Secret name for a private registry
ingressHost        host name; creates an Ingress
ingressClass       default "nginx"
ingressTlsSecret   TLS Secret for the host
ingressAuthUrl     external auth (auth: iam)
allowedNamespaces  comma list allowed to reach the pods (default: any, on the adapter port)
cpu                container CPU (default derived from the GPUs)
memory             container memory (default derived from the weights)
shmSize            /dev/shm size (default 4Gi, 16Gi with several GPUs)
hpaPodsMetric      a custom Pods metric for the HPA instead of CPU utilization
hpaTarget          the HPA target: the metric's average value (default 4) with hpaPodsMetric,
                   else a CPU utilization percent (default 70)
=================  =============================================================================
"""

from __future__ import annotations

from pydantic import Field, model_validator

from mdeploy.errors import InputError
from mdeploy.targets._config import Flag, StackSettings, TextList

__all__ = ["KubernetesSettings"]


class KubernetesSettings(StackSettings):
    """The `mdeploy:*` keys of a Kubernetes (CoreWeave) stack, parsed and checked once."""

    create_namespace: Flag | None = Field(
        None, alias="createNamespace", description="true | false (default true)"
    )
    registry: str | None = Field(
        None, alias="registry", description="existing repository for the image"
    )
    image_pull_secret: str | None = Field(
        None, alias="imagePullSecret", description="Secret name for a private registry"
    )
    ingress_host: str | None = Field(
        None, alias="ingressHost", description="host name; creates an Ingress"
    )
    ingress_class: str | None = Field(None, alias="ingressClass", description='default "nginx"')
    ingress_tls_secret: str | None = Field(
        None, alias="ingressTlsSecret", description="TLS Secret for the host"
    )
    ingress_auth_url: str | None = Field(
        None, alias="ingressAuthUrl", description="external auth (auth: iam)"
    )
    allowed_namespaces: TextList = Field(
        (),
        alias="allowedNamespaces",
        description="comma list allowed to reach the pods (default: any, on the adapter port)",
    )
    cpu: str | None = Field(
        None, alias="cpu", description="container CPU (default derived from the GPUs)"
    )
    memory: str | None = Field(
        None, alias="memory", description="container memory (default derived from the weights)"
    )
    shm_size: str | None = Field(
        None, alias="shmSize", description="/dev/shm size (default 4Gi, 16Gi with several GPUs)"
    )
    hpa_pods_metric: str | None = Field(
        None,
        alias="hpaPodsMetric",
        description="a custom Pods metric for the HPA instead of CPU utilization",
    )
    hpa_target: str | None = Field(
        None,
        alias="hpaTarget",
        description="the HPA target: the metric's average value (default 4) with "
        "hpaPodsMetric, else a CPU utilization percent (default 70)",
    )

    @model_validator(mode="after")
    def check(self) -> KubernetesSettings:
        """A CPU utilization target is a whole percentage; a metric value is a quantity."""
        if self.hpa_target and not self.hpa_pods_metric and not self.hpa_target.isdigit():
            raise InputError(
                f"mdeploy:hpaTarget = {self.hpa_target!r}: a CPU utilization target is a "
                "whole percentage",
                hint="or set mdeploy:hpaPodsMetric to scale on a custom metric's value",
            )
        return self
