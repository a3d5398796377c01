"""
Shared fixtures for the four targets' component tests.

`endpoint_args_<target>` are EndpointArgs built by hand (what the planner would hand a target),
so component tests do not depend on the catalog or the planner. `pulumi_mocks` yields a
`mdeploy.deploy.mocks.MockSession`: a fresh mock Pulumi runtime that records every resource
with its type token, name, inputs, parent URN and dependencies. Typical use:

    def test_x(pulumi_mocks, endpoint_args_aws):
        comp = pulumi_mocks.run(lambda: AwsEndpoint("ep", endpoint_args_aws))
        model = pulumi_mocks.one("aws:sagemaker/model:Model")
        assert model.parent == pulumi_mocks.resolve(comp.urn)
        assert pulumi_mocks.resolve(comp.image).endswith(DIGEST)

Set stack config for a test with `pulumi_mocks.set_config({"mdeploy:key": "value"})` before run().
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mdeploy.targets.base import EndpointArgs, startup_timeout_s

DIGEST = "sha256:" + "0123456789abcdef" * 4
SOURCE_IMAGE = f"registry.example.com/mdeploy/vllm@{DIGEST}"
SECRETS = {"HF_TOKEN": "env:HF_TOKEN"}
WEIGHTS_GIB = 13.5


def engine_args(tp: int = 1) -> tuple[str, ...]:
    """vLLM flags as the planner emits them for tensor parallelism `tp`."""
    return (
        "--tensor-parallel-size", str(tp),
        "--max-model-len", "32768",
        "--gpu-memory-utilization", "0.9",
    )  # fmt: skip


def make_endpoint_args(**overrides: Any) -> EndpointArgs:
    """A Mistral-7B endpoint; override any EndpointArgs field."""
    base: dict[str, Any] = {
        "name": "mistral-7b-chat",
        "env": "default",
        "model_id": "mistralai/Mistral-7B-Instruct-v0.3",
        "model_source": "hf://mistralai/Mistral-7B-Instruct-v0.3",
        "model_revision": "e0bc86c23ce5aae1db576c8cca6f06f1f73af2db",
        "model_version": "1",
        "served_model_name": "mistralai/Mistral-7B-Instruct-v0.3",
        "image": SOURCE_IMAGE,
        "engine_args": engine_args(1),
        "region": "eu-west-3",
        "instance_type": "ml.g5.2xlarge",
        "gpu": "A10G",
        "gpu_count": 1,
        "replicas_min": 1,
        "replicas_max": 2,
        "auth": "key",
        "secrets": dict(SECRETS),
        "labels": {"team": "platform", "mdeploy-name": "mistral-7b-chat"},
        "weights_gib": WEIGHTS_GIB,
        "startup_timeout_s": startup_timeout_s(WEIGHTS_GIB),
        "max_context": 32768,
        "extra": {},
    }
    base.update(overrides)
    return EndpointArgs(**base)


@pytest.fixture
def endpoint_args_aws() -> EndpointArgs:
    """SageMaker: ml.g5.2xlarge in eu-west-3 (Paris), one A10G."""
    return make_endpoint_args(region="eu-west-3", instance_type="ml.g5.2xlarge", gpu="A10G")


@pytest.fixture
def endpoint_args_azure() -> EndpointArgs:
    """Azure ML: Standard_NC24ads_A100_v4 in francecentral, one A100-80GB."""
    return make_endpoint_args(
        region="francecentral", instance_type="Standard_NC24ads_A100_v4", gpu="A100-80GB"
    )


@pytest.fixture
def endpoint_args_gcp() -> EndpointArgs:
    """Vertex AI: g2-standard-8 in europe-west4, one L4."""
    return make_endpoint_args(
        region="europe-west4",
        instance_type="g2-standard-8",
        gpu="L4",
        extra={"accelerator_type": "NVIDIA_L4"},
    )


@pytest.fixture
def endpoint_args_coreweave() -> EndpointArgs:
    """CoreWeave (kubernetes target): one 8×H100 node in US-EAST-04A, tensor parallel 8."""
    return make_endpoint_args(
        region="US-EAST-04A",
        instance_type="gd-8xh100ib-i128",
        gpu="H100",
        gpu_count=8,
        engine_args=engine_args(8),
        extra={
            "gpu_class": "H100_NVLINK_80GB",
            "instance_type_label": "gd-8xh100ib-i128",
            "namespace": "mdeploy",
            "gpu_class_label": "gpu.nvidia.com/class",
        },
    )


@pytest.fixture
def pulumi_mocks() -> Iterator[Any]:
    """A fresh recording mock Pulumi runtime (preview=False); reset again afterwards."""
    from mdeploy.deploy.mocks import MockSession

    with MockSession(project="mdeploy-test", stack="test") as session:
        yield session
