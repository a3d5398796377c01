"""
The Azure ML target's stack settings (`pulumi config set mdeploy:<key>`), every key optional.

The field descriptions are the documentation; the table below is rendered from them by
`settings_table(AzureStackConfig, markdown=False)` and a test keeps the two equal. Defaults
that depend on the spec or on another key are applied by `target.AzureSettings`.

================================  ==============================================================
resourceGroupName                 existing resource group (required with workspaceName)
workspaceName                     existing workspace; else one is created with its dependencies
registryName                      existing ACR (in registryResourceGroupName, default the group)
registryResourceGroupName         the group of registryName
acrPull                           grant AcrPull on the registry to the endpoint identity;
                                  default only when mdeploy does not create the workspace (Azure
                                  ML already grants it on the workspace's registry, and a
                                  duplicate assignment fails with RoleAssignmentExists: set
                                  false when registryName is the workspace's)
endpointName                      override the derived endpoint name (3-32 chars, unique per
                                  region)
privateEndpoint                   true: endpoint and workspace public network access off,
                                  workspace managed network (AllowInternetOutbound, so weights
                                  still download), Premium ACR; scoring then needs the workspace
                                  private endpoint, which your network provides (mdeploy creates
                                  no VNet)
publicNetworkAccess               Enabled | Disabled (default Disabled with privateEndpoint)
egressPublicNetworkAccess         Enabled | Disabled (legacy network isolation; Azure default)
requestTimeoutMs                  scoring timeout, default 90000, at most 180000 (Azure's
                                  maximum)
maxConcurrentRequestsPerInstance  default serving.max_concurrency else 16; Azure's own default
                                  of 1 answers 429 to a second concurrent request
appInsights                       default true
keyVaultPurgeProtection           default true in env "prod"; Azure never lets it be turned off
secretVaultResourceGroupName      group of azure-kv: vaults (default resourceGroupName)
================================  ==============================================================
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from mdeploy.targets._config import Flag, StackSettings, Whole

__all__ = ["AzureStackConfig"]


def _access(value: Any) -> Any:
    """Enabled | Disabled, any case, as Azure spells it."""
    text = str(value).strip().lower()
    if text not in ("enabled", "disabled"):
        raise ValueError("use Enabled or Disabled")
    return text.capitalize()


Access = Annotated[Literal["Enabled", "Disabled"], BeforeValidator(_access)]


class AzureStackConfig(StackSettings):
    """The `mdeploy:*` keys of an Azure ML stack, as written (None = not set)."""

    resource_group_name: str | None = Field(
        None,
        alias="resourceGroupName",
        description="existing resource group (required with workspaceName)",
    )
    workspace_name: str | None = Field(
        None,
        alias="workspaceName",
        description="existing workspace; else one is created with its dependencies",
    )
    registry_name: str | None = Field(
        None,
        alias="registryName",
        description="existing ACR (in registryResourceGroupName, default the group)",
    )
    registry_resource_group_name: str | None = Field(
        None, alias="registryResourceGroupName", description="the group of registryName"
    )
    acr_pull: Flag | None = Field(
        None,
        alias="acrPull",
        description="grant AcrPull on the registry to the endpoint identity; default only when "
        "mdeploy does not create the workspace (Azure ML already grants it on the workspace's "
        "registry, and a duplicate assignment fails with RoleAssignmentExists: set false when "
        "registryName is the workspace's)",
    )
    endpoint_name: str | None = Field(
        None,
        alias="endpointName",
        description="override the derived endpoint name (3-32 chars, unique per region)",
    )
    private_endpoint: Flag | None = Field(
        None,
        alias="privateEndpoint",
        description="true: endpoint and workspace public network access off, workspace "
        "managed network (AllowInternetOutbound, so weights still download), Premium ACR; "
        "scoring then needs the workspace private endpoint, which your network provides "
        "(mdeploy creates no VNet)",
    )
    public_network_access: Access | None = Field(
        None,
        alias="publicNetworkAccess",
        description="Enabled | Disabled (default Disabled with privateEndpoint)",
    )
    egress_public_network_access: Access | None = Field(
        None,
        alias="egressPublicNetworkAccess",
        description="Enabled | Disabled (legacy network isolation; Azure default)",
    )
    request_timeout_ms: Whole | None = Field(
        None,
        alias="requestTimeoutMs",
        description="scoring timeout, default 90000, at most 180000 (Azure's maximum)",
    )
    max_concurrent_requests_per_instance: Whole | None = Field(
        None,
        ge=1,
        alias="maxConcurrentRequestsPerInstance",
        description="default serving.max_concurrency else 16; Azure's own default of 1 "
        "answers 429 to a second concurrent request",
    )
    app_insights: Flag | None = Field(None, alias="appInsights", description="default true")
    key_vault_purge_protection: Flag | None = Field(
        None,
        alias="keyVaultPurgeProtection",
        description='default true in env "prod"; Azure never lets it be turned off',
    )
    secret_vault_resource_group_name: str | None = Field(
        None,
        alias="secretVaultResourceGroupName",
        description="group of azure-kv: vaults (default resourceGroupName)",
    )
