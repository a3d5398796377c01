"""
One Vertex AI endpoint as a Pulumi component: registry, identity, secrets, endpoint, model.

Children (all parented to the component, short local names):
- `repository`: Artifact Registry (docker, immutable tags) in the endpoint's own region, the only
  place Vertex pulls from; `mdeploy up` creates it first and copies the image in by digest.
  With `mdeploy:existingRepository` it is read, not created.
- `agent-pull`: the Vertex AI service agent (service-<project number>@gcp-sa-aiplatform)
  may read that repository. The agent, not the runtime account, pulls images (Vertex docs:
  a custom service account cannot be used to pull from Artifact Registry), so the runtime
  account gets no registry role.
- `runtime`: a service account per deployment that the container runs as, with
  logging.logWriter and monitoring.metricWriter (project-level roles: they have no narrower
  resource), objectViewer on the weights bucket when the source is gs://, and
  secretAccessor on exactly the secrets it uses. With `mdeploy:serviceAccountEmail` the
  given account is used and only the resource-level grants are added.
- `secret-<var>`: `env:` and `file:` references become a Secret Manager secret replicated only
  in the endpoint's region (residency) with the value as a Pulumi secret; `gcp-sm:`
  references are granted, not copied.
- `endpoint`: `gcp:vertex/aiEndpoint:AiEndpoint` (optionally VPC-peered, dedicated DNS, CMEK).
- `model`: the dynamic `VertexModelDeployment` (upload + deploy, see vertex_model.py).

Secrets: Vertex container specs carry plain `name=value` env vars only, so no secret value is
ever put there. The container gets `MDEPLOY_SECRET_REFS`, a JSON object ENV_NAME →
`gcp-sm:projects/<p>/secrets/<id>/versions/<v>`, and the image's entrypoint reads each
version with the runtime account's token before starting the engine.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
from pulumi import Output, ResourceOptions

from mdeploy.errors import InputError
from mdeploy.serve.contract import (
    VERTEX_DEFAULT_HEALTH_ROUTE,
    VERTEX_DEFAULT_PORT,
    VERTEX_DEFAULT_PREDICT_ROUTE,
)
from mdeploy.targets._config import stack_values
from mdeploy.targets._pulumi_imports import import_only
from mdeploy.targets.base import EndpointArgs, image_with_registry
from mdeploy.targets.gcp.registry import repository_for
from mdeploy.targets.gcp.rules import (
    GcpSettings,
    accelerator_type,
    endpoint_id,
    gcp_labels,
    image_name,
    project_from_env,
    repository_id,
    secret_id,
    service_account_id,
)
from mdeploy.targets.gcp.vertex_model import VertexModelDeployment

__all__ = ["GcpEndpoint", "container_env", "parse_secret_ref", "shared_memory_mb"]

# The resource modules used, not whole subpackages (each __init__ imports its API group).
vertex = import_only("pulumi_gcp.vertex", "ai_endpoint")
artifactregistry = import_only("pulumi_gcp.artifactregistry", "repository", "repository_iam_member")
secretmanager = import_only(
    "pulumi_gcp.secretmanager", "secret", "secret_version", "secret_iam_member"
)
serviceaccount = import_only("pulumi_gcp.serviceaccount", "account")
projects = import_only("pulumi_gcp.projects", "iam_member")
organizations = import_only("pulumi_gcp.organizations", "get_project", "get_client_config")
storage = import_only("pulumi_gcp.storage", "bucket_iam_member")

SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"
RUNTIME_PROJECT_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
_SECRET_REF = re.compile(
    r"^(?:projects/(?P<project>[^/]+)/secrets/)?(?P<secret>[A-Za-z0-9_-]{1,255})"
    r"(?:/versions/(?P<version>[A-Za-z0-9_-]+))?$"
)


def container_env(args: EndpointArgs) -> dict[str, str]:
    """The model and engine settings the image's entrypoint reads (plain values only)."""
    return {
        "MDEPLOY_PLATFORM": "vertex",
        "MDEPLOY_MODEL_ID": args.model_id,
        "MDEPLOY_MODEL_SOURCE": args.model_source or "",
        "MDEPLOY_MODEL_REVISION": args.model_revision,
        "MDEPLOY_SERVED_MODEL_NAME": args.served_model_name,
        "MDEPLOY_ENGINE_ARGS": json.dumps(list(args.engine_args)),
    }


def shared_memory_mb(args: EndpointArgs) -> int:
    """/dev/shm for the container: NCCL needs room with tensor parallelism (vLLM docs)."""
    return int(args.extra.get("shared_memory_mb") or (16384 if args.gpu_count > 1 else 4096))


