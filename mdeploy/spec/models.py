"""
Spec v1: the pydantic models for one deployment.

Strict by design: unknown keys are errors, every field documents itself (the JSON Schema
printed by `mdeploy schema` comes from these descriptions). Cross-field rules that need
the catalog (does the model resolve?) live in the loader and planner, not here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from mdeploy.jurisdictions import JURISDICTIONS
from mdeploy.target_names import (
    default_clouds,
    model_source_schemes,
    placement_names,
    pool_placements,
    secret_ref_forms,
    secret_ref_shapes,
)

__all__ = [
    "API_VERSION",
    "Architecture",
    "CloudName",
    "ClusterPlacement",
    "ClusterPool",
    "Deployment",
    "Metadata",
    "ModelSpec",
    "Placement",
    "Replicas",
    "Rollout",
    "Serving",
]

API_VERSION = "mdeploy/v1"


def _known_cloud(name: str) -> str:
    """A placement target some registered target deploys (read from targets/ as data)."""
    names = placement_names()
    if name not in names:
        raise ValueError(f"unknown cloud {name!r}: use one of {', '.join(names)}")
    return name


# Validated against the registry of targets at load time; spec never imports targets/.
CloudName = Annotated[
    str,
    AfterValidator(_known_cloud),
    WithJsonSchema({"type": "string", "enum": list(placement_names())}),
]
Dtype = Literal["bfloat16", "float16", "fp8", "int8", "int4"]
Quantization = Literal["awq", "gptq", "fp8"]

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Secret references and model sources: the generic forms every target reads (env:/file: on
# the deployer's machine, hf:// by the engine), then each target's own, read from targets/ as
# data (`secret_ref_forms`, `model_source_schemes` in targets/base.py) in folder order. The
# shapes are checked here, so `validate` points at the line; the rest is each target's rules.
_SECRET_REF = re.compile(
    "^(" + "|".join((r"env:[A-Za-z_][A-Za-z0-9_]*", r"file:\S+", *secret_ref_shapes())) + ")$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SOURCE_SCHEMES = ("hf", *model_source_schemes())
_MODEL_SOURCE = re.compile(rf"^({'|'.join(map(re.escape, _SOURCE_SCHEMES))})://\S+$")
_SOURCE_FORMS = ", ".join(f"{scheme}://" for scheme in _SOURCE_SCHEMES) + " or a local path"
SECRET_REF_FORMS = ", ".join(("env:NAME", "file:PATH", *secret_ref_forms()))
# Sanity ceilings, not facts about any model or GPU: each is orders of magnitude above what
# exists, and keeps sizing arithmetic (bytes = params × layers × width ...) finite and exact
# enough. A value beyond one is a typo or an attack; the error names the field and the bound.
MAX_PARAMS_B = 100_000.0  # 100 T parameters
MAX_COUNT = 100_000  # layers, attention heads, KV heads
MAX_WIDTH = 1_048_576  # hidden size, head dimension
MAX_VOCAB = 100_000_000
MAX_GIB = 1_000_000.0  # GiB: checkpoint size, memory of one GPU
MAX_USD_HOUR = 1_000_000.0  # USD per hour: a node's price, a budget


class _Strict(BaseModel):
    # allow_inf_nan=False: .inf/.nan would reach --json as Infinity/NaN, which is not JSON.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Metadata(_Strict):
    name: Annotated[
        str,
        Field(
            description="DNS-1123 label, at most 40 characters; names every cloud resource.",
            max_length=40,
        ),
    ]
    labels: Annotated[
        dict[str, str], Field(description="Free-form labels copied to cloud resource tags.")
    ] = {}

    @field_validator("name")
    @classmethod
    def _dns1123(cls, v: str) -> str:
        if not _DNS1123.match(v):
            raise ValueError(
                "must be a DNS-1123 label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return v


class Architecture(_Strict):
    config: Annotated[
        str | None,
        Field(
            min_length=1,
            description="A local config.json (or model folder), relative to the spec file; "
            "the shape is computed from it and the fields below are not needed.",
        ),
    ] = None
    params_b: Annotated[
        float | None, Field(gt=0, le=MAX_PARAMS_B, description="Total parameters, in billions.")
    ] = None
    layers: Annotated[int | None, Field(gt=0, le=MAX_COUNT, description="Transformer layers.")] = (
        None
    )
    attention_heads: Annotated[
        int | None, Field(gt=0, le=MAX_COUNT, description="Query attention heads.")
    ] = None
    kv_heads: Annotated[
        int | None, Field(gt=0, le=MAX_COUNT, description="Key/value heads (GQA groups).")
    ] = None
    head_dim: Annotated[
        int | None, Field(gt=0, le=MAX_WIDTH, description="Dimension of one attention head.")
    ] = None
    hidden_size: Annotated[int | None, Field(gt=0, le=MAX_WIDTH, description="Model width.")] = None
    vocab_size: Annotated[int | None, Field(gt=0, le=MAX_VOCAB, description="Vocabulary size.")] = (
        None
    )
    tie_word_embeddings: Annotated[
        bool, Field(description="Input embedding and LM head share weights.")
    ] = False
    weights_gib: Annotated[
        float | None,
        Field(
            gt=0,
            le=MAX_GIB,
            description="Measured checkpoint size in GiB; overrides the computed one.",
        ),
    ] = None

    @model_validator(mode="after")
    def _heads(self) -> Architecture:
        shape = ("params_b", "layers", "attention_heads", "kv_heads", "head_dim")
        missing = [name for name in shape if getattr(self, name) is None]
        if self.config is None and missing:
            raise ValueError(
                f"needs config: PATH to a config.json, or {', '.join(missing)} "
                "(params_b, layers, attention_heads, kv_heads, head_dim)"
            )
        if self.attention_heads and self.kv_heads and self.attention_heads % self.kv_heads:
            raise ValueError("attention_heads must be a multiple of kv_heads")
        return self


class ModelSpec(_Strict):
    id: Annotated[
        str, Field(min_length=1, description="Model id, e.g. mistralai/Mistral-7B-Instruct-v0.3.")
    ]
    source: Annotated[
        str | None,
        Field(description=f"Where weights come from: {_SOURCE_FORMS}."),
    ] = None
    revision: Annotated[
        str, Field(min_length=1, description="Model revision; prod requires a commit sha.")
    ] = "main"
    version: Annotated[
        str, Field(min_length=1, description="Version label used by promote and rollback.")
    ] = "1"
    dtype: Annotated[Dtype, Field(description="Weight dtype the engine loads.")] = "bfloat16"
    quantization: Annotated[
        Quantization | None,
        Field(description="Quantization method, if any.", validate_default=True),
    ] = None
    max_context: Annotated[
        int, Field(ge=128, le=2_097_152, description="Tokens per sequence (--max-model-len).")
    ] = 8192
    architecture: Annotated[
        Architecture | None,
        Field(description="Shape of a model the catalog does not know."),
    ] = None
    license_accepted: Annotated[
        str | None,
        Field(
            min_length=1,
            description="Name of the model licence you accept; prod refuses a non-commercial "
            "or conditional licence until it is recorded here.",
        ),
    ] = None

    @field_validator("quantization")
    @classmethod
    def _integer_dtype_needs_a_method(cls, v: str | None, info: ValidationInfo) -> str | None:
        dtype = info.data.get("dtype")
        if dtype in ("int4", "int8") and v not in ("awq", "gptq"):
            raise ValueError(
                f"dtype: {dtype} needs a quantization method, else vLLM loads the 16-bit "
                "checkpoint; set quantization: awq or gptq with a checkpoint quantized that "
                "way, or keep dtype: bfloat16 and point model.id at a pre-quantized checkpoint "
                "(its own format is sized)"
            )
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is None or _MODEL_SOURCE.match(v) or "://" not in v:
            return v
        raise ValueError(f"must be {_SOURCE_FORMS}")

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, v: Any) -> Any:
        if isinstance(v, float):
            # YAML reads 1.10 as the number 1.1: the label the user meant is already lost.
            raise ValueError('quote the version, e.g. version: "1.10" (YAML reads it as a number)')
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class Replicas(_Strict):
    min: Annotated[int, Field(ge=1, le=100, description="Replicas always running.")] = 1
    max: Annotated[int, Field(ge=1, le=100, description="Upper bound for autoscaling.")] = 1

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


EngineArgValue = str | int | float | bool | None


def _secret_reference(ref: str) -> str:
    """Validate one secret entry, so an error points at that entry's line."""
    if not _SECRET_REF.match(ref):
        # Never echo the value: it may be the secret itself.
        raise ValueError(
            f"must be a reference ({SECRET_REF_FORMS}), not a value; the value was not printed"
        )
    return ref


