"""
vLLM flags for a placement: the sizing decisions, spelled as the engine expects them.

The planner owns the flags that sizing depends on; `serving.engine_args` adds the rest.
"""

from __future__ import annotations

from mdeploy.errors import InputError
from mdeploy.spec.models import Deployment

__all__ = ["PLANNER_FLAGS", "engine_args"]

# Flags derived from spec fields and the offer; setting them in engine_args would silently
# break the memory verdict, so they are refused with the field to use instead.
PLANNER_FLAGS = {
    "tensor-parallel-size": "the offer's GPU count (placement.gpus / a different instance)",
    "pipeline-parallel-size": "the replica topology (nodes; docs/topology.md)",
    "nnodes": "the replica topology (nodes; docs/topology.md)",
    "node-rank": "the replica topology (LeaderWorkerSet worker index)",
    "master-addr": "the replica topology (LeaderWorkerSet leader address)",
    "headless": "the replica topology (workers of a multi-node replica)",
    "max-model-len": "model.max_context",
    "gpu-memory-utilization": "serving.gpu_memory_utilization",
    "quantization": "model.quantization",
    "kv-cache-dtype": "serving.kv_cache_dtype",
    "served-model-name": "model.id",
    "model": "model.source / model.id",
}


def check_engine_args(spec: Deployment) -> None:
    """Refuse user flags that would contradict the plan, naming the field that sets them."""
    clashes = [flag for flag in spec.serving.engine_args if flag in PLANNER_FLAGS]
    if clashes:
        flag = clashes[0]
        raise InputError(
            f"serving.engine_args.{flag}: set by the planner",
            hint=f"set it through {PLANNER_FLAGS[flag]} instead",
        )


def _flag_value(value: str | int | float | bool | None) -> list[str]:
    if value is None or value is True:
        return []
    if value is False:
        return ["false"]
    return [str(value)]


def engine_args(spec: Deployment, tensor_parallel: int) -> list[str]:
    """The full vLLM flag list for this spec on `tensor_parallel` GPUs."""
    model, serving = spec.model, spec.serving
    args = [
        "--served-model-name", model.id,
        "--tensor-parallel-size", str(tensor_parallel),
        "--max-model-len", str(model.max_context),
        "--gpu-memory-utilization", f"{serving.gpu_memory_utilization:g}",
    ]  # fmt: skip
    if model.dtype in ("bfloat16", "float16"):
        args += ["--dtype", model.dtype]
    quantization = model.quantization or ("fp8" if model.dtype == "fp8" else None)
    if quantization:
        args += ["--quantization", quantization]
    if serving.kv_cache_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    if model.revision and not model.source:
        args += ["--revision", model.revision]
    for flag, value in sorted(serving.engine_args.items()):
        if value is False:
            continue  # a boolean flag switched off: leave it out
        args += [f"--{flag}", *_flag_value(value)]
    return args
