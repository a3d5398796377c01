"""
Which reference rows become offers for each target, why, and where every figure comes from.

The build applies these rules; SOURCES.md is rendered from the same objects, so the written
provenance cannot drift from what the build did. Upstream repositories, commits and dates are
transcribed from the reference catalog's SOURCES.md files; the managed-endpoint SKU list and
the Vertex AI machine/accelerator pairs are cited from the clouds' own documentation.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from mdeploy.catalog._gpus import GDDR_FACTOR, GPUS
from mdeploy.catalog.models import Offer, Region

__all__ = [
    "AWS",
    "AZURE",
    "AZURE_MANAGED_SKUS",
    "COREWEAVE",
    "GCP",
    "INPUT_FILES",
    "SAGEMAKER_GPU_TYPES",
    "VERTEX_NOTES",
    "coreweave_extra",
    "parenthesised",
    "region_access",
    "sources_markdown",
    "vertex_accelerator",
]

INPUT_FILES = (
    "SOURCES.md",
    "aws_gpu_vms.csv",
    "aws_sagemaker_gpu.csv",
    "azure_gpu_vms.csv",
    "gcp_gpu_vms.csv",
    "k8s_gpu_offers.csv",
    "k8s_gpu_offers_SOURCES.md",
    "price_flags.csv",
    "sovereign_regions.csv",
)


@dataclass(frozen=True)
class TargetProvenance:
    """Where one target's rows come from and how their prices should be read."""

    target: str
    price_basis: str  # becomes Offer.price_source
    row_source: str  # becomes Offer.source
    description: str  # paragraph for SOURCES.md
    data_date: str = ""  # how old the prices are


AWS = TargetProvenance(
    "aws",
    price_basis="EC2 on-demand ×1.25 estimate (not a published SageMaker price)",
    row_source="aws_sagemaker_gpu.csv: EC2 prices of tsaol/aws-gpu data/all_gpu_instances.js"
    "@7412fd25 (instances.vantage.sh data, 2026-01-21) × 1.25",
    description=(
        "SageMaker real-time inference `ml.*` GPU instances: every row of "
        "`aws_sagemaker_gpu.csv`. No public per-region SageMaker price source was available "
        "offline, so each price is the EC2 on-demand price × 1.25 (the reference's rule); "
        "every row is `estimate=true`. Known deviation: ml.g5.xlarge us-east-1 is quoted at "
        "$1.408 (1.40 × EC2), the estimate gives $1.2575. SKU existence per region is not "
        "verified. Types the reference's SageMaker file does not cover (ml.p4de, ml.p5en H200, "
        "ml.p6-b200 B200, ml.p6-b300 B300, ml.g7e RTX PRO 6000) are derived by the same rule "
        "from `aws_gpu_vms.csv` wherever SageMaker's own API model (botocore "
        "`ProductionVariantInstanceType`) lists the `ml.` type; their `source` says so. "
        "ml.p5e.48xlarge is accepted by SageMaker but has no EC2 price in the reference, so "
        "it has no row; ml.p6e-gb200 (Grace, arm64) likewise. B300 rows use the GPU table's "
        "288 GB (NVIDIA), not the reference's unverified 268. `mdeploy catalog refresh` "
        "replaces these estimates with the AWS Price List (AmazonSageMaker, component "
        "Hosting) when the network is there."
    ),
    data_date="EC2 prices of 2026-01-21 (Vantage data), × 1.25",
)

# SageMaker real-time endpoints accept these GPU instance types: the `ml.g*`/`ml.p*` values of
# the `ProductionVariantInstanceType` enum in botocore's sagemaker service model (botocore
# 1.44.18, data/sagemaker/2017-07-24/service-2.json; a test checks this list against the
# installed botocore). Families older than the reference's SageMaker file (p2, p3, g4dn) are
# left out: vLLM's images need bf16 or FP8-capable GPUs for the models the planner sizes.
SAGEMAKER_GPU_TYPES = frozenset(
    [f"ml.g6.{s}" for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge",
                            "24xlarge", "48xlarge")]
    + [f"ml.g6e.{s}" for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge",
                               "16xlarge", "24xlarge", "48xlarge")]
    + [f"ml.g7e.{s}" for s in ("2xlarge", "4xlarge", "8xlarge", "12xlarge", "24xlarge",
                               "48xlarge")]
    + ["ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.p5.4xlarge", "ml.p5.48xlarge",
       "ml.p5e.48xlarge", "ml.p5en.48xlarge", "ml.p6-b200.48xlarge", "ml.p6-b300.48xlarge"]
)  # fmt: skip
SAGEMAKER_DERIVED_NOTE = (
    "derived by mdeploy from aws_gpu_vms.csv: SageMaker lists this type "
    "(botocore ProductionVariantInstanceType) and aws_sagemaker_gpu.csv has no row for it here"
)