def _env_var_name(name: str) -> str:
    """
    A secret's name becomes an environment variable in the container; the image's boot step
    exports it, and a name the shell cannot export would crash-loop the container at start.
    """
    if not _ENV_NAME.match(name):
        raise ValueError(
            "secret names are environment variable names: letters, digits and _, "
            "not starting with a digit (e.g. HF_TOKEN)"
        )
    return name


class Serving(_Strict):
    engine: Annotated[Literal["vllm"], Field(description="Inference engine.")] = "vllm"
    image: Annotated[
        str | None,
        Field(description="Inference image; prod requires repo@sha256:<digest>."),
    ] = None
    max_concurrency: Annotated[
        int, Field(ge=1, le=4096, description="Sequences held at full context per replica.")
    ] = 16
    gpu_memory_utilization: Annotated[
        float, Field(ge=0.5, le=0.98, description="Share of each GPU the engine may use.")
    ] = 0.90
    kv_cache_dtype: Annotated[
        Literal["auto", "fp8"], Field(description="fp8 halves the KV cache.")
    ] = "auto"
    replicas: Annotated[Replicas, Field(description="Replica bounds.")] = Replicas()
    auth: Annotated[
        Literal["key", "iam", "none"], Field(description="Endpoint auth; none is refused in prod.")
    ] = "key"
    engine_args: Annotated[
        dict[str, EngineArgValue], Field(description="Extra vLLM flags, without leading dashes.")
    ] = {}
    secrets: Annotated[
        dict[
            Annotated[str, AfterValidator(_env_var_name)],
            Annotated[str, AfterValidator(_secret_reference)],
        ],
        Field(description=f"Env var → secret reference ({SECRET_REF_FORMS}); never values."),
    ] = {}

    @field_validator("engine_args")
    @classmethod
    def _flag_names(cls, v: dict[str, EngineArgValue]) -> dict[str, EngineArgValue]:
        for flag in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", flag):
                raise ValueError(f"{flag!r}: flag names are lowercase words joined by '-'")
        return v


