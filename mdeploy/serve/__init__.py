"""
The contract adapter that runs inside the inference image, in front of vLLM.

It imports nothing else from mdeploy and needs only uvicorn (the `serve` extra, already in
the vLLM image; the hop to the engine is a small asyncio client, see `upstream.py`).
Importing this package is cheap: it loads only the contract constants, which deploy-time
code (the Azure and GCP targets) reads. The server itself is in
`mdeploy.serve.server` (`run`) and `mdeploy.serve.app` (`Adapter`).
"""

from mdeploy.serve.contract import (
    AZUREML_LIVENESS_ROUTE,
    AZUREML_PORT,
    AZUREML_READINESS_ROUTE,
    AZUREML_SCORING_ROUTE,
    DEFAULT_ENGINE_URL,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    LIVENESS_ROUTE,
    PLATFORMS,
    READINESS_ROUTE,
    SAGEMAKER_INVOCATIONS_ROUTE,
    SAGEMAKER_PING_ROUTE,
    SAGEMAKER_PORT,
    VERTEX_DEFAULT_HEALTH_ROUTE,
    VERTEX_DEFAULT_PORT,
    VERTEX_DEFAULT_PREDICT_ROUTE,
    Contract,
    Detection,
    Platform,
    contract_for,
    detect,
    detect_platform,
)

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