AZURE = TargetProvenance(
    "azure",
    price_basis="Azure VM list price, Linux on-demand (managed online deployments are billed "
    "as the VMs they run on; Azure ML adds no surcharge)",
    row_source="azure_gpu_vms.csv: anycloud-sh/catalog azure/vms.csv@62ff0a98 (2026-05-20); "
    "SKU list: MicrosoftDocs/azure-ai-docs reference-managed-online-endpoints-vm-sku-list.md"
    "@1d987e37",
    description=(
        "Only the sizes Azure lists as supported for managed online endpoints "
        "(MicrosoftDocs/azure-ai-docs `articles/machine-learning/"
        "reference-managed-online-endpoints-vm-sku-list.md`, commits 1d987e37 and 43dc14ea "
        "read, identical GPU rows). Fractional A10 sizes (NV6/12/18ads_A10_v5) are left out. "
        "Listed sizes absent from the VM file get no row: NC6s_v2, NC12s_v2, NC24s_v2 (P100) and "
        "ND96is_H100_v5. Price = VM list price: Azure ML states 'no additional charge to use "
        "Azure Machine Learning ... along with compute' (azure.microsoft.com/pricing/details/"
        "machine-learning) and its cost guide (`concept-plan-manage-cost.md`) says managed "
        "online endpoints use VMs billed per hour. `quota_reserve_exempt` marks SKUs the list "
        "exempts from the 20 % extra quota reservation. NC*ads_H100_v5 carry the 94 GB H100 "
        "NVL, catalogued as `H100-NVL`, not `H100`; A10 (Azure, GDDR6 24 GB) is not A10G."
    ),
    data_date="VM list prices of 2026-05-20 (anycloud-sh/catalog)",
)

GCP = TargetProvenance(
    "gcp",
    price_basis="Compute Engine VM list price (host + GPU) estimate; Vertex AI prediction "
    "node prices differ",
    row_source="gcp_gpu_vms.csv: anycloud-sh/catalog gcp/vms.csv@62ff0a98 (2026-05-20; "
    "SkyPilot on-demand prices, snapshot on or before 2026-04-02)",
    description=(
        "Machine types with the GPU Vertex AI online prediction accepts "
        "(cloud.google.com/vertex-ai/docs/predictions/configure-compute; accelerator names are "
        "the `AcceleratorType` enum of google.cloud.aiplatform v1, kept in extra "
        "`accelerator_type`): g2-standard-* + NVIDIA_L4; a2-highgpu-*/a2-megagpu-16g + "
        "NVIDIA_TESLA_A100; a2-ultragpu-* + NVIDIA_A100_80GB; a3-highgpu-* + NVIDIA_H100_80GB; "
        "a3-megagpu-8g + NVIDIA_H100_MEGA_80GB; a3-ultragpu-8g + NVIDIA_H200_141GB; "
        "a4-highgpu-8g + NVIDIA_B200; N1 machines up to 32 vCPUs (the prediction list stops "
        "there) with T4 or V100. Left out: P100 and P4 (vLLM needs CUDA compute capability "
        ">= 7.0), n1-standard-64 and n1-highmem-64. Prices are Compute Engine prices, so "
        "every row is `estimate=true`; Vertex prediction nodes are billed at their own rates. "
        "For N1 rows one machine type can carry different GPUs, so (instance_type, gpu, "
        "gpu_count) identifies the offer. H100-MEGA is catalogued as `H100` (same 80 GB part)."
    ),
    data_date="SkyPilot on-demand prices, snapshot on or before 2026-04-02",
)

