"""
The Azure ML managed online endpoint as one Pulumi ComponentResource (`mdeploy:azure:Endpoint`).

Children (parented, short local names): resource group, workspace with storage, Key Vault and
Application Insights (or existing ones, by config), ACR, EnvironmentVersion (image by digest,
adapter routes), OnlineEndpoint (system-assigned identity), role assignments, Key Vault
secrets, OnlineDeployment, and `traffic`, which routes 100 % to the deployment once it exists.

Traffic is its own resource (`traffic.EndpointTraffic`, see there why): Azure refuses a traffic
map naming a deployment that does not exist yet.

Secrets never appear as plain values: `env:NAME` / `file:PATH` values are read on the deployer's
machine at `up` time into a Key Vault secret (a Pulumi secret); `azure-kv:VAULT/NAME` stays in
its vault. The deployment's environment only holds `${{keyvault:<secret URI>}}` references,
which Azure ML resolves with the endpoint identity when the container starts (secret injection,
how-to-deploy-online-endpoint-with-secret-injection); that identity gets "Key Vault Secrets
User" on each vault. Vaults use RBAC authorization.

Stack config (`mdeploy:*`) is parsed and checked by `target.AzureSettings` before any resource
is declared.
"""

from __future__ import annotations

import math
from typing import Any

import pulumi

from mdeploy.errors import InputError
from mdeploy.serve.contract import (
    AZUREML_LIVENESS_ROUTE,
    AZUREML_PORT,
    AZUREML_READINESS_ROUTE,
    AZUREML_SCORING_ROUTE,
)
from mdeploy.targets._config import stack_values
from mdeploy.targets._pulumi_imports import import_only
from mdeploy.targets.azure.rules import (
    AzureSettings,
    azure_tags,
    default_registry_name,
    deployment_name_for,
    endpoint_name_for,
    engine_environment,
    environment_version,
    parse_secret_ref,
    read_local_secret,
    repository_name,
)
from mdeploy.targets.azure.traffic import EndpointTraffic
from mdeploy.targets.base import EndpointArgs, image_with_registry

__all__ = [
    "AUTH_MODES",
    "OUTPUTS",
    "TYPE_TOKEN",
    "AzureEndpoint",
    "EndpointTraffic",
    "probe_settings",
]

# The resource modules used, not whole subpackages (each __init__ imports its API group).
_NATIVE = "pulumi_azure_native"
ml = import_only(
    f"{_NATIVE}.machinelearningservices",
    "workspace", "environment_version", "online_endpoint", "online_deployment",
)  # fmt: skip
acr = import_only(f"{_NATIVE}.containerregistry", "registry")
keyvault = import_only(f"{_NATIVE}.keyvault", "vault", "secret", "get_secret")
storage = import_only(f"{_NATIVE}.storage", "storage_account")
resources = import_only(f"{_NATIVE}.resources", "resource_group")
authorization = import_only(f"{_NATIVE}.authorization", "role_assignment", "get_client_config")
appinsights = import_only(f"{_NATIVE}.applicationinsights", "component")
loganalytics = import_only(f"{_NATIVE}.operationalinsights", "workspace")

TYPE_TOKEN = "mdeploy:azure:Endpoint"
OUTPUTS = (
    "endpoint_name", "endpoint_url", "endpoint_id", "deployment_name", "image", "repository_url",
    "workspace_name", "resource_group_name", "subscription_id", "auth_mode",
)  # fmt: skip
AUTH_MODES = {"key": "Key", "iam": "AADToken"}  # spec auth → OnlineEndpoint auth_mode
# Built-in role definition ids (Azure RBAC built-in roles reference).
ACR_PULL_ROLE = "7f951dda-4ed3-4680-a7ca-43fe172d538d"  # AcrPull
KV_SECRETS_USER_ROLE = "4633458b-17de-408a-b874-0445c86b69e6"  # Key Vault Secrets User
_ROLES = "/providers/Microsoft.Authorization/roleDefinitions/"
PROBE_PERIOD_S = 10
PROBE_TIMEOUT_S = 5
LIVENESS_FAILURES = 6  # a hung replica is restarted after a minute once it has started
# Shown in place of a Key Vault secret version that only `up` can read (synth, mocks).
UNRESOLVED = "<current-version-at-up>"


