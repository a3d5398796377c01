"""
The Azure Machine Learning rules: names, secrets, tags and settings defaults. Offline.

Holds Azure's naming rules and the offline checks (credentials present? spec supported?);
imports no Pulumi and no Azure SDK at module level. `component()` loads the Pulumi component,
`ops()` the HTTPS day-2 client, each only when called.

Name limits (how-to-manage-quotas, "Azure Machine Learning online endpoints and batch
endpoints"): endpoint and deployment names begin with a letter, are 3-32 characters of letters
and digits, single dashes accepted; the endpoint name is unique per Azure region, because it is
the host name `<name>.<region>.inference.ml.azure.com`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mdeploy.errors import InputError
from mdeploy.serve.contract import (
    AZUREML_LIVENESS_ROUTE,
    AZUREML_PORT,
    AZUREML_READINESS_ROUTE,
    AZUREML_SCORING_ROUTE,
)
from mdeploy.target_names import secret_ref_prefixes
from mdeploy.targets.azure.settings import AzureStackConfig
from mdeploy.targets.base import EndpointArgs, unloadable_source

if TYPE_CHECKING:
    from mdeploy.spec.models import Deployment

__all__ = [
    "NAME_MAX",
    "NAME_MIN",
    "AzureSettings",
    "az_cli_login",
    "azure_tags",
    "default_registry_name",
    "deployment_name_for",
    "endpoint_name_for",
    "engine_environment",
    "environment_version",
    "name_problem",
    "parse_secret_ref",
    "read_local_secret",
    "repository_name",
    "unsupported",
]

NAME_MIN, NAME_MAX = 3, 32  # endpoint and deployment names (how-to-manage-quotas)
REQUEST_TIMEOUT_MAX_MS = 180_000  # max request time-out of a managed endpoint (same page)
MAX_INSTANCES = 50  # instances per managed deployment (same page)
_ACR_MAX = 50  # registry names: 5-50 lowercase letters and digits, globally unique
# Reference forms Azure ML can resolve at container start (secret injection) or that the
# deployer's machine can read at `up` time (stored in Key Vault, never as plain values).
SECRET_KINDS = ("env:", "file:", *secret_ref_prefixes("azure"))  # as target.py declares
_AZURE_KV = re.compile(
    r"^azure-kv:(?P<vault>[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9])/"
    r"(?P<name>[A-Za-z0-9-]{1,127})(?:/(?P<version>[A-Za-z0-9]{1,64}))?$"
)


# Callers put the endpoint's own credential (endpoint key or Entra token) in the Authorization
# header (how-to-authenticate-online-endpoint), which is where vLLM looks for its API key, so
# an engine key would make every scoring call answer 401.
VLLM_API_KEY_REASON = (
    "Azure ML authenticates every request itself: callers send the endpoint key or an Entra "
    "token as the bearer, which vLLM would compare with VLLM_API_KEY and answer 401; remove "
    "VLLM_API_KEY from serving.secrets and use serving.auth: key or auth: iam"
)


def name_problem(name: str, what: str = "endpoint") -> str | None:
    """Why `name` is not a valid Azure ML endpoint or deployment name, or None when it is."""
    if not NAME_MIN <= len(name) <= NAME_MAX:
        return (
            f"{what} name {name!r} is {len(name)} characters; Azure ML allows {NAME_MIN}-{NAME_MAX}"
        )
    if not name[0].isalpha() or not name.isascii():
        return f"{what} name {name!r} must begin with a letter"
    if not re.fullmatch(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*", name):
        return f"{what} name {name!r}: only letters, digits and single dashes, not ending in '-'"
    return None


def endpoint_name_for(name: str, env: str, override: str | None = None) -> str:
    """
    The endpoint name: metadata.name, plus `-<env>` outside the default environment.

    Raises InputError naming the limit when the result breaks Azure's rules.

    >>> endpoint_name_for("mistral-7b-chat", "prod")
    'mistral-7b-chat-prod'
    """
    derived = override or (name if env in ("", "default") else f"{name}-{env}")
    problem = name_problem(derived)
    if problem:
        raise InputError(
            problem,
            hint="shorten metadata.name (or the environment name), or choose the name with "
            "`pulumi config set mdeploy:endpointName <3-32 letters, digits, dashes>`",
        )
    return derived


def deployment_name_for(model_version: str) -> str:
    """
    The deployment name for a model version: 'v' + the version, sanitised to Azure's rules.

    Names are at least 3 characters, so version "1" becomes "v-1"; "v2" stays "v-2".

    >>> deployment_name_for("1"), deployment_name_for("2024.06-rc1")
    ('v-1', 'v2024-06-rc1')
    """
    cleaned = re.sub(r"[^a-z0-9]+", "-", model_version.lower()).strip("-")
    if re.match(r"v[0-9]", cleaned):  # "v2" is already a version label
        cleaned = cleaned[1:]
    name = f"v{cleaned}"[:NAME_MAX].rstrip("-")
    if len(name) < NAME_MIN:
        name = f"v-{cleaned}"
    problem = name_problem(name, "deployment")
    if problem:
        raise InputError(problem, hint="model.version must contain letters or digits")
    return name


def default_registry_name(args: EndpointArgs, subscription_id: str = "") -> str:
    """
    A stable ACR name for the endpoint: 'mdeploy' + name + a hash (ACR names are global).

    The hash covers name, environment, region and subscription (when known), so two stacks
    never share a registry by accident and the name is known before the registry exists.
    """
    basis = "|".join([args.name, args.env, args.region, subscription_id])
    digest = hashlib.sha256(basis.encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9]", "", args.name.lower())[: _ACR_MAX - len("mdeploy") - 8]
    return f"mdeploy{stem}{digest}"


def repository_name(image: str) -> str:
    """
    The ACR repository for an image: 'mdeploy/' + the last path segment of its repository.

    >>> repository_name("ghcr.io/acme/vllm@sha256:ab")
    'mdeploy/vllm'
    """
    base = image.split("@", 1)[0]
    last = base.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", last).strip("._-") or "image"
    return f"mdeploy/{cleaned}"


def parse_secret_ref(env_name: str, ref: str) -> tuple[str, dict[str, str]]:
    """Split a secret reference into its kind and parts; InputError for kinds Azure lacks."""
    if ref.startswith("azure-kv:"):
        match = _AZURE_KV.match(ref)
        if not match:
            raise InputError(
                f"serving.secrets.{env_name}: malformed azure-kv reference",
                hint="use azure-kv:VAULT/NAME or azure-kv:VAULT/NAME/VERSION",
            )
        return "azure-kv", {k: v for k, v in match.groupdict().items() if v}
    if ref.startswith(("env:", "file:")):
        kind, _, where = ref.partition(":")
        return kind, {"where": where}
    raise InputError(
        f"serving.secrets.{env_name}: {ref.split(':', 1)[0]}: references cannot be resolved "
        "by Azure ML",
        hint="use azure-kv:VAULT/NAME (Key Vault), env:NAME or file:PATH",
    )


# ---- what the container and its resources carry (plain values) -------------------------


def engine_environment(args: EndpointArgs) -> dict[str, str]:
    """Model and engine settings the image's entrypoint reads (plain values, no secrets)."""
    env = {
        "MDEPLOY_PLATFORM": "azureml",
        "MDEPLOY_MODEL_ID": args.model_id,
        "MDEPLOY_MODEL_REVISION": args.model_revision,
        "MDEPLOY_SERVED_MODEL_NAME": args.served_model_name,
        "MDEPLOY_ENGINE_ARGS": json.dumps(list(args.engine_args)),
    }
    if args.model_source:
        env["MDEPLOY_MODEL_SOURCE"] = args.model_source
    return env


