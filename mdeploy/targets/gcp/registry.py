"""
Where Vertex AI pulls the image from: Artifact Registry, and how skopeo logs in to it.

Vertex pulls only from an Artifact Registry repository in the endpoint's own region, so the
repository name carries the region. The login is an OAuth access token from Application
Default Credentials with the user `oauth2accesstoken` (what `gcloud auth
configure-docker` does). google-auth is imported inside the function; the token is
returned, never printed.
"""

from __future__ import annotations

import re
from typing import Any

from mdeploy.errors import CloudError, InputError, PrerequisiteError
from mdeploy.targets.registry import Credentials, registry_host

__all__ = ["GCP_HOST", "GCP_USER", "registry_credentials", "repository_for"]

# <region>-docker.pkg.dev (Artifact Registry) and the legacy gcr.io hosts.
GCP_HOST = re.compile(r"^(?:[a-z0-9-]+-docker\.pkg\.dev|(?:[a-z]+\.)?gcr\.io)$")
GCP_USER = "oauth2accesstoken"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REPOSITORY = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_IMAGE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]$")
_CREDENTIALS_HINT = (
    "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service-account key, or run on Google Cloud with a service account"
)


def repository_for(project: str, region: str, repository: str, name: str) -> str:
    """
    The Artifact Registry path Vertex pulls from (same region as the endpoint).

    >>> repository_for("my-proj-1", "europe-west4", "mdeploy", "vllm")
    'europe-west4-docker.pkg.dev/my-proj-1/mdeploy/vllm'
    """
    checks = [
        (_PROJECT, project, "project id"),
        (_REGION, region, "region"),
        (_REPOSITORY, repository, "Artifact Registry repository"),
        (_IMAGE, name, "image name"),
    ]
    for pattern, value, what in checks:
        if not pattern.match(value):
            raise InputError(f"GCP {what} {value!r} is not valid")
    return f"{region}-docker.pkg.dev/{project}/{repository}/{name}"


def registry_credentials(ref: str, *, credentials: Any = None) -> Credentials | None:
    """
    An Artifact Registry login for the registry of `ref`, or None when it is not on GCP.

    `credentials` is a google.auth credentials object (default: Application Default
    Credentials).
    """
    if not GCP_HOST.match(registry_host(ref)):
        return None
    return Credentials(
        GCP_USER, _access_token(credentials), source="google application default credentials"
    )


def _access_token(credentials: Any) -> str:
    try:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests
    except ImportError:
        raise PrerequisiteError(
            "google-auth is needed to log in to Artifact Registry",
            hint="pip install 'mdeploy[gcp]'",
        ) from None
    errors = google.auth.exceptions
    try:
        if credentials is None:
            credentials, _ = google.auth.default(scopes=[SCOPE])
        credentials.refresh(google.auth.transport.requests.Request())
    except errors.DefaultCredentialsError as exc:
        raise PrerequisiteError(
            f"no Google credentials found: {str(exc).splitlines()[0][:200]}",
            hint=_CREDENTIALS_HINT,
        ) from None
    except (errors.RefreshError, errors.TransportError) as exc:
        raise CloudError(
            f"could not get a Google access token: {type(exc).__name__}",
            hint=_CREDENTIALS_HINT,
        ) from None
    if not credentials.token:
        raise CloudError("Google credentials returned no access token", hint=_CREDENTIALS_HINT)
    return str(credentials.token)