class ClusterPool(_Strict):
    """One node pool of the user's own cluster (a Kubernetes node group), offered as is."""

    name: Annotated[str, Field(min_length=1, description="Node pool name.")]
    gpu: Annotated[str, Field(min_length=1, description="GPU model, e.g. H100, L40S.")]
    gpu_count: Annotated[int, Field(ge=1, le=16, description="GPUs per node.")]
    gpu_memory_gib: Annotated[
        float | None,
        Field(gt=0, le=MAX_GIB, description="Usable GiB per GPU; default from the catalog."),
    ] = None
    gpu_class: Annotated[
        str | None, Field(description="Value of the GPU class node label for this pool.")
    ] = None
    hourly_usd: Annotated[
        float | None,
        Field(ge=0, le=MAX_USD_HOUR, description="Cost of one node per hour, if known."),
    ] = None
    region: Annotated[str, Field(description="Cluster region or site.")] = "cluster"
    country: Annotated[
        str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country of the nodes.")
    ]


class ClusterPlacement(_Strict):
    """The user's own cluster (a Kubernetes cluster): where to reach it and its GPU pools."""

    context: Annotated[str | None, Field(description="kubeconfig context.")] = None
    namespace: Annotated[str, Field(description="Namespace for the workload.")] = "mdeploy"
    gpu_class_label: Annotated[str, Field(description="Node label that names the GPU class.")] = (
        "gpu.nvidia.com/class"
    )
    pools: Annotated[
        list[ClusterPool],
        Field(description="Your own GPU node pools, offered as the target named like this key."),
    ] = []