COREWEAVE = TargetProvenance(
    "coreweave",
    price_basis="CoreWeave on-demand list price per instance",
    row_source="k8s_gpu_offers.csv",
    description=(
        "The CoreWeave rows of `k8s_gpu_offers.csv` (CKS, General Access AZs only); region = "
        "availability zone, country and jurisdiction from the file. Prices: "
        "PrashantSedhain/coreweave-pricing-tracker data/2026-10-10.json@b936d50a (a scrape of "
        "coreweave.com/pricing, 2026-10-10). Extra `instance_type_label` is the value of "
        "`node.kubernetes.io/instance-type` (the CKS NodePool instanceType, the reliable "
        "selector); `gpu_class` is the `gpu.nvidia.com/class` value only where a source shows it "
        "(H100_NVLINK_80GB, SkyPilot issue #6701), empty where it is unsourced or only inferred. "
        "GB200 and GH200 nodes have Grace (arm64) hosts: `cpu_arch=arm64`, an amd64 image will "
        "not start there."
    ),
    data_date="coreweave.com/pricing scrape of 2026-10-10",
)

PROVENANCE = {p.target: p for p in (AWS, AZURE, GCP, COREWEAVE)}


@dataclass(frozen=True)
class ManagedSku:
    name: str
    reserve_exempt: bool


# GPU rows of reference-managed-online-endpoints-vm-sku-list.md (whole GPUs only).
AZURE_MANAGED_SKUS = {
    s.name.upper(): s
    for s in (
        ManagedSku("Standard_NC24ads_A100_v4", True),
        ManagedSku("Standard_NC48ads_A100_v4", True),
        ManagedSku("Standard_NC96ads_A100_v4", True),
        ManagedSku("Standard_NC4as_T4_v3", False),
        ManagedSku("Standard_NC8as_T4_v3", False),
        ManagedSku("Standard_NC16as_T4_v3", False),
        ManagedSku("Standard_NC64as_T4_v3", False),
        ManagedSku("Standard_NC6s_v2", False),
        ManagedSku("Standard_NC12s_v2", False),
        ManagedSku("Standard_NC24s_v2", False),
        ManagedSku("Standard_NC6s_v3", False),
        ManagedSku("Standard_NC12s_v3", False),
        ManagedSku("Standard_NC24s_v3", False),
        ManagedSku("Standard_NC40ads_H100_v5", True),
        ManagedSku("Standard_NC80adis_H100_v5", True),
        ManagedSku("Standard_ND96amsr_A100_v4", True),
        ManagedSku("Standard_ND96asr_v4", True),
        ManagedSku("Standard_ND40rs_v2", True),
        ManagedSku("Standard_ND96is_H100_v5", True),
        ManagedSku("Standard_ND96isr_H100_v5", True),
        ManagedSku("Standard_NV36ads_A10_v5", False),
        ManagedSku("Standard_NV36adms_A10_v5", False),
        ManagedSku("Standard_NV72ads_A10_v5", False),
    )
}

# Vertex AI prediction: machine family pattern -> GPU name in the reference -> enum value.
_VERTEX_PAIRS = (
    (r"g2-standard-(4|8|12|16|24|32|48|96)", "L4", "NVIDIA_L4"),
    (r"a2-highgpu-(1|2|4|8)g|a2-megagpu-16g", "A100", "NVIDIA_TESLA_A100"),
    (r"a2-ultragpu-(1|2|4|8)g", "A100-80GB", "NVIDIA_A100_80GB"),
    (r"a3-highgpu-(1|2|4|8)g", "H100", "NVIDIA_H100_80GB"),
    (r"a3-megagpu-8g", "H100-MEGA", "NVIDIA_H100_MEGA_80GB"),
    (r"a3-ultragpu-8g", "H200", "NVIDIA_H200_141GB"),
    (r"a4-highgpu-8g", "B200", "NVIDIA_B200"),
    (r"n1-(standard|highmem|highcpu)-(2|4|8|16|32)", "T4", "NVIDIA_TESLA_T4"),
    (r"n1-(standard|highmem|highcpu)-(2|4|8|16|32)", "V100", "NVIDIA_TESLA_V100"),
)

VERTEX_NOTES = {
    f"a3-highgpu-{n}g": "1/2/4-GPU A3 High may be offered only as Spot or Flex-start (unverified)"
    for n in (1, 2, 4)
}


# ---------------------------------------------------------------- region access

ACCESS_VALUES = ("open", "opt-in", "restricted", "partition")

# AWS: "Regions launched after March 20, 2019 are disabled by default and referred to as
# opt-in Regions" (docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html,
# read 2026-12-06). The regions of that kind that appear in the reference data; each is also
# marked "opt-in region" in sovereign_regions.csv, and the build fails if the two disagree.
AWS_OPT_IN_REGIONS = frozenset({
    "af-south-1", "ap-east-1", "ap-east-2", "ap-south-2", "ap-southeast-3", "ap-southeast-4",
    "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ca-west-1", "eu-central-2",
    "eu-south-1", "eu-south-2", "il-central-1", "me-central-1", "me-south-1", "mx-central-1",
})  # fmt: skip

