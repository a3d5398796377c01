"""
The Target contract: what one cloud must provide so that `mdeploy up` can deploy there.

A target is cheap and stateless; everything heavy (Pulumi providers, cloud SDKs) is imported
inside the methods that need it, so listing targets costs nothing. Every "can't" path gives a
reason and a fix-it hint: `check_prerequisites` and `unsupported` never return a bare False.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from mdeploy.errors import CloudError, InputError
from mdeploy.target_names import target_facts

if TYPE_CHECKING:
    from mdeploy.plan.models import Candidate
    from mdeploy.spec.models import Deployment

__all__ = [
    "HEALTH_STATES",
    "REVISION_ENV",
    "EndpointArgs",
    "EndpointHealth",
    "NotFoundError",
    "Ops",
    "QuotaProblem",
    "Target",
    "TrafficOps",
    "VersionHealth",
    "VersionSpec",
    "base_version",
    "image_with_registry",
    "percentages",
    "refuse_removal",
    "repository_of",
    "startup_timeout_s",
    "total_replicas",
    "unloadable_source",
    "validate_version_name",
    "validate_weights",
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
        extra: dict[str, Any] = dict(candidate.extra)
        extra.setdefault("max_concurrency", spec.serving.max_concurrency)
        for key, value in _target_extra(candidate.target, spec).items():
            extra.setdefault(key, value)
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


def _target_extra(placement_target: str, spec: Deployment) -> dict[str, Any]:
    """The deploying target's `args_extra(spec)`; nothing for a name no target deploys.

    Found through the folder facts, not `mdeploy.targets` (which imports this module).
    """
    for facts in target_facts():
        if placement_target in facts.catalog_targets:
            module = import_module(f"mdeploy.targets.{facts.folder}.target")
            return module.TARGET.args_extra(spec)
    return {}


def unloadable_source(spec: Deployment, loadable: tuple[str, ...]) -> str | None:
    """
    The scheme of `model.source` ("gs") when a target cannot load it, else None.

    A target names what it can load (hf and its own store, say), not what it cannot: a scheme
    another target declares, now or later, is refused without a list to keep up to date.
    Local paths (no scheme) pass.
    """
    scheme, sep, _ = (spec.model.source or "").partition("://")
    return scheme if sep and scheme not in loadable else None


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


# ---- the day-2 contract -----------------------------------------------------------------


class NotFoundError(CloudError):
    """The cloud says the endpoint, version or operation does not exist (HTTP 404 and kin).

    Raised by every target's ops instead of a CloudError whose text a caller would have to
    match ("HTTP 404"), so that "already gone" can be told from "failed" by type.
    """


# The container environment variable every target sets to the model's revision (podspec,
# container_env, engine_environment): how status reads a version's revision back.
REVISION_ENV = "MDEPLOY_MODEL_REVISION"

# One vocabulary for every platform; each target maps its own states onto it.
HEALTH_STATES = ("ready", "updating", "loading", "unhealthy", "failed", "unreachable", "unknown")


@dataclass(frozen=True)
class VersionHealth:
    """One version of the model behind an endpoint and its share of the traffic.

    A SageMaker production variant, an Azure ML deployment, a Vertex deployed model or a
    Kubernetes Deployment: `name` is what `set_traffic` and `remove_version` take.
    """

    name: str
    traffic_percent: int
    image: str | None = None
    model_revision: str | None = None
    replicas: int | None = None
    state: str | None = None  # the platform's own word for this version, as reported

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "traffic_percent": self.traffic_percent,
            "image": self.image,
            "model_revision": self.model_revision,
            "replicas": self.replicas,
            "state": self.state,
        }


@dataclass(frozen=True)
class EndpointHealth:
    """What `status()` returns on every target: the one shape of `mdeploy status --json`.

    `state` is one of HEALTH_STATES; `detail` is a line for a person when the state needs
    one (why unknown, how to reach it); `details` holds the platform's own facts (endpoint
    config name, failure reason, auth mode, ...) for whoever needs more.
    """

    state: str
    url: str | None = None
    region: str | None = None
    versions: list[VersionHealth] = field(default_factory=list)
    replicas: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.state not in HEALTH_STATES:
            raise ValueError(f"health state {self.state!r} is not one of {HEALTH_STATES}")

    @classmethod
    def unknown(cls, detail: str) -> EndpointHealth:
        """The health to report when the cloud could not be asked (same shape, state unknown)."""
        return cls(state="unknown", detail=detail)

    @property
    def traffic(self) -> dict[str, int]:
        """Version name → percent of the live traffic."""
        return {v.name: v.traffic_percent for v in self.versions}

    def version(self, name: str) -> VersionHealth:
        """The version called `name`; NotFoundError names the ones that exist."""
        for version in self.versions:
            if version.name == name:
                return version
        raise NotFoundError(
            f"no version {name!r} on this endpoint",
            hint=f"versions: {', '.join(v.name for v in self.versions) or 'none'}",
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "url": self.url,
            "region": self.region,
            "versions": [v.to_json() for v in self.versions],
            "replicas": self.replicas,
            "detail": self.detail,
            "details": dict(self.details),
        }


def total_replicas(versions: list[VersionHealth]) -> int | None:
    """The sum of the versions' replicas, None when no version reports a count."""
    counts = [v.replicas for v in versions if v.replicas is not None]
    return sum(counts) if counts else None


