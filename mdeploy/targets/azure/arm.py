"""
The Azure Resource Manager (ARM) REST client the Azure modules share.

Plain HTTPS with an azure-identity credential for the bearer token: azure-ai-ml and the
azure-mgmt-* packages are not dependencies (azure-ai-ml pins an OpenTelemetry that
conflicts with Pulumi's). One client does the four things every ARM caller needs: the
token, JSON both ways with the `api-version` query parameter, lists paged by `nextLink`,
and long-running operations polled through their `Azure-AsyncOperation` URL until a
terminal status. HTTP errors become mdeploy errors by status (404 → NotFoundError,
409 → ConflictError, others → CloudError), with ARM's own `error.code`/`error.message`.

Tokens are secrets: fetched per call, never logged or put in a message. `MDEPLOY_AZURE_ARM_URL`
replaces the ARM base URL (tests point it at a fake on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from mdeploy.errors import CloudError, PrerequisiteError
from mdeploy.targets.base import NotFoundError

__all__ = [
    "ARM_SCOPE",
    "ARM_URL_ENV",
    "CREDENTIALS_HINT",
    "DEFAULT_ARM_URL",
    "ArmClient",
    "ConflictError",
    "arm_error",
    "default_credential",
    "reason",
]

ARM_URL_ENV = "MDEPLOY_AZURE_ARM_URL"
DEFAULT_ARM_URL = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
CREDENTIALS_HINT = "run `az login` or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET"
MAX_PAGES = 100  # bounded: ARM pages are large
_TERMINAL = ("succeeded", "failed", "canceled", "cancelled")


class ConflictError(CloudError):
    """ARM answered 409: another operation runs on the resource; retrying later may work."""


class ArmClient:
    """
    ARM calls at one `api_version` with one credential.

    `credential` is any azure-identity credential (default: `default_credential()`, created
    on first use); `base_url` defaults to $MDEPLOY_AZURE_ARM_URL, then the public cloud.
    """

    def __init__(
        self,
        api_version: str,
        *,
        credential: Any = None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.api_version = api_version
        self.base_url = (base_url or os.environ.get(ARM_URL_ENV) or DEFAULT_ARM_URL).rstrip("/")
        self.timeout_s = timeout_s
        self._credential = credential

    def __repr__(self) -> str:
        return f"ArmClient(base_url={self.base_url!r}, api_version={self.api_version!r})"

    def token(self, scope: str) -> str:
        """A bearer token for `scope` (PrerequisiteError, exit 3, when there is none)."""
        try:
            from azure.core.exceptions import ClientAuthenticationError
        except ImportError:
            raise _sdk_missing() from None
        try:
            if self._credential is None:
                self._credential = default_credential()
            return str(self._credential.get_token(scope).token)
        except ClientAuthenticationError as exc:
            first = str(getattr(exc, "message", None) or exc).splitlines()[0][:300]
            raise PrerequisiteError(
                f"no usable Azure credentials: {first}", hint=CREDENTIALS_HINT
            ) from None

    def url(self, path_or_url: str) -> str:
        """An ARM path with the base URL and api-version; a full URL (nextLink) as is."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}{path_or_url}?api-version={self.api_version}"

    def call(self, method: str, path: str, *, body: Any = None, what: str) -> dict[str, Any]:
        """One ARM call; the parsed JSON reply ({} when empty)."""
        return self.call_full(method, path, body=body, what=what)[0]

    def call_full(
        self, method: str, path: str, *, body: Any = None, what: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """One ARM call: bearer token, JSON both ways, errors mapped; (reply, headers)."""
        headers = {
            "Authorization": f"Bearer {self.token(ARM_SCOPE)}",
            "Accept": "application/json",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url(path), data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                raw = reply.read()
                got = {k.lower(): v for k, v in reply.headers.items()}
        except urllib.error.HTTPError as exc:
            raise arm_error(exc, method, what) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CloudError(
                f"cannot reach Azure Resource Manager ({what}): {reason(exc)}"
            ) from None
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise CloudError(f"Azure Resource Manager returned invalid JSON for {what}") from None
        return (parsed if isinstance(parsed, dict) else {}), got

    def list(self, path: str, *, what: str) -> list[dict[str, Any]]:
        """Every item of a paged ARM list (`value`, following `nextLink`, MAX_PAGES at most)."""
        url: str | None = self.url(path)
        items: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            if not url:
                break
            page = self.call("GET", url, what=what)
            items += [v for v in page.get("value") or [] if isinstance(v, dict)]
            url = page.get("nextLink")
        return items

    def wait(
        self,
        operation_url: str | None,
        state: str | None,
        *,
        what: str,
        current_state: Callable[[], str | None],
        poll_interval_s: float,
        timeout_s: float,
    ) -> None:
        """
        Wait for a long-running operation to reach a terminal status; CloudError unless it
        succeeded.

        `operation_url` is the reply's Azure-AsyncOperation (or Location) URL; without one,
        `current_state()` re-reads the resource's provisioningState, starting from `state`.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if operation_url:
                state = self.call("GET", operation_url, what="async operation").get("status")
            if state is None or str(state).lower() in _TERMINAL:
                break
            if time.monotonic() > deadline:
                raise CloudError(
                    f"{what} still {state} after {timeout_s:.0f} s",
                    hint="check `mdeploy status`; the operation may still finish",
                )
            time.sleep(poll_interval_s)
            if not operation_url:
                state = current_state()
        if state is not None and str(state).lower() != "succeeded":
            raise CloudError(
                f"update of {what} ended {state}",
                hint="see the endpoint's activity log in the Azure portal",
            )


def _sdk_missing() -> PrerequisiteError:
    return PrerequisiteError(
        "azure-identity is needed for Azure day-2 operations", hint="pip install 'mdeploy[azure]'"
    )


def default_credential() -> Any:
    """DefaultAzureCredential, or a client-secret one from Pulumi's ARM_* variables."""
    try:
        from azure.identity import ClientSecretCredential, DefaultAzureCredential
    except ImportError:
        raise _sdk_missing() from None
    env = os.environ
    arm = ("ARM_TENANT_ID", "ARM_CLIENT_ID", "ARM_CLIENT_SECRET")
    if not env.get("AZURE_CLIENT_ID") and all(env.get(k) for k in arm):
        return ClientSecretCredential(*(env[k] for k in arm))
    return DefaultAzureCredential()


def arm_error(exc: urllib.error.HTTPError, method: str, what: str) -> CloudError:
    """An ARM HTTP error as the mdeploy error its status means, ARM's own words included."""
    code, message = _arm_error_parts(exc)
    hints = {
        401: CREDENTIALS_HINT,
        403: "the identity needs Contributor or AzureML Data Scientist on the workspace",
        404: "not found: was `mdeploy up` run in this subscription, and is the stack right?",
        409: "another operation is running on the endpoint; retry when it finishes",
    }
    detail = f" {code}: {message}" if code or message else ""
    kind = {404: NotFoundError, 409: ConflictError}.get(exc.code, CloudError)
    return kind(
        f"Azure Resource Manager {method} ({what}) failed: HTTP {exc.code}{detail}",
        hint=hints.get(exc.code),
    )


def _arm_error_parts(exc: urllib.error.HTTPError) -> tuple[str, str]:
    try:
        body = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")[:500]


def reason(exc: Exception) -> str:
    """Why a connection failed, from a URLError (its reason) or any OSError."""
    why = getattr(exc, "reason", None)
    return str(why if why is not None else exc)
