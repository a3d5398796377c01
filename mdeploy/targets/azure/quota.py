"""
Azure ML VM-family vCPU quota for a managed online deployment, checked before `up`.

Managed online deployments draw on the subscription's Azure Machine Learning compute quota,
per region and VM family, which is kept apart from other Azure quotas (azure-ai-docs
how-to-manage-quotas, "View your usage and quotas in the Azure portal"). Azure ML reserves
20 % extra for upgrades: a deployment of n instances needs
`ceil(1.2 * n) * vCPUs of the SKU`, except for the SKUs marked "Skip 20% Reservation"
(includes/quota-allocation-online-deployment.md and reference-managed-online-endpoints-vm-
sku-list.md, MicrosoftDocs/azure-ai-docs, read 2026-12-06).

Two ARM reads, api-version 2024-10-01 (REST examples VirtualMachineSize/list, Usage/list):
- `…/providers/Microsoft.MachineLearningServices/locations/{loc}/vmSizes`: the SKU's
  `family`, `vCPUs` and whether `supportedComputeTypes` has "MIR" (managed inference);
- `…/locations/{loc}/usages`: `currentValue`/`limit` of the family
  (`…/usages/Standard_<F>_Family_Cluster_Dedicated_vCPUs`) and of "Total Cluster Dedicated
  Regional vCPUs"; both limits apply.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from mdeploy.errors import CloudError
from mdeploy.targets.azure.arm import ArmClient
from mdeploy.targets.base import EndpointArgs, QuotaProblem

__all__ = ["QUOTA_API_VERSION", "SKIP_RESERVATION", "needed_vcpus", "quota_problem"]

QUOTA_API_VERSION = "2024-10-01"
QUOTA_PORTAL = "https://ml.azure.com/quota"
# "Skip 20% Reservation: Yes" rows of the managed online endpoints SKU list.
SKIP_RESERVATION = frozenset(
    s.lower()
    for s in (
        "Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4", "Standard_NC96ads_A100_v4",
        "Standard_NC40ads_H100_v5", "Standard_NC80adis_H100_v5", "Standard_ND96amsr_A100_v4",
        "Standard_ND96asr_v4", "Standard_ND40rs_v2", "Standard_ND96is_H100_v5",
        "Standard_ND96isr_H100_v5",
    )
)  # fmt: skip
_TOTAL = "Total Cluster Dedicated Regional vCPUs"


def needed_vcpus(instance_type: str, instances: int, vcpus: int) -> int:
    """vCPUs of quota a deployment of `instances` needs, with Azure ML's upgrade reserve.

    >>> needed_vcpus("Standard_DS3_v2", 10, 4), needed_vcpus("Standard_NC24ads_A100_v4", 2, 24)
    (48, 48)
    """
    if instance_type.lower() in SKIP_RESERVATION:
        return instances * vcpus
    return math.ceil(1.2 * instances) * vcpus


def quota_problem(
    args: EndpointArgs, subscription: str | None = None, *, credential: Any = None
) -> QuotaProblem | None:
    """The Azure ML quota `up` would exceed for args.instance_type in args.region, or None."""
    sub = subscription or subscription_id()
    base = (
        f"/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/{args.region}"
    )
    arm = ArmClient(QUOTA_API_VERSION, credential=credential)
    size = _size(arm.list(f"{base}/vmSizes", what="VM sizes"), args.instance_type)
    if size is None or "MIR" not in (size.get("supportedComputeTypes") or []):
        return QuotaProblem(
            quota_name=f"{args.instance_type} for managed online endpoints in {args.region}",
            needed=args.replicas_min,
            available=0,
            request_hint="Azure ML does not offer this size for managed online endpoints there: "
            "choose another region or size (mdeploy plan), see "
            "reference-managed-online-endpoints-vm-sku-list",
        )
    needed = needed_vcpus(args.instance_type, args.replicas_min, int(size.get("vCPUs") or 0))
    usages = arm.list(f"{base}/usages", what="quota usages")
    family = str(size.get("family") or "")
    for name, usage in (
        (f"{family} dedicated vCPUs", _family_usage(usages, family)),
        (_TOTAL, _total_usage(usages)),
    ):
        if usage is None:
            continue
        available = int(usage.get("limit") or 0) - int(usage.get("currentValue") or 0)
        if needed > available:
            return QuotaProblem(
                quota_name=f"Azure ML {name} in {args.region}",
                needed=needed,
                available=max(0, available),
                request_hint=f"{QUOTA_PORTAL} (Usage + quotas: select {family} in "
                f"{args.region}, Request quota); n instances need ceil(1.2 n) × vCPUs",
            )
    return None


def subscription_id() -> str:
    """The subscription: AZURE_SUBSCRIPTION_ID, ARM_SUBSCRIPTION_ID, else `az`'s default."""
    for var in ("AZURE_SUBSCRIPTION_ID", "ARM_SUBSCRIPTION_ID"):
        if os.environ.get(var):
            return os.environ[var]
    config = Path(os.environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")
    try:
        profile = json.loads((config / "azureProfile.json").read_text(encoding="utf-8-sig"))
        for sub in profile.get("subscriptions") or []:
            if sub.get("isDefault") and sub.get("id"):
                return str(sub["id"])
    except (OSError, ValueError, AttributeError):
        pass
    # CloudError: the quota is unknown (up warns, --strict-quota refuses), not a broken setup.
    raise CloudError(
        "the Azure subscription is unknown, so its quota cannot be read",
        hint="set AZURE_SUBSCRIPTION_ID, or `az account set --subscription <id>`",
    )


def _size(sizes: list[dict[str, Any]], instance_type: str) -> dict[str, Any] | None:
    wanted = instance_type.lower()
    return next((s for s in sizes if str(s.get("name", "")).lower() == wanted), None)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _family_usage(usages: list[dict[str, Any]], family: str) -> dict[str, Any] | None:
    """The subscription-level usage of `family` (ids end in <Family>_Cluster_Dedicated_vCPUs)."""
    wanted = _norm(family) + "clusterdedicatedvcpus"
    for usage in usages:
        family_row = str(usage.get("type", "")).endswith("vmFamily/usages")
        if family_row and _norm(str(usage.get("id", "")).rsplit("/", 1)[-1]) == wanted:
            return usage
    return None


def _total_usage(usages: list[dict[str, Any]]) -> dict[str, Any] | None:
    for usage in usages:
        if (usage.get("name") or {}).get("value") == _TOTAL:
            return usage
    return None
