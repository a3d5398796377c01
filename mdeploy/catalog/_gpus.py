"""
Canonical GPU names and the usable memory M of the sizing rule (docs/sizing.md).

One table, shared by the build, the refresh and the planner's defaults for Kubernetes pools,
so that a GPU has the same name and the same M on every target. M is what the NVIDIA driver
reports, not the marketing figure: six GPUs have a measured value; every other GPU gets
nominal GB × 0.937 (GDDR parts) or the nominal figure (HBM parts) and is marked an estimate.
Pure data and arithmetic: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mdeploy.errors import InputError

__all__ = [
    "GDDR_FACTOR",
    "GPUS",
    "GpuSpec",
    "canonical_gpu",
    "compute_capability_text",
    "gpu_memory_gib",
    "gpu_spec",
    "usable_memory",
]

# GDDR parts report about 93.7 % of their nominal size (ECC and driver reservations);
# the factor is the ratio the measured A10G/L4 (22.49 of 24) and L40S (44.99 of 48) show.
GDDR_FACTOR = 0.937


@dataclass(frozen=True)
class GpuSpec:
    """What the sizing rule needs to know about one GPU model."""

    name: str
    nominal_gb: float  # vendor's per-GPU memory figure
    memory: Literal["HBM", "GDDR"]
    measured_gib: float | None = None  # driver-reported usable GiB, where published
    arch: str = ""  # short family note for people reading `catalog gpus`
    compute_capability: tuple[int, int] = (0, 0)  # CUDA CC (major, minor), see _CC_SOURCE

    @property
    def bf16(self) -> bool:
        """bfloat16 kernels need Ampere (CC 8.0) or newer; Volta and Turing have fp16 only."""
        return self.compute_capability >= (8, 0)

    @property
    def fp8_native(self) -> bool:
        """FP8 tensor cores (W8A8): Ada 8.9, Hopper 9.0, Blackwell 10.x/12.0."""
        return self.compute_capability >= (8, 9)

    @property
    def fp4_native(self) -> bool:
        """FP4 (NVFP4/MXFP4) tensor cores: Blackwell 10.x and 12.0."""
        return self.compute_capability >= (10, 0)

    @property
    def usable_gib(self) -> float:
        """M: measured where known, else the estimate rule of docs/sizing.md."""
        if self.measured_gib is not None:
            return self.measured_gib
        if self.memory == "GDDR":
            return round(self.nominal_gb * GDDR_FACTOR, 2)
        return float(self.nominal_gb)

    @property
    def estimated(self) -> bool:
        return self.measured_gib is None


# Compute capability: NVIDIA, "CUDA GPU Compute Capability", https://developer.nvidia.com/cuda-gpus
# (B300/GB300 10.3, B200/GB200 10.0, RTX PRO 6000 Blackwell 12.0, H100/H200/GH200 9.0,
# L4/L40/L40S 8.9, A10 8.6 — A10G is the AWS A10 variant) and "Legacy CUDA GPU Compute
# Capability", https://developer.nvidia.com/cuda-legacy-gpus (V100 7.0); A100 8.0 and T4 7.5
# from the same table's earlier edition; checked 2026-12-06.
# New nominal memory: B300 288 GB HBM3e per GPU (NVIDIA NIM Boltz-2 1.7.0 release notes,
# "NVIDIA-B300-SXM6-AC ... 288GB HBM3e memory per GPU"; NIM LLM support matrix lists
# B300-SXM6-AC at 288 GB), GB300 the same Blackwell Ultra part; checked 2026-12-06.
_CC_SOURCE = "https://developer.nvidia.com/cuda-gpus (checked 2026-12-06)"

_TABLE = (
    # Measured M: what the NVIDIA driver reports (docs/sizing.md).
    GpuSpec("H100", 80, "HBM", 79.65, "Hopper", (9, 0)),
    GpuSpec("A100-80GB", 80, "HBM", 80.00, "Ampere", (8, 0)),
    GpuSpec("A100", 40, "HBM", 40.00, "Ampere", (8, 0)),
    GpuSpec("A10G", 24, "GDDR", 22.49, "Ampere (AWS)", (8, 6)),
    GpuSpec("L4", 24, "GDDR", 22.49, "Ada", (8, 9)),
    GpuSpec("L40S", 48, "GDDR", 44.99, "Ada", (8, 9)),
    # Estimated M.
    GpuSpec("H100-NVL", 94, "HBM", None, "Hopper (Azure NC H100 v5)", (9, 0)),
    GpuSpec("H200", 141, "HBM", None, "Hopper", (9, 0)),
    GpuSpec("B200", 180, "HBM", None, "Blackwell", (10, 0)),
    GpuSpec("B300", 288, "HBM", None, "Blackwell Ultra", (10, 3)),
    GpuSpec("GB200", 186, "HBM", None, "Grace Blackwell (arm64 host)", (10, 0)),
    GpuSpec("GB300", 288, "HBM", None, "Grace Blackwell Ultra (arm64 host)", (10, 3)),
    GpuSpec("GH200", 96, "HBM", None, "Grace Hopper (arm64 host)", (9, 0)),
    GpuSpec("A10", 24, "GDDR", None, "Ampere (Azure)", (8, 6)),
    GpuSpec("L40", 48, "GDDR", None, "Ada", (8, 9)),
    GpuSpec("RTXPRO6000", 96, "GDDR", None, "Blackwell (RTX PRO 6000 Server)", (12, 0)),
    GpuSpec("T4", 16, "GDDR", None, "Turing (no bf16)", (7, 5)),
    GpuSpec("V100", 16, "HBM", None, "Volta (no bf16)", (7, 0)),
    GpuSpec("V100-32GB", 32, "HBM", None, "Volta (no bf16)", (7, 0)),
)

GPUS: dict[str, GpuSpec] = {g.name: g for g in _TABLE}

# Names the reference files use for a GPU that is one of ours under another name.
# H100-MEGA (GCP a3-megagpu) is the same 80 GB H100 SXM part with more network bandwidth.
_SOURCE_ALIASES = {"H100-MEGA": "H100"}
_BY_FOLDED = {name.casefold(): name for name in GPUS}


def canonical_gpu(source_name: str, nominal_gb: float) -> str:
    """
    Map a reference file's accelerator name to the catalog's canonical name.

    Raises ValueError (a build error, not a user error) for a GPU the table does not know
    or whose nominal memory disagrees with the table: such a row must not get a silent M.
    """
    name = _SOURCE_ALIASES.get(source_name, source_name)
    # Azure's NC*ads_H100_v5 carry the 94 GB H100 NVL, a different part from the 80 GB SXM.
    if name == "H100" and nominal_gb == 94:
        name = "H100-NVL"
    spec = GPUS.get(name)
    if spec is None:
        raise ValueError(f"GPU {source_name!r} is not in the catalog's GPU table (_gpus.py)")
    if float(nominal_gb) != float(spec.nominal_gb):
        raise ValueError(
            f"GPU {source_name!r}: source says {nominal_gb} GB per GPU, "
            f"the table says {spec.nominal_gb} GB"
        )
    return name


def usable_memory(gpu: str) -> tuple[float, bool]:
    """Return (M in GiB, estimated?) for a canonical GPU name."""
    spec = GPUS[gpu]
    return spec.usable_gib, spec.estimated


def gpu_spec(gpu: str) -> GpuSpec:
    """Look a GPU up by name, case-insensitively; InputError names the known ones."""
    name = _BY_FOLDED.get(gpu.casefold()) or _SOURCE_ALIASES.get(gpu.upper())
    if name is None:
        raise InputError(
            f"unknown GPU {gpu!r}",
            hint="known GPUs: " + ", ".join(sorted(GPUS)) + " (see `mdeploy catalog gpus`)",
        )
    return GPUS[name]


def compute_capability_text(gpu: str) -> str:
    """'9.0' for H100; '?' for a GPU the table does not know (a user's pool name)."""
    spec = GPUS.get(gpu) or GPUS.get(_BY_FOLDED.get(gpu.casefold(), ""))
    if spec is None or spec.compute_capability == (0, 0):
        return "?"
    return "{}.{}".format(*spec.compute_capability)


def gpu_memory_gib(gpu: str) -> float:
    """M for a GPU name, e.g. the default `gpu_memory_gib` of a Kubernetes pool."""
    return gpu_spec(gpu).usable_gib