def percentages(weights: Mapping[str, float | int | None]) -> dict[str, int]:
    """Relative weights (SageMaker's floats) as whole percentages that add up to 100.

    Largest-remainder rounding, so 1:2 gives 33/67, never 33/66. All-zero stays all-zero.

    >>> percentages({"a": 1.0, "b": 2.0})
    {'a': 33, 'b': 67}
    """
    clean = {k: max(0.0, float(v or 0.0)) for k, v in weights.items()}
    total = sum(clean.values())
    if total <= 0:
        return {k: 0 for k in clean}
    exact = {k: v * 100.0 / total for k, v in clean.items()}
    out = {k: int(v) for k, v in exact.items()}
    short = 100 - sum(out.values())
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[:short]:
        out[k] += 1
    return out


_VERSION_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def validate_version_name(name: str) -> str:
    """A version name every platform accepts: DNS-1123, at most 32 characters.

    The strictest of the four: Azure ML deployment names (3-32, letters, digits, dashes),
    SageMaker variant names, Kubernetes object names, Vertex display names.
    """
    if not isinstance(name, str) or not _VERSION_NAME.match(name) or len(name) < 3:
        raise InputError(
            f"version name {name!r}: use 3-32 lowercase letters, digits and dashes",
            hint="e.g. v2 or v-2026-12-06; it must start and end with a letter or digit",
        )
    return name


def validate_weights(
    weights: Mapping[str, Any], known: list[str] | tuple[str, ...] | None = None
) -> dict[str, int]:
    """Check a traffic split before any cloud sees it; the one place every target uses.

    Whole percentages 0-100 that add up to exactly 100, every name a version of the
    endpoint. Versions left out get 0. Returns {version: percent} for every known version.
    Without `known` only the numbers are checked: targets call it so before their first
    request, so that a bad split never costs a round trip.

    >>> validate_weights({"v1": 90, "v2": 10}, ["v1", "v2", "v3"])
    {'v1': 90, 'v2': 10, 'v3': 0}
    """
    if not weights:
        raise InputError("no traffic weights given", hint='e.g. {"v1": 90, "v2": 10}')
    for name, pct in weights.items():
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise InputError(f"traffic for {name!r} must be a whole percentage 0-100, got {pct!r}")
    total = sum(weights.values())
    if total != 100:
        raise InputError(
            f"traffic percentages add up to {total}, not 100", hint='e.g. {"v1": 90, "v2": 10}'
        )
    if known is None:
        return dict(weights)
    unknown = sorted(str(n) for n in weights if n not in known)
    if unknown:
        raise InputError(
            f"no version named {', '.join(unknown)} on this endpoint",
            hint=f"versions: {', '.join(known) or 'none'}",
        )
    return {name: int(weights.get(name, 0)) for name in known}


