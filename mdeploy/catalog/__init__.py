"""
The offline catalog: GPU offers per target and region, regions with their jurisdiction,
GPU memory, and model architectures.

Everything here reads bundled files (or a refreshed copy named by MDEPLOY_CATALOG_DIR) with
the standard library only, so `mdeploy plan` needs no network and no cloud SDK. Building the
bundled data is `mdeploy.catalog.build`; refreshing prices online is `mdeploy.catalog.refresh`.
"""

from mdeploy.catalog._gpus import GPUS, GpuSpec, gpu_memory_gib, gpu_spec
from mdeploy.catalog._models import (
    architecture_from_config,
    estimate_params,
    get_architecture,
    load_models,
    resolve_model,
)
from mdeploy.catalog._query import GpuSummary, find_offers, find_regions, gpu_summary
from mdeploy.catalog._store import (
    CATALOG_DIR_ENV,
    JURISDICTIONS,
    TARGETS,
    catalog_dir,
    gpu_names,
    load_offers,
    load_regions,
)
from mdeploy.catalog.models import ModelArchitecture, Offer, Region

__all__ = [
    "CATALOG_DIR_ENV",
    "GPUS",
    "JURISDICTIONS",
    "TARGETS",
    "GpuSpec",
    "GpuSummary",
    "ModelArchitecture",
    "Offer",
    "Region",
    "architecture_from_config",
    "catalog_dir",
    "estimate_params",
    "find_offers",
    "find_regions",
    "get_architecture",
    "gpu_memory_gib",
    "gpu_names",
    "gpu_spec",
    "gpu_summary",
    "load_models",
    "load_offers",
    "load_regions",
    "resolve_model",
]