def parse_secret_ref(text: str) -> tuple[str | None, str, str]:
    """
    Split a `gcp-sm:` reference into (project or None, secret id, version).

    >>> parse_secret_ref("projects/p1/secrets/hf/versions/3")
    ('p1', 'hf', '3')
    >>> parse_secret_ref("hf")
    (None, 'hf', 'latest')
    """
    match = _SECRET_REF.match(text)
    if not match:
        raise InputError(
            f"gcp-sm:{text}: expected SECRET, projects/P/secrets/SECRET or .../versions/V"
        )
    return match["project"], match["secret"], match["version"] or "latest"


def _local_value(var: str, kind: str, where: str) -> str:
    """Read an env:/file: secret value at deploy time; errors never show the value."""
    from mdeploy.targets._secrets import read_local_secret

    value = read_local_secret(kind, where, field=f"serving.secrets.{var}")
    if value is None:
        raise InputError(
            f"serving.secrets.{var}: {kind}:{where} is not set or empty",
            hint="set it before `mdeploy up`; it is stored in Secret Manager, never printed",
        )
    return value


def _project(settings: GcpSettings) -> Output[str]:
    """mdeploy:project, gcp:project, the environment, else the provider's own default."""
    known = settings.project or pulumi.Config("gcp").get("project") or project_from_env()
    if known:
        return Output.from_input(known)
    return organizations.get_client_config_output().project