class AzureEndpoint(pulumi.ComponentResource):
    """A vLLM endpoint on an Azure ML managed online endpoint, pulled from ACR by digest."""

    endpoint_name: pulumi.Output[str]
    endpoint_url: pulumi.Output[str]
    endpoint_id: pulumi.Output[str]
    deployment_name: pulumi.Output[str]
    image: pulumi.Output[str]
    repository_url: pulumi.Output[str]
    workspace_name: pulumi.Output[str]
    resource_group_name: pulumi.Output[str]
    subscription_id: pulumi.Output[str]
    auth_mode: pulumi.Output[str]

    def __init__(
        self, name: str, args: EndpointArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, {}, opts)
        settings = AzureSettings.from_config(stack_values(), args)
        if args.auth not in AUTH_MODES:
            raise InputError(
                f"serving.auth: {args.auth!r} is not possible on Azure ML managed online "
                "endpoints (they always authenticate)",
                hint="use auth: key, or auth: iam for Microsoft Entra tokens",
            )
        refs = {env: parse_secret_ref(env, ref) for env, ref in sorted(args.secrets.items())}
        ep_name = endpoint_name_for(args.name, args.env, settings.endpoint_name)
        dep_name = deployment_name_for(args.model_version)
        self._child = pulumi.ResourceOptions(parent=self)
        self._args, self._settings, self._tags = args, settings, azure_tags(args)
        self._client = authorization.get_client_config_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        )

        group = self._resource_group(ep_name)
        self.repository = self._registry(group)
        repo_name = repository_name(args.image)
        self.repository_url = self.repository.login_server.apply(lambda h: f"{h}/{repo_name}")
        self.image = self.repository_url.apply(lambda repo: image_with_registry(args.image, repo))
        workspace, vault, creates_workspace = self._workspace(group, ep_name, refs)
        where = {"resource_group_name": group, "workspace_name": workspace}

        environment = ml.EnvironmentVersion(
            "environment",
            name=f"mdeploy-{ep_name}",
            version=environment_version(args.image),
            properties=ml.EnvironmentVersionPropertiesArgs(
                image=self.image,
                os_type="Linux",
                description=f"mdeploy vLLM image for {args.model_id}",
                inference_config=_inference_config(),
                tags=self._tags,
            ),
            # Versions are immutable assets Azure ML archives rather than deletes; a replaced
            # one stays in the workspace instead of failing the update.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            **where,
        )
        endpoint = ml.OnlineEndpoint(
            "endpoint",
            endpoint_name=ep_name,
            location=args.region,
            identity=ml.ManagedServiceIdentityArgs(type="SystemAssigned"),
            properties=ml.OnlineEndpointPropertiesArgs(
                auth_mode=AUTH_MODES[args.auth],
                public_network_access=settings.public_access,
                description=f"mdeploy {args.name} ({args.env}): {args.model_id}",
            ),
            tags=self._tags,
            # The split belongs to the `traffic` resource below, never to the endpoint's inputs.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["properties.traffic"]),
            **where,
        )
        secret_env, vault_scopes = self._secrets(refs, ep_name, group, vault)
        acr_pull = settings.acr_pull if settings.acr_pull is not None else not creates_workspace
        grants = self._grants(endpoint, vault_scopes, acr_pull)
        deployment = ml.OnlineDeployment(
            "deployment",
            deployment_name=dep_name,
            endpoint_name=ep_name,
            location=args.region,
            sku=ml.SkuArgs(name="Default", capacity=args.replicas_min),
            properties=self._deployment_properties(environment.id, secret_env),
            tags=self._tags,
            # Secret injection and the image pull use the identity's grants at creation time.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[endpoint, *grants]),
            **where,
        )
        EndpointTraffic(
            "traffic",
            endpoint_id=endpoint.id,
            traffic={dep_name: 100},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )
        self._outputs(endpoint, ep_name, dep_name, where)

    def _outputs(self, endpoint: Any, ep_name: str, dep_name: str, where: dict[str, Any]) -> None:
        """Set the typed output attributes and register the same values."""
        region = self._args.region
        self.endpoint_name = pulumi.Output.from_input(ep_name)
        self.endpoint_id = endpoint.id
        self.endpoint_url = endpoint.properties.apply(
            lambda p: _field(p, "scoring_uri") or _scoring_uri(ep_name, region)
        )
        self.deployment_name = pulumi.Output.from_input(dep_name)
        self.workspace_name = pulumi.Output.from_input(where["workspace_name"])
        self.resource_group_name = pulumi.Output.from_input(where["resource_group_name"])
        self.subscription_id = self._client.subscription_id
        self.auth_mode = pulumi.Output.from_input(AUTH_MODES[self._args.auth])
        self.register_outputs({name: getattr(self, name) for name in OUTPUTS})

    # ---- shared resources -----------------------------------------------------------------

    def _resource_group(self, ep_name: str) -> pulumi.Input[str]:
        """The resource group's name: the configured one, else a group created here."""
        if self._settings.resource_group:
            return self._settings.resource_group
        name = f"mdeploy-{ep_name}"
        group = resources.ResourceGroup(
            "group",
            resource_group_name=name,
            location=self._args.region,
            tags=self._tags,
            opts=self._child,
        )
        return _after(group, name)

    def _registry(self, group: pulumi.Input[str]) -> Any:
        """The ACR Azure ML pulls from: admin user off, anonymous pull off."""
        s = self._settings
        if s.registry:
            path = f"Microsoft.ContainerRegistry/registries/{s.registry}"
            return acr.Registry.get(
                "registry", id=self._arm_id(s.registry_group or group, path), opts=self._child
            )
        subscription = pulumi.Config("azure-native").get("subscriptionId") or ""
        return acr.Registry(
            "registry",
            registry_name=default_registry_name(self._args, subscription),
            resource_group_name=group,
            location=self._args.region,
            # Premium is what a workspace managed network needs for a private endpoint to ACR;
            # Standard's 100 GiB holds multi-GB inference images (Basic has 10 GiB).
            sku=acr.SkuArgs(name="Premium" if s.private else "Standard"),
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            tags=self._tags,
            opts=self._child,
        )

    def _workspace(
        self, group: pulumi.Input[str], ep_name: str, refs: dict[str, tuple[str, dict[str, str]]]
    ) -> tuple[pulumi.Input[str], Any, bool]:
        """(workspace name, vault for env:/file: secrets or None, whether it is created)."""
        s, args = self._settings, self._args
        local = any(kind in ("env", "file") for kind, _ in refs.values())
        if s.workspace:
            return s.workspace, (self._vault(group) if local else None), False
        st = storage.StorageAccount(
            "storage",
            resource_group_name=group,
            location=args.region,
            kind="StorageV2",
            sku=storage.SkuArgs(name="Standard_LRS"),
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            allow_blob_public_access=False,
            public_network_access="Disabled" if s.private else "Enabled",
            tags=self._tags,
            opts=self._child,
        )
        vault = self._vault(group)
        insights = self._app_insights(group) if s.app_insights else None
        ws_name = f"mlw-{ep_name}"[:33].rstrip("-")
        workspace = ml.Workspace(
            "workspace",
            workspace_name=ws_name,
            resource_group_name=group,
            location=args.region,
            identity=ml.ManagedServiceIdentityArgs(type="SystemAssigned"),
            storage_account=st.id,
            key_vault=vault.id,
            application_insights=insights.id if insights else None,
            container_registry=self.repository.id,
            public_network_access=s.public_access,
            managed_network=(
                ml.ManagedNetworkSettingsArgs(isolation_mode="AllowInternetOutbound")
                if s.private
                else None
            ),
            friendly_name=f"mdeploy {args.name}",
            tags=self._tags,
            opts=self._child,
        )
        return _after(workspace, ws_name), vault, True

    def _vault(self, group: pulumi.Input[str]) -> Any:
        """A Key Vault in RBAC mode with soft delete (and purge protection when asked)."""
        return keyvault.Vault(
            "vault",
            resource_group_name=group,
            location=self._args.region,
            properties=keyvault.VaultPropertiesArgs(
                tenant_id=self._client.tenant_id,
                sku=keyvault.SkuArgs(family="A", name="standard"),
                enable_rbac_authorization=True,
                enable_soft_delete=True,
                soft_delete_retention_in_days=90,
                # Azure rejects an explicit false: omit it to leave purge protection off.
                enable_purge_protection=True if self._settings.purge_protection else None,
            ),
            tags=self._tags,
            opts=self._child,
        )

    def _app_insights(self, group: pulumi.Input[str]) -> Any:
        """Workspace-based Application Insights (classic components can no longer be made)."""
        logs = loganalytics.Workspace(
            "logs",
            resource_group_name=group,
            location=self._args.region,
            sku=loganalytics.WorkspaceSkuArgs(name="PerGB2018"),
            retention_in_days=30,
            tags=self._tags,
            opts=self._child,
        )
        return appinsights.Component(
            "insights",
            resource_group_name=group,
            location=self._args.region,
            kind="web",
            application_type="web",
            ingestion_mode="LogAnalytics",
            workspace_resource_id=logs.id,
            tags=self._tags,
            opts=self._child,
        )

    # ---- identity and secrets -------------------------------------------------------------

    def _arm_id(self, group: pulumi.Input[str], provider_path: str) -> pulumi.Output[str]:
        """The ARM id of a resource in `group` of the current subscription."""
        return pulumi.Output.concat(
            "/subscriptions/", self._client.subscription_id, "/resourceGroups/", group,
            "/providers/", provider_path,
        )  # fmt: skip

    def _grants(self, endpoint: Any, vault_scopes: list[Any], acr_pull: bool) -> list[Any]:
        """Key Vault Secrets User on each secret vault, and AcrPull when asked."""
        principal = endpoint.identity.apply(lambda i: _field(i, "principal_id"))
        grants = [
            self._grant(f"kv-secrets-user-{i}", principal, KV_SECRETS_USER_ROLE, scope)
            for i, scope in enumerate(vault_scopes)
        ]
        if acr_pull:
            grants.append(self._grant("acr-pull", principal, ACR_PULL_ROLE, self.repository.id))
        return grants

    def _grant(
        self, name: str, principal: pulumi.Input[str], role: str, scope: pulumi.Input[str]
    ) -> Any:
        """One role assignment for the endpoint's system-assigned identity."""
        return authorization.RoleAssignment(
            name,
            principal_id=principal,
            principal_type="ServicePrincipal",
            role_definition_id=pulumi.Output.concat(
                "/subscriptions/", self._client.subscription_id, _ROLES, role
            ),
            scope=scope,
            description=f"mdeploy: endpoint identity of {self._args.name}",
            opts=self._child,
        )

    def _secrets(
        self,
        refs: dict[str, tuple[str, dict[str, str]]],
        ep_name: str,
        group: pulumi.Input[str],
        vault: Any,
    ) -> tuple[dict[str, pulumi.Input[str]], list[pulumi.Input[str]]]:
        """Environment references (`${{keyvault:URI}}`) and the vault scopes to grant."""
        env: dict[str, pulumi.Input[str]] = {}
        scopes: dict[str, pulumi.Input[str]] = {}
        for var, (kind, parts) in refs.items():
            if kind == "azure-kv":
                rg = self._settings.secret_vault_group or self._settings.resource_group or group
                env[var] = self._vault_reference(parts, rg)
                path = f"Microsoft.KeyVault/vaults/{parts['vault']}"
                scopes[parts["vault"].lower()] = self._arm_id(rg, path)
                continue
            value = read_local_secret(kind, parts["where"])
            if value is None:
                pulumi.log.warn(
                    f"serving.secrets.{var}: {kind}:{parts['where']} is not set on this machine; "
                    "the deployment runs without it",
                    resource=self,
                )
                continue
            slug = var.lower().replace("_", "-")
            secret_name = f"{ep_name}-{slug}"[:127]
            secret = keyvault.Secret(
                f"secret-{slug}",
                resource_group_name=group,
                vault_name=vault.name,
                secret_name=secret_name,
                properties=keyvault.SecretPropertiesArgs(
                    value=pulumi.Output.secret(value), content_type="text/plain"
                ),
                tags=self._tags,
                opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["properties"]),
            )
            # The versioned URI names the secret; it is not the secret, so it may be plain.
            env[var] = pulumi.Output.unsecret(
                pulumi.Output.all(secret.properties, vault.name).apply(
                    lambda v, n=secret_name: _keyvault_ref(
                        _field(v[0], "secret_uri_with_version")
                        or f"https://{v[1] or '<vault>'}.vault.azure.net/secrets/{n}"
                    )
                )
            )
            scopes["<own>"] = vault.id
        return env, list(scopes.values())

    def _vault_reference(
        self, parts: dict[str, str], group: pulumi.Input[str]
    ) -> pulumi.Input[str]:
        """
        `${{keyvault:https://VAULT.vault.azure.net/secrets/NAME/VERSION}}` for an azure-kv ref.

        Secret injection documents only the versioned URI (azure-ai-docs
        how-to-deploy-online-endpoint-with-secret-injection, pattern table). A reference
        without a version is pinned to the secret's current version, read from ARM at `up`
        (Microsoft.KeyVault/vaults/secrets GET returns no value, only `secretUriWithVersion`),
        so rotating the secret and running `up` again redeploys with the new version. That
        read needs Microsoft.KeyVault/vaults/secrets/read on the vault (e.g. Key Vault Reader)
        for the identity running `up`.
        """
        base = f"https://{parts['vault']}.vault.azure.net/secrets/{parts['name']}"
        if "version" in parts:
            return _keyvault_ref(f"{base}/{parts['version']}")
        current = keyvault.get_secret_output(
            resource_group_name=group,
            vault_name=parts["vault"],
            secret_name=parts["name"],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        return current.properties.apply(
            lambda p: _keyvault_ref(_field(p, "secret_uri_with_version") or f"{base}/{UNRESOLVED}")
        )

    # ---- deployment -----------------------------------------------------------------------

    def _deployment_properties(
        self, environment_id: pulumi.Input[str], secret_env: dict[str, pulumi.Input[str]]
    ) -> ml.ManagedOnlineDeploymentArgs:
        args, s = self._args, self._settings
        liveness, readiness = probe_settings(args.startup_timeout_s)
        return ml.ManagedOnlineDeploymentArgs(
            endpoint_compute_type="Managed",
            instance_type=args.instance_type,
            environment_id=environment_id,
            environment_variables={**engine_environment(args), **secret_env},
            request_settings=ml.OnlineRequestSettingsArgs(
                request_timeout=_iso_seconds(s.request_timeout_ms / 1000),
                max_concurrent_requests_per_instance=s.max_concurrent,
            ),
            liveness_probe=liveness,
            readiness_probe=readiness,
            scale_settings=ml.DefaultScaleSettingsArgs(scale_type="Default"),
            app_insights_enabled=s.app_insights,
            egress_public_network_access=s.egress,
            description=f"{args.model_id} version {args.model_version}",
        )


def probe_settings(startup_timeout_s: int) -> tuple[Any, Any]:
    """
    (liveness, readiness) probes sized so a model that loads within its budget is never killed.

    Readiness starts early (a small model is routable as soon as it loads) and tolerates
    failures for the whole startup budget; Azure fails the deployment only after that. Liveness
    waits out the budget before its first probe (the fix for "Liveness probe failed: 502" on
    large models, Azure/mlops-v2#120), then restarts a replica after a minute of failures.
    """
    readiness_failures = max(1, math.ceil(startup_timeout_s / PROBE_PERIOD_S))
    common = {"period": _iso_seconds(PROBE_PERIOD_S), "timeout": _iso_seconds(PROBE_TIMEOUT_S)}
    liveness = ml.ProbeSettingsArgs(
        initial_delay=_iso_seconds(startup_timeout_s),
        failure_threshold=LIVENESS_FAILURES,
        success_threshold=1,
        **common,
    )
    readiness = ml.ProbeSettingsArgs(
        initial_delay=_iso_seconds(PROBE_PERIOD_S),
        failure_threshold=readiness_failures,
        success_threshold=1,
        **common,
    )
    return liveness, readiness


def _inference_config() -> Any:
    """The adapter's Azure ML routes (mdeploy.serve.contract), all on one port."""
    return ml.InferenceContainerPropertiesArgs(
        liveness_route=ml.RouteArgs(port=AZUREML_PORT, path=AZUREML_LIVENESS_ROUTE),
        readiness_route=ml.RouteArgs(port=AZUREML_PORT, path=AZUREML_READINESS_ROUTE),
        scoring_route=ml.RouteArgs(port=AZUREML_PORT, path=AZUREML_SCORING_ROUTE),
    )


def _iso_seconds(seconds: float) -> str:
    """ISO-8601 duration, e.g. 90 → 'PT90S', 0.5 → 'PT0.5S'."""
    return f"PT{seconds:g}S"


def _keyvault_ref(uri: str) -> str:
    """Azure ML's secret-injection syntax for a Key Vault secret."""
    return f"${{{{keyvault:{uri}}}}}"


def _scoring_uri(endpoint: str, region: str) -> str:
    """The documented scoring host, used only until Azure reports the real URI."""
    return f"https://{endpoint}.{region}.inference.ml.azure.com{AZUREML_SCORING_ROUTE}"


def _field(value: Any, name: str) -> Any:
    """A field of a resolved output object; secret outputs resolve to plain dicts."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _after(resource: Any, value: str) -> pulumi.Output[str]:
    """`value` (a name we chose) as an Output that depends on `resource` being created."""
    return resource.id.apply(lambda _: value)
