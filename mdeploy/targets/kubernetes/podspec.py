"""
The pod of a Kubernetes endpoint: container, probes, security context, sizing, placement.

Pure builders of typed pulumi_kubernetes *Args* (no resources are created here), so each rule
can be tested alone and the component stays about wiring. Ports and routes follow the
adapter's plain-platform contract (mdeploy/serve/contract.py: port 8080, /live, /ready).
"""

from __future__ import annotations

import json
import math

import pulumi

from mdeploy.targets.base import EndpointArgs
from mdeploy.targets.kubernetes.api import apps, core, meta
from mdeploy.targets.kubernetes.nodes import GENERIC_REGION, REGION_LABEL, ZONE_LABEL
from mdeploy.targets.kubernetes.settings import KubernetesSettings

__all__ = [
    "CACHE_DIR",
    "PORT",
    "RUN_AS",
    "deployment_spec",
    "engine_env",
    "node_affinity",
    "pod_labels",
    "selector_labels",
    "sizing",
]

PORT = 8080  # mdeploy.serve.contract.DEFAULT_PORT (plain platform)
LIVENESS_PATH = "/live"  # mdeploy.serve.contract.LIVENESS_ROUTE
READINESS_PATH = "/ready"  # mdeploy.serve.contract.READINESS_ROUTE
RUN_AS = 10001
CACHE_DIR = "/cache"
PROBE_PERIOD_S = 10


def selector_labels(args: EndpointArgs) -> dict[str, str]:
    """The immutable labels that select this endpoint's pods."""
    return {"app.kubernetes.io/name": "mdeploy", "app.kubernetes.io/instance": args.name}


def pod_labels(args: EndpointArgs) -> dict[str, str]:
    """Descriptive labels (user labels + model version), sanitised to label-value rules."""
    out = {_label_key(k): _label_value(v) for k, v in args.labels.items()}
    out.update(
        {
            "app.kubernetes.io/managed-by": "mdeploy",
            "app.kubernetes.io/version": _label_value(args.model_version),
            "mdeploy.io/env": _label_value(args.env),
        }
    )
    return out


def engine_env(args: EndpointArgs) -> list[core.EnvVarArgs]:
    """
    The model and engine settings the image's entrypoint reads (plain values only).

    The root filesystem is read-only, so every path the image points at /home/mdeploy
    (templates/Dockerfile: HOME, XDG_CACHE_HOME, HF_HOME, MDEPLOY_WEIGHTS_DIR) is moved onto
    the `cache` volume: vLLM keeps its torch.compile cache under $XDG_CACHE_HOME/vllm and
    fails to start when it cannot create it; Triton and FlashInfer write under $HOME; s3://
    and gs:// weights are downloaded to MDEPLOY_WEIGHTS_DIR.
    """
    values = {
        "MDEPLOY_PLATFORM": "plain",
        "MDEPLOY_MODEL_ID": args.model_id,
        "MDEPLOY_MODEL_SOURCE": args.model_source or "",
        "MDEPLOY_MODEL_REVISION": args.model_revision,
        "MDEPLOY_SERVED_MODEL_NAME": args.served_model_name,
        "MDEPLOY_ENGINE_ARGS": json.dumps(list(args.engine_args)),
        "HOME": CACHE_DIR,
        "XDG_CACHE_HOME": f"{CACHE_DIR}/.cache",
        "HF_HOME": f"{CACHE_DIR}/huggingface",
        "MDEPLOY_WEIGHTS_DIR": f"{CACHE_DIR}/weights",
    }
    return [core.EnvVarArgs(name=k, value=v) for k, v in values.items()]


def sizing(args: EndpointArgs, settings: KubernetesSettings) -> dict[str, str]:
    """
    CPU, memory, /dev/shm and cache sizes: config overrides, else derived from the shape.

    Memory covers loading the weights through host RAM plus the memory-backed /dev/shm
    (it counts against the container's memory limit); the cache holds one copy of the weights.
    """
    shm = settings.shm_size or ("16Gi" if args.gpu_count > 1 else "4Gi")
    host_gib = max(32, math.ceil(args.weights_gib * 1.25) + 16) + _gib(shm)
    cache_gib = math.ceil(args.weights_gib * 1.2) + 10
    cpu = settings.cpu or str(max(4, 4 * args.gpu_count))
    return {
        "cpu": cpu,
        "cpu_limit": str(2 * int(cpu)) if cpu.isdigit() else cpu,
        "memory": settings.memory or f"{host_gib}Gi",
        "shm": shm,
        "cache": f"{cache_gib}Gi",
        "ephemeral": f"{cache_gib + 4}Gi",
    }


def node_affinity(args: EndpointArgs) -> core.AffinityArgs | None:
    """
    Pin pods to the GPU class (CoreWeave label) or the node instance type, and to the region.

    The region (unless a pool's generic "cluster") must match a node's
    topology.kubernetes.io/region or topology.kubernetes.io/zone label: node selector terms
    are ORed, so each term repeats the GPU requirement with one of the two place labels.
    `up` checks first that some node carries it (nodes.region_problem).
    """
    gpu: list[core.NodeSelectorRequirementArgs] = []
    if args.extra.get("gpu_class"):
        key = str(args.extra.get("gpu_class_label") or "gpu.nvidia.com/class")
        gpu.append(_in(key, str(args.extra["gpu_class"])))
    elif args.extra.get("instance_type_label"):
        gpu.append(_in("node.kubernetes.io/instance-type", str(args.extra["instance_type_label"])))
    if args.region and args.region != GENERIC_REGION:
        places = [[*gpu, _in(label, args.region)] for label in (REGION_LABEL, ZONE_LABEL)]
    elif gpu:
        places = [gpu]
    else:
        return None
    return core.AffinityArgs(
        node_affinity=core.NodeAffinityArgs(
            required_during_scheduling_ignored_during_execution=core.NodeSelectorArgs(
                node_selector_terms=[
                    core.NodeSelectorTermArgs(match_expressions=terms) for terms in places
                ]
            )
        )
    )


