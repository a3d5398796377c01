"""
The Target contract: what one cloud must provide so that `mdeploy up` can deploy there.

A target is cheap and stateless; everything heavy (Pulumi providers, cloud SDKs) is imported
inside the methods that need it, so listing targets costs nothing. Every "can't" path gives a
reason and a fix-it hint: `check_prerequisites` and `unsupported` never return a bare False.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from mdeploy.plan.models import Candidate
    from mdeploy.spec.models import Deployment

__all__ = [
    "EndpointArgs",
    "QuotaProblem",
    "Target",
    "image_with_registry",
    "repository_of",
    "startup_timeout_s",
]


@dataclass(frozen=True)
class EndpointArgs:
    """
    Everything a target's Pulumi component needs, derived from the spec and the chosen offer.

    Plain values only (no pulumi.Input): built offline by the planner side, consumed by every
    component. Secret *references* travel here; values are resolved by the cloud at run time.
    """

    name: str  # metadata.name (DNS-1123, <= 40)
    env: str  # environment overlay name or "default"
    model_id: str
    model_source: str | None
    model_revision: str
    model_version: str
    served_model_name: str
    image: str  # repo@sha256:... (or a tag outside prod); each target maps it to its registry
    engine_args: tuple[str, ...]  # vLLM flags from the plan
    region: str
    instance_type: str
    gpu: str
    gpu_count: int
    replicas_min: int
    replicas_max: int
    auth: str  # key | iam | none
    secrets: dict[str, str] = field(default_factory=dict)  # ENV_NAME -> reference
    labels: dict[str, str] = field(default_factory=dict)
    weights_gib: float = 0.0
    startup_timeout_s: int = 1800
    max_context: int = 8192
    extra: dict[str, Any] = field(default_factory=dict)  # target-specific (k8s pools, gpu class)

    @classmethod
    def from_plan(
        cls,
        spec: Deployment,
        candidate: Candidate,
        *,
        env: str | None,
        image: str,
        weights_gib: float,
    ) -> EndpointArgs:
        kube = spec.placement.kubernetes
        extra: dict[str, Any] = dict(candidate.extra)
        extra.setdefault("max_concurrency", spec.serving.max_concurrency)
        if kube is not None:
            extra.setdefault("namespace", kube.namespace)
            extra.setdefault("gpu_class_label", kube.gpu_class_label)
            if kube.context:
                extra.setdefault("kube_context", kube.context)
        return cls(
            name=spec.metadata.name,
            env=env or "default",
            model_id=spec.model.id,
            model_source=spec.model.source,
            model_revision=spec.model.revision,
            model_version=spec.model.version,
            served_model_name=spec.model.id,
            image=image,
            engine_args=tuple(candidate.engine_args),
            region=candidate.region,
            instance_type=candidate.instance_type,
            gpu=candidate.gpu,
            gpu_count=candidate.gpu_count,
            replicas_min=spec.serving.replicas.min,
            replicas_max=spec.serving.replicas.max,
            auth=spec.serving.auth,
            secrets=dict(spec.serving.secrets),
            labels={**spec.metadata.labels, "mdeploy-name": spec.metadata.name},
            weights_gib=weights_gib,
            startup_timeout_s=startup_timeout_s(weights_gib),
            max_context=spec.model.max_context,
            extra=extra,
        )

    @property
    def image_digest(self) -> str | None:
        """The sha256 digest of `image`, or None when it is referenced by tag."""
        _, sep, digest = self.image.partition("@")
        return digest if sep and digest.startswith("sha256:") else None

    @property
    def short_hash(self) -> str:
        """Stable 8-char hash of what forces a new endpoint config (image, flags, shape)."""
        basis = "|".join(
            [
                self.image,
                self.instance_type,
                str(self.gpu_count),
                *self.engine_args,
                self.model_version,
            ]
        )
        return hashlib.sha256(basis.encode()).hexdigest()[:8]


def startup_timeout_s(weights_gib: float) -> int:
    """
    Seconds to allow a replica to download weights and load them before health checks fail.

    Budget: 10 min of container start and engine warm-up, plus 20 s per GiB of weights
    (about 50 MiB/s from object storage into GPU memory), capped at SageMaker's 3600 s maximum.
    """
    return int(min(3600, max(600, 600 + 20 * weights_gib)))


def repository_of(image: str) -> str:
    """
    An image reference without its tag or digest.

    >>> repository_of("localhost:5000/mdeploy/vllm:v1")
    'localhost:5000/mdeploy/vllm'
    """
    base = image.split("@", 1)[0]
    head, _, last = base.rpartition("/")
    name = last.split(":", 1)[0]
    return f"{head}/{name}" if head else name


def image_with_registry(image: str, registry_repo: str) -> str:
    """
    Re-point `image` at `registry_repo`, keeping the digest (never a tag when there is one).

    >>> image_with_registry("ghcr.io/x/vllm@sha256:ab", "1.dkr.ecr.eu-west-3.amazonaws.com/m")
    '1.dkr.ecr.eu-west-3.amazonaws.com/m@sha256:ab'
    """
    _, sep, digest = image.partition("@")
    if sep:
        return f"{registry_repo}@{digest}"
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
    return f"{registry_repo}:{tag}"


@dataclass(frozen=True)
class QuotaProblem:
    """A cloud quota that would make the deploy fail, found before anything is created."""

    quota_name: str  # the cloud's own name for the quota, as its console shows it
    needed: float  # what the deployment needs (instances, GPUs or vCPUs, in the quota's unit)
    available: float  # the applied limit minus what is already in use
    request_hint: str  # the console URL or CLI line that asks for more

    def message(self) -> str:
        return (
            f"quota {self.quota_name!r}: needs {self.needed:g}, {self.available:g} available; "
            f"request more: {self.request_hint}"
        )


class Target(ABC):
    """One deployment target. Subclasses set the class constants and implement every method."""

    name: ClassVar[str]  # aws | azure | gcp | kubernetes
    display_name: ClassVar[str]
    catalog_targets: ClassVar[tuple[str, ...]]  # which catalog offers this target deploys
    pulumi_plugins: ClassVar[tuple[str, ...]]  # Pulumi resource plugins the stack needs
    credentials_hint: ClassVar[str]  # how to get credentials, shown with exit 3
    # Image manifest media types the platform pulls; empty = any. `up` refuses another type.
    accepted_manifest_types: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def component(self, resource_name: str, args: EndpointArgs, opts: Any = None) -> Any:
        """Create this target's Pulumi ComponentResource (type `mdeploy:<target>:Endpoint`)."""

    @abstractmethod
    def registry_repository(self, args: EndpointArgs, stack_config: dict[str, str]) -> str:
        """The repository this target pulls the image from (its own registry), without tag."""

    @abstractmethod
    def check_credentials(self) -> tuple[bool, str]:
        """Whether credentials for this target are present (offline check), and why not."""

    @abstractmethod
    def stack_config(self, args: EndpointArgs) -> dict[str, str]:
        """Pulumi provider config for the stack, e.g. {'aws:region': 'eu-west-3'}."""

    def unsupported(self, spec: Deployment) -> dict[str, str]:
        """Spec features this target cannot honour, mapped to a reason and what to do."""
        del spec  # Unused: targets that support every feature keep the default.
        return {}

    def ops(self, outputs: dict[str, Any]) -> Any:
        """Day-2 client (status, invoke, traffic) for a deployed stack's outputs."""
        raise NotImplementedError(f"{self.display_name}: day-2 operations are not implemented")

    def quota_problem(self, args: EndpointArgs) -> QuotaProblem | None:
        """The quota this deployment would exceed (needs credentials), or None.

        Called by `up` before anything is created and by `plan --check-quotas`. Targets with
        no quota API (Kubernetes) keep the default. Raises CloudError when the quota service
        cannot be reached, so that a caller can say "unknown" rather than "fine".
        """
        del args  # Unused: no quota API.
        return None