def environment_version(image: str) -> str:
    """Environment versions are immutable: a new image (or route set) needs a new version."""
    basis = "|".join([image, str(AZUREML_PORT), AZUREML_LIVENESS_ROUTE,
                      AZUREML_READINESS_ROUTE, AZUREML_SCORING_ROUTE])  # fmt: skip
    return str(int(hashlib.sha256(basis.encode()).hexdigest()[:12], 16) % 1_000_000_000 + 1)


def read_local_secret(kind: str, where: str) -> str | None:
    """The value behind an env:/file: reference on the deployer's machine, or None."""
    from mdeploy.targets._secrets import read_local_secret as read

    return read(kind, where)


def azure_tags(args: EndpointArgs) -> dict[str, str]:
    """Spec labels as Azure tags (no < > % & \\ ? / in names, values up to 256 chars)."""
    tags = {
        "".join(c for c in k if c not in "<>%&\\?/")[:512]: str(v)[:256]
        for k, v in args.labels.items()
    }
    tags.update({"managed-by": "mdeploy", "mdeploy-env": args.env,
                 "mdeploy-model-version": args.model_version})  # fmt: skip
    return tags


@dataclass(frozen=True)
class AzureSettings:
    """
    The target's stack config with its derived defaults (private endpoint, prod, the spec's
    max_concurrency) applied; the keys themselves are declared, documented and checked by
    `settings.AzureStackConfig` (an unknown `mdeploy:*` key is refused).
    """

    resource_group: str | None = None
    workspace: str | None = None
    registry: str | None = None
    registry_group: str | None = None
    acr_pull: bool | None = None
    endpoint_name: str | None = None
    private: bool = False
    public_access: str = "Enabled"
    egress: str | None = None
    request_timeout_ms: int = 90_000
    max_concurrent: int = 16
    app_insights: bool = True
    purge_protection: bool = False
    secret_vault_group: str | None = None

    @classmethod
    def from_config(cls, raw: Mapping[str, str | None], args: EndpointArgs) -> AzureSettings:
        """Parse `mdeploy:*` values (with or without the prefix); InputError names the key."""
        cfg = AzureStackConfig.from_stack(raw)
        private = bool(cfg.private_endpoint)
        settings = cls(
            resource_group=cfg.resource_group_name,
            workspace=cfg.workspace_name,
            registry=cfg.registry_name,
            registry_group=cfg.registry_resource_group_name,
            acr_pull=cfg.acr_pull,
            endpoint_name=cfg.endpoint_name,
            private=private,
            public_access=cfg.public_network_access or ("Disabled" if private else "Enabled"),
            egress=cfg.egress_public_network_access,
            request_timeout_ms=cfg.request_timeout_ms or 90_000,
            max_concurrent=cfg.max_concurrent_requests_per_instance
            or int(args.extra.get("max_concurrency") or 16),
            app_insights=cfg.app_insights is not False,
            purge_protection=_default(cfg.key_vault_purge_protection, args.env == "prod"),
            secret_vault_group=cfg.secret_vault_resource_group_name,
        )
        settings.check(args)
        return settings

    def check(self, args: EndpointArgs) -> None:
        """Refuse values Azure would reject minutes into an `up`."""
        if not 1_000 <= self.request_timeout_ms <= REQUEST_TIMEOUT_MAX_MS:
            raise InputError(
                f"mdeploy:requestTimeoutMs={self.request_timeout_ms}: Azure ML allows 1000-180000",
                hint="managed online endpoints cap a scoring request at 180 s",
            )
        if self.max_concurrent < 1:
            raise InputError("mdeploy:maxConcurrentRequestsPerInstance must be at least 1")
        if self.workspace and not self.resource_group:
            raise InputError(
                "mdeploy:workspaceName needs mdeploy:resourceGroupName (the workspace's group)"
            )
        if not 1 <= args.replicas_min <= MAX_INSTANCES:
            raise InputError(
                f"serving.replicas.min={args.replicas_min}: "
                f"a managed deployment runs 1-{MAX_INSTANCES} instances",
                hint="more instances need a quota exception from Azure (how-to-manage-quotas)",
            )


