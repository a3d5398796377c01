"""
Where SageMaker pulls the image from: Amazon ECR, and how skopeo logs in to it.

The login is a 12-hour token from `ecr:GetAuthorizationToken` (user `AWS`). boto3 is imported
inside the function, so `mdeploy --help` never pays for it; `AWS_ENDPOINT_URL` is honoured by
boto3 itself (tests point it at a moto server). The token is returned, never printed.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from mdeploy.errors import CloudError, InputError, PrerequisiteError
from mdeploy.targets.registry import Credentials, registry_host

__all__ = ["ECR_HOST", "ecr_host_parts", "registry_credentials", "repository_for"]

# <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]
ECR_HOST = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9])"
    r"\.amazonaws\.com(?P<cn>\.cn)?$"
)
_REPO = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_CREDENTIALS_HINT = (
    "configure AWS credentials: `aws configure`, `aws sso login`, AWS_PROFILE, or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
)


def ecr_host_parts(host: str) -> tuple[str, str] | None:
    """(account, region) of an ECR registry host, or None when `host` is not ECR."""
    match = ECR_HOST.match(host)
    return (match["account"], match["region"]) if match else None


def repository_for(account: str, region: str, name: str) -> str:
    """
    The ECR repository SageMaker pulls from in `region`.

    >>> repository_for("123456789012", "eu-west-3", "mdeploy/vllm")
    '123456789012.dkr.ecr.eu-west-3.amazonaws.com/mdeploy/vllm'
    """
    if not re.fullmatch(r"[0-9]{12}", account):
        raise InputError(f"AWS account {account!r}: expected 12 digits")
    if not _REPO.match(name) or len(name) > 256:
        raise InputError(f"ECR repository {name!r}: lowercase letters, digits, . _ - and /")
    suffix = ".cn" if region.startswith("cn-") else ""
    host = f"{account}.dkr.ecr.{region}.amazonaws.com{suffix}"
    if not ECR_HOST.match(host):
        raise InputError(f"AWS region {region!r} is not a region name")
    return f"{host}/{name}"


def registry_credentials(ref: str, *, session: Any = None) -> Credentials | None:
    """
    An ECR login for the registry of `ref`, or None when `ref` is not on ECR.

    Raises PrerequisiteError when boto3 or AWS credentials are missing, CloudError when ECR
    refuses.
    """
    parts = ecr_host_parts(registry_host(ref))
    if parts is None:
        return None
    account, region = parts
    data = _authorization_data(account, region, session)
    try:
        user, sep, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    except (KeyError, binascii.Error, UnicodeDecodeError) as exc:
        raise CloudError(
            f"ECR returned an unreadable authorization token ({type(exc).__name__})"
        ) from None
    if not sep:
        raise CloudError("ECR returned an authorization token without user:password")
    return Credentials(user, password, source=f"ecr get-authorization-token ({region})")


def _authorization_data(account: str, region: str, session: Any) -> dict[str, Any]:
    try:
        import boto3
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
    except ImportError:
        raise PrerequisiteError(
            "boto3 is needed to log in to Amazon ECR", hint="pip install 'mdeploy[aws]'"
        ) from None
    client = (session or boto3.session.Session()).client("ecr", region_name=region)
    try:
        reply = client.get_authorization_token(registryIds=[account])
    except (NoCredentialsError, PartialCredentialsError):
        raise PrerequisiteError("no AWS credentials found", hint=_CREDENTIALS_HINT) from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise CloudError(
            f"ECR GetAuthorizationToken for {account} in {region} failed: "
            f"{err.get('Code', '?')}: {err.get('Message', '')}",
            hint="the identity needs ecr:GetAuthorizationToken",
        ) from None
    except BotoCoreError as exc:
        raise CloudError(f"ECR GetAuthorizationToken in {region} failed: {exc}") from None
    items = reply.get("authorizationData") or []
    if not items:
        raise CloudError(f"ECR returned no authorization data for account {account}")
    return items[0]
