"""
Canonical GPU names and the usable memory M of DESIGN.md's sizing rule.

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

    @property
    def usable_gib(self) -> float:
        """M: measured where known, else the DESIGN.md estimate rule."""
        if self.measured_gib is not None:
            return self.measured_gib
        if self.memory == "GDDR":
            return round(self.nominal_gb * GDDR_FACTOR, 2)
        return float(self.nominal_gb)

    @property
    def estimated(self) -> bool:
        return self.measured_gib is None


_TABLE = (
    # Measured M (DESIGN.md sizing rule).
    GpuSpec("H100", 80, "HBM", 79.65, "Hopper"),
    GpuSpec("A100-80GB", 80, "HBM", 80.00, "Ampere"),
    GpuSpec("A100", 40, "HBM", 40.00, "Ampere"),
    GpuSpec("A10G", 24, "GDDR", 22.49, "Ampere (AWS)"),
    GpuSpec("L4", 24, "GDDR", 22.49, "Ada"),
    GpuSpec("L40S", 48, "GDDR", 44.99, "Ada"),
    # Estimated M.
    GpuSpec("H100-NVL", 94, "HBM", None, "Hopper (Azure NC H100 v5)"),
    GpuSpec("H200", 141, "HBM", None, "Hopper"),
    GpuSpec("B200", 180, "HBM", None, "Blackwell"),
    GpuSpec("GB200", 186, "HBM", None, "Grace Blackwell (arm64 host)"),
    GpuSpec("GH200", 96, "HBM", None, "Grace Hopper (arm64 host)"),
    GpuSpec("A10", 24, "GDDR", None, "Ampere (Azure)"),
    GpuSpec("L40", 48, "GDDR", None, "Ada"),
    GpuSpec("RTXPRO6000", 96, "GDDR", None, "Blackwell"),
    GpuSpec("T4", 16, "GDDR", None, "Turing (no bf16)"),
    GpuSpec("V100", 16, "HBM", None, "Volta (no bf16)"),
    GpuSpec("V100-32GB", 32, "HBM", None, "Volta (no bf16)"),
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


def gpu_memory_gib(gpu: str) -> float:
    """M for a GPU name, e.g. the default `gpu_memory_gib` of a Kubernetes pool."""
    return gpu_spec(gpu).usable_gib