def _default(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def az_cli_login() -> tuple[bool, str]:
    """Whether `az login` left a profile with at least one subscription."""
    config_dir = Path(os.environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")
    profile = config_dir / "azureProfile.json"
    if not profile.is_file():
        return False, f"no Azure credentials: no service principal variables and no {profile}"
    try:
        # `az` writes this file with a UTF-8 byte-order mark.
        data = json.loads(profile.read_text(encoding="utf-8-sig") or "{}")
    except (OSError, ValueError):
        return False, f"{profile} is unreadable; run `az login` again"
    if not (isinstance(data, dict) and data.get("subscriptions")):
        return False, f"{profile} lists no subscription; run `az login`"
    return True, f"Azure CLI login ({profile})"


def unsupported(spec: Deployment) -> dict[str, str]:
    """Spec features Azure ML managed online endpoints cannot honour, with the fix."""
    out: dict[str, str] = {}
    if spec.serving.auth == "none":
        out["serving.auth"] = (
            "Azure ML managed online endpoints always authenticate (key, aml_token or "
            "aad_token); use auth: key, or auth: iam for Microsoft Entra tokens"
        )
    if "VLLM_API_KEY" in spec.serving.secrets:
        out["serving.secrets.VLLM_API_KEY"] = VLLM_API_KEY_REASON
    # Name length is checked by the component, where mdeploy:endpointName can override it.
    for env_name, ref in sorted(spec.serving.secrets.items()):
        if env_name == "VLLM_API_KEY":
            continue
        try:
            parse_secret_ref(env_name, ref)
        except InputError as exc:
            out[f"serving.secrets.{env_name}"] = f"{exc.message}; {exc.hint}"
    # The deployment attaches no model asset: the image fetches the weights itself, and it
    # downloads only hf:// (the engine), s3:// (boto3) and gs:// (the GCE metadata
    # server's token, which exists only on Google Cloud).
    if scheme := unloadable_source(spec, ("hf", "s3")):
        out["model.source"] = (
            f"{scheme}:// weights are not downloaded by the image on "
            "Azure ML; use hf:// (or leave model.source out: the engine downloads model.id)"
        )
    return out