# AWS partitions other than the commercial `aws` one (separate accounts): the `regionRegex`
# of each partition in botocore/data/partitions.json (botocore 1.44.18). A test checks this
# table against the installed botocore.
AWS_PARTITIONS = (
    (r"us-gov-\w+-\d+", "aws-us-gov"),
    (r"cn-\w+-\d+", "aws-cn"),
    (r"us-iso-\w+-\d+", "aws-iso"),
    (r"us-isob-\w+-\d+", "aws-iso-b"),
    (r"eu-isoe-\w+-\d+", "aws-iso-e"),
    (r"us-isof-\w+-\d+", "aws-iso-f"),
    (r"eusc-(de)-\w+-\d+", "aws-eusc"),
)

# Azure: regions the Azure regions list marks "access is restricted to support specific
# customer scenarios" (MicrosoftDocs/reliability-docs articles/reliability/regions-list.md
# @01021ab8, ms.date 2025-09-23). Jio India Central/West are absent from that public list
# (partner regions, reachable only through Jio): treated as restricted too.
AZURE_RESTRICTED_REGIONS = frozenset({
    "australiacentral2", "brazilsoutheast", "francesouth", "germanynorth", "norwaywest",
    "southafricawest", "swedensouth", "switzerlandwest", "uaecentral",
    "jioindiacentral", "jioindiawest",
})  # fmt: skip
# Azure sovereign clouds (separate partitions): US Government and Azure China regions.
_AZURE_PARTITION = re.compile(r"(usgov|usdod|ussec|usnat|china)\w*")


def region_access(target: str, region: str) -> str:
    """open | opt-in | restricted | partition, from the tables above; everything else is open."""
    if target == "aws":
        if any(re.fullmatch(pattern, region) for pattern, _ in AWS_PARTITIONS):
            return "partition"
        return "opt-in" if region in AWS_OPT_IN_REGIONS else "open"
    if target == "azure":
        if _AZURE_PARTITION.fullmatch(region):
            return "partition"
        return "restricted" if region in AZURE_RESTRICTED_REGIONS else "open"
    return "open"


def vertex_accelerator(machine_type: str, accelerator: str) -> str | None:
    """The Vertex `AcceleratorType` for a machine + GPU pair, or None if prediction rejects it."""
    for pattern, gpu, enum in _VERTEX_PAIRS:
        if accelerator == gpu and re.fullmatch(pattern, machine_type):
            return enum
    return None


def parenthesised(text: str, opener: str) -> str | None:
    """The text inside the balanced parentheses that `opener` (ending in '(') starts."""
    start = text.find(opener)
    if start < 0:
        return None
    depth, begin = 1, start + len(opener)
    for i in range(begin, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i]
    return None


def coreweave_extra(row: dict[str, str]) -> dict[str, str]:
    """Node selectors for a CoreWeave offer: instance-type label and, where sourced, GPU class."""
    gpu_class = ""
    found = re.search(r"gpu\.nvidia\.com/class=([A-Za-z0-9_]+)\s*(\([^)]*\))?", row["notes"])
    if found and "inferred" not in (found.group(2) or ""):
        gpu_class = found.group(1)
    extra = {"instance_type_label": row["offer"], "gpu_class": gpu_class}
    if row["accelerator"] in ("GB200", "GH200"):
        extra["cpu_arch"] = "arm64"
    return extra


# ---------------------------------------------------------------- SOURCES.md


def _counts_table(offers: list[Offer]) -> list[str]:
    lines = [
        "| target | offers | flagged | regions | GPUs | estimate rows |",
        "|---|---|---|---|---|---|",
    ]
    for target in PROVENANCE:
        rows = [o for o in offers if o.target == target]
        gpus = ", ".join(sorted({o.gpu for o in rows}))
        lines.append(
            f"| {target} | {len(rows)} | {sum(o.flagged is not None for o in rows)} | "
            f"{len({o.region for o in rows})} | {gpus} | {sum(o.estimate for o in rows)} |"
        )
    return lines


