"""
Where Azure ML pulls the image from: Azure Container Registry, and how skopeo logs in to it.

ACR takes an Entra ID (AAD) access token in exchange for an ACR refresh token
(`POST https://<registry>/oauth2/exchange`, form `grant_type=access_token`, `service`,
`access_token`, optional `tenant`), which then works as the password of the fixed user
`00000000-0000-0000-0000-000000000000`. This is what `az acr login` does. azure-identity is
imported inside the function; the exchange is one stdlib HTTPS POST. Tokens are returned,
never printed, and never put in an error message.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mdeploy.errors import CloudError, InputError, PrerequisiteError
from mdeploy.targets.registry import Credentials, registry_host

__all__ = [
    "ACR_HOST",
    "ACR_USER",
    "exchange_refresh_token",
    "registry_credentials",
    "repository_for",
]

ACR_HOST = re.compile(r"^(?P<name>[a-z0-9]{5,50})\.azurecr\.(?:io|cn|us)$")
ACR_USER = "00000000-0000-0000-0000-000000000000"
# The audience `az acr login` asks for; ACR accepts ARM-audience tokens for the exchange.
AAD_SCOPE = "https://management.core.windows.net/.default"
_TIMEOUT_S = 30
_REPO = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_CREDENTIALS_HINT = (
    "sign in with `az login`, or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, "
    "or run with a managed identity that has AcrPush on the registry"
)


def repository_for(registry: str, name: str) -> str:
    """
    The ACR repository Azure ML pulls from.

    >>> repository_for("mdeployeu", "mdeploy/vllm")
    'mdeployeu.azurecr.io/mdeploy/vllm'
    """
    host = registry if "." in registry else f"{registry}.azurecr.io"
    if not ACR_HOST.match(host):
        raise InputError(
            f"ACR registry {registry!r}: 5-50 lowercase letters and digits "
            "(login server <name>.azurecr.io)"
        )
    if not _REPO.match(name):
        raise InputError(f"ACR repository {name!r}: lowercase letters, digits, . _ - and /")
    return f"{host}/{name}"


def registry_credentials(
    ref: str, *, credential: Any = None, base_url: str | None = None
) -> Credentials | None:
    """
    An ACR login for the registry of `ref`, or None when `ref` is not on ACR.

    `credential` is any azure-identity credential (default: DefaultAzureCredential);
    `base_url` replaces `https://<registry>` (tests use a local fake).
    """
    host = registry_host(ref)
    if not ACR_HOST.match(host):
        return None
    aad_token = _aad_token(credential)
    refresh = exchange_refresh_token(
        host, aad_token, tenant=os.environ.get("AZURE_TENANT_ID"), base_url=base_url
    )
    return Credentials(ACR_USER, refresh, source="acr oauth2/exchange")


def exchange_refresh_token(
    registry: str, aad_token: str, *, tenant: str | None = None, base_url: str | None = None
) -> str:
    """Trade an AAD access token for an ACR refresh token at `/oauth2/exchange`."""
    form = {"grant_type": "access_token", "service": registry, "access_token": aad_token}
    if tenant:
        form["tenant"] = tenant
    url = f"{(base_url or f'https://{registry}').rstrip('/')}/oauth2/exchange"
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as reply:
            body = json.loads(reply.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise CloudError(
            f"ACR token exchange at {registry} was refused (HTTP {exc.code})",
            hint="the identity needs AcrPush (or AcrPull) on the registry",
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CloudError(f"ACR token exchange at {registry} failed: {_reason(exc)}") from None
    except ValueError:
        raise CloudError(f"ACR token exchange at {registry} returned invalid JSON") from None
    token = body.get("refresh_token") if isinstance(body, dict) else None
    if not token:
        raise CloudError(f"ACR token exchange at {registry} returned no refresh_token")
    return str(token)


def _aad_token(credential: Any) -> str:
    try:
        from azure.core.exceptions import ClientAuthenticationError
    except ImportError:
        raise PrerequisiteError(
            "azure-identity is needed to log in to ACR", hint="pip install 'mdeploy[azure]'"
        ) from None
    if credential is None:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise PrerequisiteError(
                "azure-identity is needed to log in to ACR", hint="pip install 'mdeploy[azure]'"
            ) from None
        credential = DefaultAzureCredential()
    try:
        return str(credential.get_token(AAD_SCOPE).token)
    except ClientAuthenticationError as exc:
        first = str(exc.message or exc).splitlines()[0][:300]
        raise PrerequisiteError(
            f"no usable Azure credentials: {first}", hint=_CREDENTIALS_HINT
        ) from None


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc)
