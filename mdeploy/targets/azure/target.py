"""
The azure `Target`: the light entry point `get_target("azure")` returns.

The cloud's rules (names, tags, environment, settings, checks) live in `rules.py`; the Pulumi
resources in `component.py` and the day-2 client in `ops.py`, imported lazily by the methods
below, so that importing this module costs nothing and no module of the folder imports it back.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from mdeploy.targets.azure.rules import (
    az_cli_login,
    default_registry_name,
    repository_name,
    unsupported,
)
from mdeploy.targets.azure.settings import AzureStackConfig
from mdeploy.targets.base import EndpointArgs, Ops, QuotaProblem, Target

if TYPE_CHECKING:
    from mdeploy.spec.models import Deployment

__all__ = ["TARGET", "AzureTarget"]


class AzureTarget(Target):
    """Azure Machine Learning managed online endpoints (BYOC: the mdeploy vLLM image)."""

    name: ClassVar[str] = "azure"
    display_name: ClassVar[str] = "Azure Machine Learning"
    catalog_targets: ClassVar[tuple[str, ...]] = ("azure",)
    instance_label: ClassVar[str] = "Azure ML managed"  # one instance per replica
    secret_ref_forms: ClassVar[tuple[str, ...]] = ("azure-kv:VAULT/NAME",)  # Key Vault
    # Blob Storage URLs: the spec takes them so unsupported() can say what to do instead
    # (the image downloads hf://, s3:// and gs:// only; Azure ML gets hf://).
    model_source_schemes: ClassVar[tuple[str, ...]] = ("az",)
    pulumi_plugins: ClassVar[tuple[str, ...]] = ("azure-native",)
    python_modules: ClassVar[tuple[str, ...]] = ("pulumi", "pulumi_azure_native", "azure")
    registry_hosts: ClassVar[tuple[str, ...]] = (r"^[a-z0-9]+\.azurecr\.(io|cn|us)$",)
    output_names: ClassVar[tuple[str, ...]] = (
        "endpoint_id",
        "deployment_name",
        "workspace_name",
        "resource_group_name",
        "subscription_id",
        "auth_mode",
    )
    credentials_hint: ClassVar[str] = (
        "run `az login` or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET "
        "(Pulumi also reads ARM_CLIENT_ID/ARM_TENANT_ID/ARM_CLIENT_SECRET/ARM_SUBSCRIPTION_ID)"
    )

    def component(self, resource_name: str, args: EndpointArgs, opts: Any = None) -> Any:
        """Create the AzureEndpoint component (imports Pulumi and azure-native now)."""
        from mdeploy.targets.azure.component import AzureEndpoint

        return AzureEndpoint(resource_name, args, opts)

    def registry_repository(self, args: EndpointArgs, stack_config: dict[str, str]) -> str:
        """`<acr>.azurecr.io/mdeploy/<image>`: mdeploy:registryName, else the derived name."""
        from mdeploy.targets.azure.registry import repository_for

        registry = AzureStackConfig.from_stack(stack_config).registry_name or default_registry_name(
            args, stack_config.get("azure-native:subscriptionId", "")
        )
        return repository_for(registry.lower(), repository_name(args.image))

    def stack_config(self, args: EndpointArgs) -> dict[str, str]:
        """The azure-native provider's location is the placement's region."""
        return {"azure-native:location": args.region}

    def check_credentials(self) -> tuple[bool, str]:
        """Look for credentials the way azure-identity and Pulumi do, without a network call."""
        env = os.environ
        if env.get("AZURE_CLIENT_ID") and env.get("AZURE_TENANT_ID"):
            for key in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
                        "AZURE_CLIENT_CERTIFICATE_PATH"):  # fmt: skip
                if env.get(key):
                    return True, f"service principal from AZURE_CLIENT_ID + {key}"
        if env.get("ARM_CLIENT_ID") and env.get("ARM_TENANT_ID"):
            for key in ("ARM_CLIENT_SECRET", "ARM_OIDC_TOKEN", "ARM_USE_OIDC", "ARM_USE_MSI"):
                if env.get(key):
                    return True, f"service principal from ARM_CLIENT_ID + {key}"
        if env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"):
            return True, "managed identity (IDENTITY_ENDPOINT)"
        return az_cli_login()

    def unsupported(self, spec: Deployment) -> dict[str, str]:
        """Spec features Azure ML managed online endpoints cannot honour, with the fix."""
        return unsupported(spec)

    def quota_problem(self, args: EndpointArgs) -> QuotaProblem | None:
        """The Azure ML VM-family vCPU quota `up` would exceed (see azure/quota.py)."""
        from mdeploy.targets.azure.quota import quota_problem

        return quota_problem(args)

    def ops(self, outputs: dict[str, Any]) -> Ops:
        """The HTTPS day-2 client for a deployed stack's outputs."""
        from mdeploy.targets.azure.ops import AzureOps

        return AzureOps.from_outputs(outputs)

    def fake_outputs(
        self, typ: str, name: str, inputs: dict[str, Any], region: str
    ) -> dict[str, Any]:
        """An ACR login server for offline synth."""
        del region  # Unused: ACR login servers carry no region.
        if typ.startswith("azure-native:containerregistry") and typ.endswith(":Registry"):
            return {"loginServer": f"{(inputs.get('registryName') or name).lower()}.azurecr.io"}
        return {}

    def fake_call(self, token: str, region: str) -> dict[str, Any] | None:
        """The client config (all-zero ids) for offline synth."""
        del region  # Unused.
        if token != "azure-native:authorization:getClientConfig":
            return None
        zero = "00000000-0000-0000-0000-000000000000"
        return {"subscriptionId": zero, "tenantId": zero, "clientId": zero, "objectId": zero}


TARGET = AzureTarget()