def _in(key: str, value: str) -> core.NodeSelectorRequirementArgs:
    return core.NodeSelectorRequirementArgs(key=key, operator="In", values=[value])


def deployment_spec(
    args: EndpointArgs,
    settings: KubernetesSettings,
    image: str,
    account: pulumi.Input[str],
    secret_env: list[core.EnvVarArgs],
) -> apps.DeploymentSpecArgs:
    size = sizing(args, settings)
    gpus = str(args.gpu_count)
    resources = core.ResourceRequirementsArgs(
        requests={
            "cpu": size["cpu"],
            "memory": size["memory"],
            "ephemeral-storage": size["ephemeral"],
            "nvidia.com/gpu": gpus,
        },
        limits={
            "cpu": size["cpu_limit"],
            "memory": size["memory"],
            "ephemeral-storage": size["ephemeral"],
            "nvidia.com/gpu": gpus,
        },
    )
    pull_secret = settings.image_pull_secret
    has_hpa = args.replicas_max > args.replicas_min
    return apps.DeploymentSpecArgs(
        replicas=None if has_hpa else args.replicas_min,  # the HPA owns the count when present
        selector=meta.LabelSelectorArgs(match_labels=selector_labels(args)),
        strategy=apps.DeploymentStrategyArgs(
            type="RollingUpdate",
            rolling_update=apps.RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=0),
        ),
        template=core.PodTemplateSpecArgs(
            metadata=meta.ObjectMetaArgs(labels={**selector_labels(args), **pod_labels(args)}),
            spec=core.PodSpecArgs(
                service_account_name=account,
                automount_service_account_token=False,
                # No Docker-link variables: a Service named `vllm` in the namespace would set
                # VLLM_PORT=tcp://..., which vLLM refuses at start (vllm/envs.py).
                enable_service_links=False,
                termination_grace_period_seconds=60,
                image_pull_secrets=[core.LocalObjectReferenceArgs(name=pull_secret)]
                if pull_secret
                else None,
                security_context=core.PodSecurityContextArgs(
                    run_as_non_root=True,
                    run_as_user=RUN_AS,
                    run_as_group=RUN_AS,
                    fs_group=RUN_AS,
                    seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
                ),
                affinity=node_affinity(args),
                tolerations=[
                    core.TolerationArgs(
                        key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"
                    )
                ],
                containers=[
                    core.ContainerArgs(
                        name="server",
                        image=image,
                        image_pull_policy="IfNotPresent",  # pinned by digest: nothing to re-check
                        ports=[core.ContainerPortArgs(name="http", container_port=PORT)],
                        env=engine_env(args) + secret_env,
                        resources=resources,
                        security_context=core.SecurityContextArgs(
                            allow_privilege_escalation=False,
                            read_only_root_filesystem=True,
                            run_as_non_root=True,
                            run_as_user=RUN_AS,
                            capabilities=core.CapabilitiesArgs(drop=["ALL"]),
                            seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
                        ),
                        startup_probe=_probe(
                            READINESS_PATH,
                            max(1, math.ceil(args.startup_timeout_s / PROBE_PERIOD_S)),
                        ),
                        readiness_probe=_probe(READINESS_PATH, 3),
                        liveness_probe=_probe(LIVENESS_PATH, 4),
                        volume_mounts=[
                            core.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                            core.VolumeMountArgs(name="cache", mount_path=CACHE_DIR),
                            core.VolumeMountArgs(name="shm", mount_path="/dev/shm"),
                        ],
                    )
                ],
                volumes=[
                    core.VolumeArgs(
                        name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Gi")
                    ),
                    core.VolumeArgs(
                        name="cache",
                        empty_dir=core.EmptyDirVolumeSourceArgs(size_limit=size["cache"]),
                    ),
                    core.VolumeArgs(
                        name="shm",
                        empty_dir=core.EmptyDirVolumeSourceArgs(
                            medium="Memory", size_limit=size["shm"]
                        ),
                    ),
                ],
            ),
        ),
    )


def _probe(path: str, failures: int) -> core.ProbeArgs:
    return core.ProbeArgs(
        http_get=core.HTTPGetActionArgs(path=path, port="http"),
        period_seconds=PROBE_PERIOD_S,
        timeout_seconds=5,
        failure_threshold=failures,
    )


def _gib(quantity: str) -> int:
    """Whole GiB in a Kubernetes quantity such as 16Gi or 512Mi (rounded up)."""
    units = {"Gi": 1.0, "Mi": 1 / 1024, "Ti": 1024.0, "G": 0.931, "M": 0.000931}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return math.ceil(float(quantity[: -len(unit)]) * factor)
    return math.ceil(float(quantity) / 2**30)


def _label_key(key: str) -> str:
    return key if "/" in key else f"mdeploy.io/{key}"


def _label_value(value: str) -> str:
    """Kubernetes label values: <= 63 chars of [A-Za-z0-9._-], alphanumeric at both ends."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in value)[:63]
    return cleaned.strip("._-") or "none"