class GcpEndpoint(pulumi.ComponentResource):
    """A Vertex AI online endpoint serving the mdeploy image (type `mdeploy:gcp:Endpoint`)."""

    endpoint_name: Output[str]
    endpoint_url: Output[str]
    image: Output[str]
    repository_url: Output[str]
    model_name: Output[str]
    deployed_model_id: Output[str]
    service_account_email: Output[str]

    def __init__(self, name: str, args: EndpointArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("mdeploy:gcp:Endpoint", name, {}, opts)
        self._args = args
        self._child = ResourceOptions(parent=self)
        self._settings = GcpSettings.from_stack(stack_values())
        self._project = _project(self._settings)
        self._labels = gcp_labels(
            args.labels,
            managed_by="mdeploy",
            mdeploy_env=args.env,
            mdeploy_model_version=args.model_version,
        )
        self.repository, self.repository_url = self._repository()
        self.image = self.repository_url.apply(lambda repo: image_with_registry(args.image, repo))
        self.service_account_email, member, grants = self._runtime_identity()
        secret_refs, secret_grants = self._secrets(member)
        endpoint = self._endpoint()
        pull = artifactregistry.RepositoryIamMember(
            "agent-pull",
            project=self._project,
            location=args.region,
            repository=self._repository_id(),
            role="roles/artifactregistry.reader",
            member=self._vertex_agent(),
            # The service agent exists once the project has used Vertex: after the endpoint.
            opts=self._child.merge(ResourceOptions(depends_on=[self.repository, endpoint])),
        )
        self.endpoint_name = Output.all(endpoint.project, endpoint.name).apply(
            lambda a: f"projects/{a[0]}/locations/{args.region}/endpoints/{a[1]}"
        )
        self.endpoint_url = Output.all(self.endpoint_name, endpoint.dedicated_endpoint_dns).apply(
            lambda a: _raw_predict_url(args.region, a[0], a[1])
        )
        model = VertexModelDeployment(
            "model",
            self._deployment_props(secret_refs),
            opts=self._child.merge(
                ResourceOptions(
                    depends_on=[pull, *grants, *secret_grants],
                    additional_secret_outputs=["environment"],
                )
            ),
        )
        self.model_name = model.model_name
        self.deployed_model_id = model.deployed_model_id
        self.register_outputs(
            {
                "endpoint_name": self.endpoint_name,
                "endpoint_url": self.endpoint_url,
                "image": self.image,
                "repository_url": self.repository_url,
                "model_name": self.model_name,
                "deployed_model_id": self.deployed_model_id,
                "service_account_email": self.service_account_email,
            }
        )

    def _repository_id(self) -> str:
        return self._settings.existing_repository or repository_id(self._args)

    def _repository(self) -> tuple[artifactregistry.Repository, Output[str]]:
        """The Artifact Registry repository in the endpoint's region, and the image path."""
        args, repo_id = self._args, self._repository_id()
        if self._settings.existing_repository:
            full_id = self._project.apply(
                lambda p: f"projects/{p}/locations/{args.region}/repositories/{repo_id}"
            )
            repo = artifactregistry.Repository.get("repository", full_id, opts=self._child)
        else:
            keep = self._settings.repository_keep_versions
            repo = artifactregistry.Repository(
                "repository",
                repository_id=repo_id,
                project=self._project,
                location=args.region,
                format="DOCKER",
                mode="STANDARD_REPOSITORY",
                description=f"mdeploy {args.name} ({args.env}): inference image, by digest",
                docker_config=artifactregistry.RepositoryDockerConfigArgs(immutable_tags=True),
                kms_key_name=self._settings.kms_key_name,
                cleanup_policies=_cleanup_policies(keep) if keep else None,
                labels=self._labels,
                opts=self._child,
            )
        url = Output.all(self._project, repo.id).apply(
            lambda a: repository_for(a[0], args.region, repo_id, image_name(args.image))
        )
        return repo, url

    def _runtime_identity(self) -> tuple[Output[str], Output[str], list[pulumi.Resource]]:
        """The account the container runs as, its IAM member string and project grants."""
        existing = self._settings.service_account_email
        if existing:
            email = Output.from_input(existing)
            return email, email.apply(lambda e: f"serviceAccount:{e}"), []
        args = self._args
        account = serviceaccount.Account(
            "runtime",
            account_id=service_account_id(args),
            project=self._project,
            display_name=f"mdeploy {args.name} ({args.env}) Vertex runtime",
            description="Runs the mdeploy inference container; least privilege.",
            opts=self._child,
        )
        email = Output.all(account.account_id, self._project).apply(
            lambda a: f"{a[0]}@{a[1]}.iam.gserviceaccount.com"
        )
        member = email.apply(lambda e: f"serviceAccount:{e}")
        grants: list[pulumi.Resource] = [
            projects.IAMMember(
                f"runtime-{role.split('/')[1].split('.')[1].lower()}",
                project=self._project,
                role=role,
                member=member,
                opts=self._child,
            )
            for role in RUNTIME_PROJECT_ROLES
        ]
        bucket = _gcs_bucket(args.model_source)
        if bucket:
            grants.append(
                storage.BucketIAMMember(
                    "weights-read",
                    bucket=bucket,
                    role="roles/storage.objectViewer",
                    member=member,
                    opts=self._child,
                )
            )
        return email, member, grants

    def _secrets(self, member: Output[str]) -> tuple[dict[str, Output[str]], list[Any]]:
        """Secret Manager versions per env var, and the accessor grants on each secret."""
        refs: dict[str, Output[str]] = {}
        grants: list[Any] = []
        for var, ref in sorted(self._args.secrets.items()):
            kind, _, where = ref.partition(":")
            local = var.lower().replace("_", "-")
            if kind == "gcp-sm":
                owner, secret, version = parse_secret_ref(where)
                project = Output.from_input(owner) if owner else self._project
                secret_path = project.apply(lambda p, s=secret: f"projects/{p}/secrets/{s}")
                refs[var] = secret_path.apply(lambda s, v=version: f"{s}/versions/{v}")
            elif kind in ("env", "file"):
                project = self._project
                secret_path, refs[var] = self._upload_secret(var, local, kind, where)
            else:
                raise InputError(
                    f"serving.secrets.{var}: {kind}: references cannot be read on Vertex AI",
                    hint="use gcp-sm:<secret>, env:NAME or file:PATH",
                )
            grants.append(
                secretmanager.SecretIamMember(
                    f"secret-{local}-access",
                    project=project,
                    secret_id=secret_path,
                    role=SECRET_ACCESSOR,
                    member=member,
                    opts=self._child,
                )
            )
        return refs, grants

    def _upload_secret(
        self, var: str, local: str, kind: str, where: str
    ) -> tuple[Output[str], Output[str]]:
        """A regional secret holding an env:/file: value; returns (secret, version) names."""
        value = pulumi.Output.secret(_local_value(var, kind, where))
        secret = secretmanager.Secret(
            f"secret-{local}",
            secret_id=secret_id(self._args, var),
            project=self._project,
            replication=secretmanager.SecretReplicationArgs(
                user_managed=secretmanager.SecretReplicationUserManagedArgs(
                    replicas=[
                        secretmanager.SecretReplicationUserManagedReplicaArgs(
                            location=self._args.region
                        )
                    ]
                )
            ),
            labels=self._labels,
            opts=self._child,
        )
        version = secretmanager.SecretVersion(
            f"secret-{local}-version", secret=secret.id, secret_data=value, opts=self._child
        )
        path = Output.all(self._project, secret.secret_id).apply(
            lambda a: f"projects/{a[0]}/secrets/{a[1]}"
        )
        # The version id is its full name: the env pins it, so a new value redeploys.
        return path, version.id

    def _endpoint(self) -> vertex.AiEndpoint:
        args, settings = self._args, self._settings
        numeric = self._project.apply(
            lambda p: endpoint_id(
                p,
                args.region,
                args.name,
                args.env,
                settings.network,
                settings.dedicated_endpoint,
                settings.kms_key_name,
            )
        )
        kms = settings.kms_key_name
        return vertex.AiEndpoint(
            "endpoint",
            name=numeric,
            display_name=f"{args.name}-{args.env}",
            description=f"mdeploy {args.name} ({args.env}): {args.model_id}",
            project=self._project,
            location=args.region,
            region=args.region,
            labels=self._labels,
            network=settings.network,
            dedicated_endpoint_enabled=True if settings.dedicated_endpoint else None,
            encryption_spec=vertex.AiEndpointEncryptionSpecArgs(kms_key_name=kms) if kms else None,
            # The model resource and `mdeploy promote` own the split, not this resource.
            opts=self._child.merge(ResourceOptions(ignore_changes=["trafficSplit"])),
        )

    def _vertex_agent(self) -> Output[str]:
        """The Vertex AI service agent, which pulls the image for every deployed model."""
        number = organizations.get_project_output(
            project_id=self._project, opts=pulumi.InvokeOutputOptions(parent=self)
        ).number
        return number.apply(
            lambda n: f"serviceAccount:service-{n}@gcp-sa-aiplatform.iam.gserviceaccount.com"
        )

    def _deployment_props(self, secret_refs: dict[str, Output[str]]) -> dict[str, Any]:
        args, settings = self._args, self._settings
        base = container_env(args)
        environment = Output.all(**secret_refs).apply(
            lambda refs: {**base, **_secret_refs_env(refs)}
        )
        return {
            "project": self._project,
            "region": args.region,
            "endpoint": self.endpoint_name,
            "private": bool(settings.network),
            "display_name": f"{args.name}-{args.env}",
            "description": f"mdeploy {args.name} ({args.env}): {args.model_id}",
            "image": self.image,
            "environment": environment,
            "port": VERTEX_DEFAULT_PORT,
            "predict_route": VERTEX_DEFAULT_PREDICT_ROUTE,
            "health_route": VERTEX_DEFAULT_HEALTH_ROUTE,
            "shared_memory_mb": shared_memory_mb(args),
            "deployment_timeout_s": args.startup_timeout_s,
            "machine_type": args.instance_type,
            "accelerator_type": accelerator_type(args),
            "accelerator_count": args.gpu_count,
            "min_replicas": args.replicas_min,
            "max_replicas": args.replicas_max,
            "service_account": self.service_account_email,
            "labels": self._labels,
            "kms_key_name": settings.kms_key_name,
            "duty_cycle": settings.accelerator_duty_cycle,
        }


def _secret_refs_env(refs: dict[str, str]) -> dict[str, str]:
    if not refs:
        return {}
    return {"MDEPLOY_SECRET_REFS": json.dumps({k: f"gcp-sm:{v}" for k, v in sorted(refs.items())})}


def _gcs_bucket(source: str | None) -> str | None:
    if not source or not source.startswith("gs://"):
        return None
    return source[len("gs://") :].split("/", 1)[0] or None


def _raw_predict_url(region: str, endpoint_name: str, dedicated_dns: str | None) -> str:
    """rawPredict on the dedicated DNS when there is one (the shared host refuses it then)."""
    host = (dedicated_dns or "").removeprefix("https://").rstrip("/")
    host = host or f"{region}-aiplatform.googleapis.com"
    return f"https://{host}/v1/{endpoint_name}:rawPredict"


def _cleanup_policies(keep: int) -> list[artifactregistry.RepositoryCleanupPolicyArgs]:
    """Keep the newest `keep` versions; delete the others once they are 30 days old."""
    return [
        artifactregistry.RepositoryCleanupPolicyArgs(
            id="keep-recent",
            action="KEEP",
            most_recent_versions=artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                keep_count=keep
            ),
        ),
        artifactregistry.RepositoryCleanupPolicyArgs(
            id="delete-old",
            action="DELETE",
            condition=artifactregistry.RepositoryCleanupPolicyConditionArgs(
                tag_state="ANY", older_than="2592000s"
            ),
        ),
    ]