def _memory_table(offers: Iterable[Offer]) -> list[str]:
    used = Counter(o.gpu for o in offers)
    lines = ["| GPU | nominal GB | memory | M (GiB) | basis |", "|---|---|---|---|---|"]
    for spec in GPUS.values():
        if spec.name not in used:
            continue
        basis = (
            "measured (driver-reported; docs/sizing.md)"
            if not spec.estimated
            else f"estimate: nominal × {GDDR_FACTOR}"
            if spec.memory == "GDDR"
            else "estimate: nominal (HBM)"
        )
        lines.append(
            f"| {spec.name} | {spec.nominal_gb:g} | {spec.memory} | {spec.usable_gib:g} | {basis} |"
        )
    return lines


def _access_counts(regions: Iterable[Region]) -> str:
    counts = Counter(r.access for r in regions)
    return ", ".join(f"{a} {counts[a]}" for a in ACCESS_VALUES)


def sources_markdown(
    offers: list[Offer],
    *,
    inputs: dict[str, str],
    reference_date: str,
    build_date: str,
    regions: Iterable[Region] = (),
) -> str:
    """SOURCES.md for a built catalog: inputs, counts, per-target rules, memory and estimates."""
    lines = [
        "# mdeploy catalog data: provenance",
        "",
        "Generated by `python -m mdeploy.catalog.build --reference <shared/reference/catalog>`; "
        "do not edit by hand. The build reads only the files below (no network, no clock), so "
        "rebuilding from the same snapshot reproduces these files byte for byte.",
        "",
        f"- Reference snapshot: built {reference_date} (per the reference SOURCES.md).",
        f"- Build date: {build_date} (`--build-date` or SOURCE_DATE_EPOCH; default = snapshot).",
        f"- Offers: {len(offers)}, of which {sum(o.flagged is not None for o in offers)} flagged "
        "(left out of ranking unless `--all`).",
        "",
        "## Inputs (sha256, first 16 hex digits)",
        "",
        "| file | sha256 |",
        "|---|---|",
        *(f"| {name} | `{digest}` |" for name, digest in sorted(inputs.items())),
        "",
        "## Offers per target",
        "",
        *_counts_table(offers),
        "",
        "## Data dates",
        "",
        *(f"- {p.target}: {p.data_date}" for p in PROVENANCE.values()),
        "",
    ]
    for p in PROVENANCE.values():
        lines += [f"## {p.target}", "", p.description, "", f"- price_source: {p.price_basis}", ""]
    lines += [
        "## Regions",
        "",
        "`regions.csv` = every row of `sovereign_regions.csv` (aws, azure, gcp; SageMaker uses "
        "the aws rows) plus the CoreWeave AZs with the country and jurisdiction "
        "`k8s_gpu_offers.csv` gives. A region missing from the table fails the build.",
        "",
        "Column `access` (the planner skips every region that is not `open` unless "
        "`placement.regions` names it):",
        "",
        "- `opt-in`: AWS regions launched after 2019-03-20, disabled until the account enables "
        "them (docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html, read "
        "2026-12-06); the reference's 'opt-in region' notes must agree or the build fails.",
        "- `restricted`: Azure regions the Azure regions list marks access-restricted "
        "(MicrosoftDocs/reliability-docs articles/reliability/regions-list.md@01021ab8, "
        "2025-09-23), plus the Jio India partner regions, absent from that public list.",
        "- `partition`: a separate partition needing its own account (AWS GovCloud, China, ISO, "
        "European Sovereign Cloud: botocore partitions.json `regionRegex`; Azure Government and "
        "China).",
        f"- Regions per access: {_access_counts(regions)}.",
        "",
        "## Model architectures",
        "",
        "`models.json` is curated, not built from the reference: each entry keeps a verbatim "
        "subset of the model's config.json with `config_source` (repository, path, revision, "
        "how it was copied), its checkpoints and licence; MODELS_SOURCES.md lists every source "
        "per model. The architecture is computed from `config` by the same code as a local "
        "config.json, and a test checks each computed total against the published parameter "
        "count (within 3 %).",
        "",
        "## GPU memory M (the sizing rule, docs/sizing.md)",
        "",
        *_memory_table(offers),
        "",
        "## What is estimated",
        "",
        "- `estimate=true` when the price or the memory M is not a published figure.",
        "- aws: every price (EC2 × 1.25). gcp: every price (VM, not Vertex node, prices).",
        "- Memory: every GPU not measured above (`price_source` ends in 'memory estimated').",
        "- Flagged rows come from `price_flags.csv` (`flagged` = its reason).",
        "",
    ]
    return "\n".join(lines)