class _PlacementFields(_Strict):
    """Placement without its cluster keys: `Placement` adds one per target that takes pools."""

    clouds: Annotated[
        list[CloudName], Field(min_length=1, description="Targets the planner may choose.")
    ] = list(default_clouds())
    residency: Annotated[
        list[str],
        Field(
            description="Allowed jurisdictions (EU, EEA, UK, CH, US) or ISO countries; [] = any."
        ),
    ] = []
    regions: Annotated[list[str], Field(description="Optional region allow-list.")] = []
    gpus: Annotated[list[str], Field(description="Optional GPU allow-list, e.g. [L4, H100].")] = []
    max_hourly_usd: Annotated[
        float | None, Field(gt=0, le=MAX_USD_HOUR, description="Budget per replica, USD per hour.")
    ] = None

    @field_validator("residency")
    @classmethod
    def _residency(cls, v: list[str]) -> list[str]:
        for item in v:
            if item not in JURISDICTIONS and not re.fullmatch(r"[A-Z]{2}", item):
                raise ValueError(
                    f"{item!r}: use a jurisdiction ({', '.join(JURISDICTIONS)}) "
                    "or an ISO 3166-1 alpha-2 country code such as FR"
                )
        return v

    @classmethod
    def cluster_keys(cls) -> tuple[str, ...]:
        """The `placement.<key>` fields holding a user's cluster (read from the targets)."""
        return tuple(k for k in cls.model_fields if k not in _PlacementFields.model_fields)

    def clusters(self) -> dict[str, ClusterPlacement]:
        """Each cluster the spec declares, by its placement key (= the target it is offered as)."""
        found = {key: getattr(self, key) for key in self.cluster_keys()}
        return {key: value for key, value in found.items() if value is not None}

    @model_validator(mode="after")
    def _pools_for_clusters(self) -> _PlacementFields:
        for key in self.cluster_keys():
            cluster = getattr(self, key)
            if key in self.clouds and not (cluster and cluster.pools):
                raise ValueError(f"cloud {key!r} needs placement.{key}.pools")
        return self


def _cluster_field(targets: tuple[str, ...]) -> Any:
    description = f"Cluster settings for {'/'.join(targets)}."
    return (ClusterPlacement | None, Field(default=None, description=description))


# One optional `placement.<key>` per target declaring `pool_placement` (targets/<folder>/
# target.py, read as text): spec/ names no cloud, and a new cluster target adds its own key.
Placement = create_model(
    "Placement",
    __base__=_PlacementFields,
    __module__=__name__,
    **{key: _cluster_field(targets) for key, targets in pool_placements().items()},
)


class Rollout(_Strict):
    """How `mdeploy promote` moves traffic to a new version (mdeploy/ops/promote.py)."""

    strategy: Annotated[
        Literal["canary", "blue-green"],
        Field(
            description="canary: shift traffic through `steps`; blue-green: the new version "
            "bakes at 0 %, then takes 100 % at once."
        ),
    ] = "canary"
    steps: Annotated[
        list[int],
        Field(
            min_length=1,
            description="canary only: traffic percentages, increasing, ending at 100.",
        ),
    ] = [10, 50, 100]
    bake_minutes: Annotated[
        int, Field(ge=0, le=1440, description="Minutes to watch each step before the next.")
    ] = 10

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int], info: ValidationInfo) -> list[int]:
        if any(not 0 < s <= 100 for s in v) or v != sorted(set(v)) or v[-1] != 100:
            raise ValueError("steps must be increasing percentages in 1..100 ending at 100")
        if info.data.get("strategy") == "blue-green" and v != [100]:
            raise ValueError(
                "blue-green switches 0 → 100 after the bake; steps are for canary "
                "(remove steps, or use strategy: canary)"
            )
        return v


class Deployment(_Strict):
    api_version: Annotated[
        Literal["mdeploy/v1"], Field(alias="apiVersion", description="Spec version.")
    ]
    kind: Annotated[Literal["Deployment"], Field(description="Document kind.")]
    metadata: Metadata
    model: ModelSpec
    serving: Serving = Serving()
    placement: Placement = Placement()
    rollout: Rollout = Rollout()
    guardrails: Annotated[
        Literal["standard", "strict"],
        Field(description="strict applies the prod guardrails whatever the env is called."),
    ] = "standard"
    environments: Annotated[
        dict[str, dict[str, Any]],
        Field(description="Overlays deep-merged over this spec by --env NAME."),
    ] = {}

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )
