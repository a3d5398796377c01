"""
Each cloud's container contract: which platform we run on, and its port and routes.

Pure data and pure functions over an environment mapping: no I/O, no uvicorn, no httpx, so
deploy-time code (the Azure target writing `inference_config`, the GCP target uploading a
Model) can import these constants from `mdeploy.serve` cheaply.

Detection, checked against each cloud's documentation:

- **Vertex AI** sets `AIP_HTTP_PORT`, `AIP_HEALTH_ROUTE`, `AIP_PREDICT_ROUTE`, `AIP_MODE`
  (`PREDICTION`) and friends in every custom container (custom-container-requirements,
  "Variables set by Vertex AI"). Any of these marks Vertex.
- **Azure ML** sets `AZUREML_MODEL_DIR` for a deployment with a model
  (concept-online-deployment-model-specification); any `AZUREML_*` variable marks Azure ML.
- **SageMaker** runs the image as `docker run <image> serve` (your-algorithms-inference-code),
  so a `serve` argument marks it; so do `SAGEMAKER_*` variables (SageMaker sets
  `SAGEMAKER_BIND_TO_PORT` and `SAGEMAKER_SAFE_PORT_RANGE` in inference pipelines) and `SM_*`
  variables (the target's model environment, e.g. vLLM's `SM_VLLM_*` convention).
- Otherwise **plain** (Kubernetes, CoreWeave, a laptop): OpenAI routes plus `/live`, `/ready`.

The markers must come from the platform or the target's deployment config, never from the
image: the same image runs on every cloud. Vertex wins over Azure ML over SageMaker when
several are present, because its variables are set by the platform itself and cannot be set
by users (the `AIP_` prefix is reserved).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AZUREML_LIVENESS_ROUTE",
    "AZUREML_PORT",
    "AZUREML_READINESS_ROUTE",
    "AZUREML_SCORING_ROUTE",
    "DEFAULT_ENGINE_URL",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "LIVENESS_ROUTE",
    "PLATFORMS",
    "READINESS_ROUTE",
    "SAGEMAKER_INVOCATIONS_ROUTE",
    "SAGEMAKER_PING_ROUTE",
    "SAGEMAKER_PORT",
    "VERTEX_DEFAULT_HEALTH_ROUTE",
    "VERTEX_DEFAULT_PORT",
    "VERTEX_DEFAULT_PREDICT_ROUTE",
    "Contract",
    "Detection",
    "Platform",
    "contract_for",
    "detect",
    "detect_platform",
]

Platform = Literal["sagemaker", "vertex", "azureml", "plain"]
PLATFORMS: tuple[Platform, ...] = ("sagemaker", "vertex", "azureml", "plain")

# The engine (vLLM's OpenAI server) listens on loopback only; the adapter is the one door.
DEFAULT_ENGINE_URL = "http://127.0.0.1:8000"
# One port for every cloud unless the platform says otherwise (Vertex: AIP_HTTP_PORT).
DEFAULT_PORT = 8080
# SageMaker's synchronous payload limit is 6 MB; the same default everywhere keeps behaviour
# identical across clouds. Configurable with --max-body-bytes / MDEPLOY_MAX_BODY_BYTES.
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024

# Served on every platform: adapter liveness (process up) and readiness (model loaded).
LIVENESS_ROUTE = "/live"
READINESS_ROUTE = "/ready"

# SageMaker real-time inference: fixed port and routes (your-algorithms-inference-code).
SAGEMAKER_PORT = 8080
SAGEMAKER_PING_ROUTE = "/ping"
SAGEMAKER_INVOCATIONS_ROUTE = "/invocations"

# Vertex AI: the platform passes the port and routes in AIP_* variables; these are the
# fallbacks when a variable is missing (e.g. `--platform vertex` on a laptop).
VERTEX_DEFAULT_PORT = 8080
VERTEX_DEFAULT_HEALTH_ROUTE = "/health"
VERTEX_DEFAULT_PREDICT_ROUTE = "/predict"

# Azure ML managed online endpoints (BYOC): the routes are ours to choose and the Azure
# target writes them into the environment's inference_config
# (liveness_route / readiness_route / scoring_route, all on AZUREML_PORT).
AZUREML_PORT = 8080
AZUREML_LIVENESS_ROUTE = LIVENESS_ROUTE
AZUREML_READINESS_ROUTE = READINESS_ROUTE
AZUREML_SCORING_ROUTE = "/score"

_VERTEX_MARKERS = ("AIP_HTTP_PORT", "AIP_PREDICT_ROUTE", "AIP_HEALTH_ROUTE", "AIP_MODE")


@dataclass(frozen=True)
class Detection:
    """Which platform, and the evidence for it (printed at startup so a person can check)."""

    platform: Platform
    reason: str


@dataclass(frozen=True)
class Contract:
    """
    What the platform expects from the container: the port and the routes it calls.

    `readiness` answers 200 only when the model is loaded; `liveness` answers 200 while the
    adapter process is up; `inference` is the platform's own scoring route (None on plain).
    """

    platform: Platform
    port: int
    liveness: str
    readiness: str
    inference: str | None

    def routes(self) -> dict[str, str]:
        """Name each platform route, for the startup summary and the docs."""
        out = {"liveness": self.liveness, "readiness": self.readiness}
        if self.inference:
            out["inference"] = self.inference
        return out


def detect(environ: Mapping[str, str], argv: Sequence[str] = ()) -> Detection:
    """
    Decide the platform from environment variables and the container's arguments.

    >>> detect({"AIP_HTTP_PORT": "8080"}).platform
    'vertex'
    >>> detect({}, argv=["serve"]).platform
    'sagemaker'
    """
    vertex = [name for name in _VERTEX_MARKERS if name in environ]
    if vertex:
        return Detection("vertex", f"Vertex AI variables set: {', '.join(vertex)}")
    azure = sorted(name for name in environ if name.startswith("AZUREML_"))
    if azure:
        return Detection("azureml", f"Azure ML variables set: {', '.join(azure[:3])}")
    if "serve" in argv:
        return Detection(
            "sagemaker", "started with the `serve` argument (docker run <image> serve)"
        )
    sagemaker = sorted(n for n in environ if n.startswith(("SAGEMAKER_", "SM_")))
    if sagemaker:
        return Detection("sagemaker", f"SageMaker variables set: {', '.join(sagemaker[:3])}")
    return Detection("plain", "no cloud marker: AIP_*, AZUREML_*, SAGEMAKER_*, SM_* or `serve`")


def detect_platform(environ: Mapping[str, str], argv: Sequence[str] = ()) -> Platform:
    """Return the platform `detect` decides on, without the reason."""
    return detect(environ, argv).platform


def contract_for(platform: Platform, environ: Mapping[str, str]) -> Contract:
    """
    Build the platform's contract, reading the values the platform passes in variables.

    Raises ValueError on an unknown platform or a malformed port variable.
    """
    if platform == "sagemaker":
        # Set by SageMaker only in inference pipelines; otherwise the port is fixed.
        port = _port(environ, "SAGEMAKER_BIND_TO_PORT", SAGEMAKER_PORT)
        return Contract(
            platform, port, LIVENESS_ROUTE, SAGEMAKER_PING_ROUTE, SAGEMAKER_INVOCATIONS_ROUTE
        )
    if platform == "vertex":
        health, predict = _vertex_routes(environ)
        port = _port(environ, "AIP_HTTP_PORT", VERTEX_DEFAULT_PORT)
        return Contract(platform, port, LIVENESS_ROUTE, health, predict)
    if platform == "azureml":
        return Contract(
            platform,
            AZUREML_PORT,
            AZUREML_LIVENESS_ROUTE,
            AZUREML_READINESS_ROUTE,
            AZUREML_SCORING_ROUTE,
        )
    if platform == "plain":
        return Contract(platform, DEFAULT_PORT, LIVENESS_ROUTE, READINESS_ROUTE, None)
    raise ValueError(f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}")


def _vertex_routes(environ: Mapping[str, str]) -> tuple[str, str]:
    """Vertex's routes: the AIP_* values, else the platform's documented defaults."""
    endpoint, deployed = environ.get("AIP_ENDPOINT_ID"), environ.get("AIP_DEPLOYED_MODEL_ID")
    if endpoint and deployed:
        base = f"/v1/endpoints/{endpoint}/deployedModels/{deployed}"
        health, predict = base, base + ":predict"
    else:
        health, predict = VERTEX_DEFAULT_HEALTH_ROUTE, VERTEX_DEFAULT_PREDICT_ROUTE
    return environ.get("AIP_HEALTH_ROUTE") or health, environ.get("AIP_PREDICT_ROUTE") or predict


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{name}={raw!r} is not a TCP port")
    return int(raw)
