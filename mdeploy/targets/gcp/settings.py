"""
The Vertex AI target's stack settings (`pulumi config set mdeploy:<key>`), every key optional.

The field descriptions are the documentation; the table below is rendered from them by
`settings_table(GcpSettings, markdown=False)` and a test keeps the two equal.

======================  ========================================================================
project                 GCP project id (else `gcp:project`, GOOGLE_CLOUD_PROJECT, gcloud)
existingRepository      Artifact Registry repository id (same region) to pull from
network                 VPC for a private endpoint (VPC peering / private services access):
                        projects/<project NUMBER>/global/networks/<name>
dedicatedEndpoint       true | false: dedicated DNS (needed for streamRawPredict)
serviceAccountEmail     run the container as this existing service account
kmsKeyName              CMEK for the repository, the endpoint and the model
acceleratorDutyCycle    autoscaling target on GPU duty cycle, 1–100 (Vertex default 60)
repositoryKeepVersions  keep this many image versions, delete older ones after 30 days
======================  ========================================================================
"""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from mdeploy.errors import InputError
from mdeploy.targets._config import Flag, StackSettings, Whole

__all__ = ["GcpSettings"]

_NETWORK = re.compile(r"^projects/[0-9]+/global/networks/[a-z]([-a-z0-9]*[a-z0-9])?$")
_SERVICE_ACCOUNT = re.compile(r"[^@\s]+@[a-z0-9.-]+\.iam\.gserviceaccount\.com")


class GcpSettings(StackSettings):
    """The `mdeploy:*` keys of a Vertex AI stack, parsed and checked once."""

    project: str | None = Field(
        None,
        alias="project",
        description="GCP project id (else `gcp:project`, GOOGLE_CLOUD_PROJECT, gcloud)",
    )
    existing_repository: str | None = Field(
        None,
        alias="existingRepository",
        description="Artifact Registry repository id (same region) to pull from",
    )
    network: str | None = Field(
        None,
        alias="network",
        description="VPC for a private endpoint (VPC peering / private services access): "
        "projects/<project NUMBER>/global/networks/<name>",
    )
    dedicated_endpoint: Flag = Field(
        False,
        alias="dedicatedEndpoint",
        description="true | false: dedicated DNS (needed for streamRawPredict)",
    )
    service_account_email: str | None = Field(
        None,
        alias="serviceAccountEmail",
        description="run the container as this existing service account",
    )
    kms_key_name: str | None = Field(
        None, alias="kmsKeyName", description="CMEK for the repository, the endpoint and the model"
    )
    accelerator_duty_cycle: Whole | None = Field(
        None,
        ge=1,
        le=100,
        alias="acceleratorDutyCycle",
        description="autoscaling target on GPU duty cycle, 1–100 (Vertex default 60)",
    )
    repository_keep_versions: Whole | None = Field(
        None,
        ge=1,
        le=1000,
        alias="repositoryKeepVersions",
        description="keep this many image versions, delete older ones after 30 days",
    )

    @model_validator(mode="after")
    def check(self) -> GcpSettings:
        """Refuse combinations Vertex would reject after minutes of provisioning."""
        if self.network and self.dedicated_endpoint:
            raise InputError(
                "mdeploy:network and mdeploy:dedicatedEndpoint exclude each other",
                hint="a VPC-peered endpoint is private already; drop one of the two keys",
            )
        if self.network and not _NETWORK.match(self.network):
            raise InputError(
                f"mdeploy:network = {self.network!r}: expected "
                "projects/<project number>/global/networks/<name>",
                hint="Vertex wants the project NUMBER here (gcloud projects describe <id>)",
            )
        email = self.service_account_email
        if email and not _SERVICE_ACCOUNT.fullmatch(email):
            raise InputError(
                f"mdeploy:serviceAccountEmail = {email!r}: not a service account email"
            )
        return self
