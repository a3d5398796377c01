"""
The gcp `Target`: the light entry point `get_target("gcp")` returns.

The cloud's rules (names, tags, environment, settings, checks) live in `rules.py`; the Pulumi
resources in `component.py` and the day-2 client in `ops.py`, imported lazily by the methods
below, so that importing this module costs nothing and no module of the folder imports it back.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from mdeploy.errors import InputError
from mdeploy.targets.base import EndpointArgs, Ops, QuotaProblem, Target
from mdeploy.targets.gcp.rules import (
    SUPPORTED_REFS,
    adc_source,
    image_name,
    project_from_env,
    repository_id,
    unsupported,
)
from mdeploy.targets.gcp.settings import GcpSettings

if TYPE_CHECKING:
    from mdeploy.spec.models import Deployment

__all__ = ["TARGET", "GcpTarget"]


class GcpTarget(Target):
    """Google Vertex AI online prediction: custom container, image in Artifact Registry."""

    name: ClassVar[str] = "gcp"
    display_name: ClassVar[str] = "Google Vertex AI"
    catalog_targets: ClassVar[tuple[str, ...]] = ("gcp",)
    instance_label: ClassVar[str] = "Vertex AI"  # one instance per replica
    secret_ref_forms: ClassVar[tuple[str, ...]] = ("gcp-sm:NAME",)  # Secret Manager
    model_source_schemes: ClassVar[tuple[str, ...]] = ("gs",)  # Cloud Storage
    pulumi_plugins: ClassVar[tuple[str, ...]] = ("gcp",)
    python_modules: ClassVar[tuple[str, ...]] = ("pulumi", "pulumi_gcp", "google", "httpx")
    registry_hosts: ClassVar[tuple[str, ...]] = (
        r"^([a-z0-9-]+-docker\.pkg\.dev|([a-z]+\.)?gcr\.io)$",
    )
    credentials_hint: ClassVar[str] = (
        "run `gcloud auth application-default login` and set GOOGLE_CLOUD_PROJECT, or set "
        "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
    )
    supported_secret_refs: ClassVar[tuple[str, ...]] = SUPPORTED_REFS

    def component(self, resource_name: str, args: EndpointArgs, opts: Any = None) -> Any:
        from mdeploy.targets.gcp.component import GcpEndpoint

        return GcpEndpoint(resource_name, args, opts)

    def registry_repository(self, args: EndpointArgs, stack_config: dict[str, str]) -> str:
        from mdeploy.targets.gcp.registry import repository_for

        settings = GcpSettings.from_stack(stack_config)
        project = settings.project or stack_config.get("gcp:project") or project_from_env()
        if not project:
            raise InputError(
                "the GCP project is unknown", hint="set GOOGLE_CLOUD_PROJECT or mdeploy:project"
            )
        repo = settings.existing_repository or repository_id(args)
        return repository_for(project, args.region, repo, image_name(args.image))

    def check_credentials(self) -> tuple[bool, str]:
        ok, source = adc_source(os.environ)
        if not ok:
            return False, source
        project = project_from_env()
        if not project:
            return False, f"credentials from {source}, but no project: set GOOGLE_CLOUD_PROJECT"
        return True, f"credentials from {source}; project {project}"

    def stack_config(self, args: EndpointArgs) -> dict[str, str]:
        config = {"gcp:region": args.region}
        project = project_from_env()
        if project:
            config["gcp:project"] = project
        return config

    def unsupported(self, spec: Deployment) -> dict[str, str]:
        """Spec features this target cannot honour, mapped to a reason and what to do."""
        return unsupported(spec)

    def quota_problem(self, args: EndpointArgs) -> QuotaProblem | None:
        """The Vertex custom-model-serving GPU quota `up` would exceed (see gcp/quota.py)."""
        from mdeploy.errors import CloudError
        from mdeploy.targets.gcp.quota import quota_problem

        project = project_from_env()
        if not project:  # quota unknown: up warns, --strict-quota refuses
            raise CloudError(
                "the GCP project is unknown, so its quota cannot be read",
                hint="set GOOGLE_CLOUD_PROJECT",
            )
        return quota_problem(args, project)

    def ops(self, outputs: dict[str, Any]) -> Ops:
        from mdeploy.targets.gcp.ops import GcpOps

        return GcpOps.from_outputs(outputs)

    def fake_outputs(
        self, typ: str, name: str, inputs: dict[str, Any], region: str
    ) -> dict[str, Any]:
        """An Artifact Registry URI for offline synth."""
        del region  # Unused: the repository's own location is used.
        if typ != "gcp:artifactregistry/repository:Repository":
            return {}
        loc, project = inputs.get("location", "europe-west4"), inputs.get("project", "mock-project")
        repo = inputs.get("repositoryId") or name
        return {"registryUri": f"{loc}-docker.pkg.dev/{project}/{repo}"}

    def fake_call(self, token: str, region: str) -> dict[str, Any] | None:
        """The project answers for offline synth."""
        del region  # Unused.
        return {
            "gcp:organizations/getProject:getProject": {"projectId": "mock-project", "number": "1"},
            "gcp:organizations/getClientConfig:getClientConfig": {"project": "mock-project"},
        }.get(token)


TARGET = GcpTarget()