@dataclass(frozen=True)
class VersionSpec:
    """A version to deploy beside the live one(s): what `TrafficOps.deploy_version` takes.

    Everything not named here (machine type, GPU count, auth, network, secrets) is copied
    from `base` (default: the version with the most traffic), so a promotion changes only
    what makes a version: the image, the model revision and the engine settings.
    """

    name: str
    image: str
    model_revision: str | None = None
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)  # plain values only, never secrets
    base: str | None = None

    def __post_init__(self) -> None:
        validate_version_name(self.name)
        if not self.image:
            raise InputError(f"version {self.name}: no image given")
        if self.replicas < 1:
            raise InputError(f"version {self.name}: replicas must be at least 1")

    @classmethod
    def from_args(cls, name: str, args: EndpointArgs, *, base: str | None = None) -> VersionSpec:
        """The version `args` describes (image, revision, replicas.min) under `name`."""
        return cls(
            name=name,
            image=args.image,
            model_revision=args.model_revision,
            replicas=max(1, args.replicas_min),
            base=base,
        )


def base_version(health: EndpointHealth, wanted: str | None) -> VersionHealth:
    """The version a new one copies its settings from: `wanted`, else the busiest one."""
    if wanted:
        return health.version(wanted)
    if not health.versions:
        raise NotFoundError("the endpoint has no version to copy settings from")
    return max(health.versions, key=lambda v: (v.traffic_percent, v.name))


def refuse_removal(health: EndpointHealth, name: str) -> None:
    """A version may go only when it exists, takes no traffic and is not the last one."""
    version = health.version(name)
    if len(health.versions) < 2:
        raise InputError(f"version {name} is the endpoint's only version")
    if version.traffic_percent > 0:
        raise InputError(
            f"version {name} still takes {version.traffic_percent}% of the traffic",
            hint="move its traffic first: set_traffic with 0 for it",
        )


@runtime_checkable
class Ops(Protocol):
    """Day-2 client every target returns from `Target.ops(outputs)`."""

    def status(self) -> EndpointHealth:
        """The endpoint's health in the one shape (EndpointHealth)."""
        ...

    def invoke(
        self, body: bytes | str | Mapping[str, Any], *, stream: bool = False
    ) -> bytes | Iterator[bytes]:
        """One request through the platform's own route; chunks when `stream`."""
        ...


@runtime_checkable
class TrafficOps(Protocol):
    """Optional capability: several versions behind one endpoint, with traffic weights.

    Targets implement it the way their platform does (production variants, deployments,
    deployed models, Deployments behind a Service); `promote` is written against it once.
    Check with `isinstance(ops, TrafficOps)`.
    """

    def versions(self) -> list[VersionHealth]:
        """The versions behind the endpoint with their traffic."""
        ...

    def deploy_version(self, spec_version: VersionSpec) -> EndpointHealth:
        """Start `spec_version` beside the live ones with 0% of the traffic."""
        ...

    def set_traffic(self, weights: dict[str, int]) -> EndpointHealth:
        """Route traffic, e.g. {"v1": 90, "v2": 10}: whole percentages summing to 100."""
        ...

    def remove_version(self, name: str) -> EndpointHealth:
        """Delete a version that takes no traffic (never the last one)."""
        ...


class Target(ABC):
    """One deployment target. Subclasses set the class constants and implement every method."""

    name: ClassVar[str]  # aws | azure | gcp | kubernetes
    display_name: ClassVar[str]
    catalog_targets: ClassVar[tuple[str, ...]]  # which catalog offers this target deploys
    pulumi_plugins: ClassVar[tuple[str, ...]]  # Pulumi resource plugins the stack needs
    credentials_hint: ClassVar[str]  # how to get credentials, shown with exit 3
    # Image manifest media types the platform pulls; empty = any. `up` refuses another type.
    accepted_manifest_types: ClassVar[tuple[str, ...]] = ()
    # What the core derives from the registry (mdeploy.targets; docs/adding-a-target.md):
    python_modules: ClassVar[tuple[str, ...]] = ()  # top-level modules its extra installs
    registry_hosts: ClassVar[tuple[str, ...]] = ()  # regexes of hosts its registry.py logs in to
    generic_registry: ClassVar[bool] = False  # its registry.py logs in to any other host
    output_names: ClassVar[tuple[str, ...]] = ()  # component attributes its ops() reads back
    # Stack-config keys (besides mdeploy:imageRepository) `up` may push a build to.
    build_repository_keys: ClassVar[tuple[str, ...]] = ()
    # Facts the layers below read as text (mdeploy/target_names.py): write them as literals.
    # The `placement.<key>` holding the user's own cluster and pools, offered as target <key>.
    pool_placement: ClassVar[str | None] = None
    # "instance": one VM per replica (managed endpoints); "pods": a replica is pods asking for
    # N GPUs on shared nodes, several per node, and may span nodes.
    replica_unit: ClassVar[Literal["instance", "pods"]] = "instance"
    # The managed endpoint kind plan messages name ("Vertex AI"); "" when not managed.
    instance_label: ClassVar[str] = ""
    # serving.secrets forms its platform's secret store takes, as docs write them ("gcp-sm:NAME");
    # the spec accepts `<scheme>:<non-space>` (`<scheme>:<A>/<B>` for a form with a slash) and
    # unsupported() checks the rest. env:NAME and file:PATH are every target's (spec lists them).
    secret_ref_forms: ClassVar[tuple[str, ...]] = ()
    # An exact regex per form above (same order, no ^/$), when the spec must check more.
    secret_ref_patterns: ClassVar[tuple[str, ...]] = ()
    # model.source URL schemes of its cloud's storage ("gs"); hf:// and paths are every target's.
    model_source_schemes: ClassVar[tuple[str, ...]] = ()

    def fake_outputs(
        self, typ: str, name: str, inputs: dict[str, Any], region: str
    ) -> dict[str, Any]:
        """Provider-computed outputs of this target's resource type `typ` for offline synth."""
        del typ, name, inputs, region  # Unused: a target whose resources compute nothing.
        return {}

    def fake_call(self, token: str, region: str) -> dict[str, Any] | None:
        """The offline answer to this target's provider function `token`, None if not ours."""
        del token, region  # Unused: a target that calls no provider function.
        return None

    def write_artifacts(self, out_dir: Path, graph: Any) -> list[Path]:
        """Files `synth --out` writes beside the graph (e.g. Kubernetes manifests)."""
        del out_dir, graph  # Unused: most targets have nothing but the graph to write.
        return []

    @abstractmethod
    def component(self, resource_name: str, args: EndpointArgs, opts: Any = None) -> Any:
        """Create this target's Pulumi ComponentResource (type `mdeploy:<target>:Endpoint`)."""

    @abstractmethod
    def registry_repository(self, args: EndpointArgs, stack_config: dict[str, str]) -> str:
        """The repository this target pulls the image from (its own registry), without tag."""

    @abstractmethod
    def check_credentials(self) -> tuple[bool, str]:
        """Whether credentials for this target are present (offline check), and why not."""

    def check_credentials_for(self, args: EndpointArgs) -> tuple[bool, str]:
        """`check_credentials` for this deployment (e.g. the spec's kube context), offline."""
        del args  # Unused: credentials that do not depend on the deployment.
        return self.check_credentials()

    def args_extra(self, spec: Deployment) -> dict[str, Any]:
        """Target-specific `EndpointArgs.extra` entries taken from the spec (e.g. a cluster's
        namespace); the plan's own entries win over them."""
        del spec  # Unused: a target whose component needs nothing beyond the plan.
        return {}

    @abstractmethod
    def stack_config(self, args: EndpointArgs) -> dict[str, str]:
        """Pulumi provider config for the stack, e.g. {'aws:region': 'eu-west-3'}."""

    def unsupported(self, spec: Deployment) -> dict[str, str]:
        """Spec features this target cannot honour, mapped to a reason and what to do."""
        del spec  # Unused: targets that support every feature keep the default.
        return {}

    def ops(self, outputs: dict[str, Any]) -> Ops:
        """Day-2 client for a deployed stack's outputs: an Ops, often also a TrafficOps."""
        raise NotImplementedError(f"{self.display_name}: day-2 operations are not implemented")

    def quota_problem(self, args: EndpointArgs) -> QuotaProblem | None:
        """The quota this deployment would exceed (needs credentials), or None.

        Called by `up` before anything is created and by `plan --check-quotas`. Targets with
        no quota API (Kubernetes) keep the default. Raises CloudError when the quota service
        cannot be reached, so that a caller can say "unknown" rather than "fine".
        """
        del args  # Unused: no quota API.
        return None
