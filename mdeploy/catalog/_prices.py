"""
Public price APIs read by `catalog refresh`: Azure Retail Prices and the AWS Price List.

Each reader returns plain prices keyed by (instance type, region) and leaves GPU facts,
regions and provenance to the caller. Base URLs are parameters so tests can serve realistic
pages from 127.0.0.1. What counts as "the" price is decided here and stated per reader:
Linux, on-demand, USD, per hour; spot, low-priority, Windows and reserved meters are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from mdeploy.catalog._http import get_json
from mdeploy.errors import CloudError

__all__ = [
    "AWS_PRICING_URL",
    "AZURE_PRICES_URL",
    "AwsPrices",
    "aws_sagemaker_prices",
    "azure_prices",
]

AZURE_PRICES_URL = "https://prices.azure.com/api/retail/prices"
AWS_PRICING_URL = "https://pricing.us-east-1.amazonaws.com"
_AWS_REGION_INDEX = "/offers/v1.0/aws/AmazonSageMaker/current/region_index.json"
_MAX_PAGES = 50

PriceMap = dict[tuple[str, str], float]


# ---------------------------------------------------------------- Azure


def _azure_url(base_url: str, sku: str) -> str:
    odata = (
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' "
        f"and armSkuName eq '{sku}'"
    )
    query = urlencode(
        {"api-version": "2023-01-01-preview", "meterRegion": "'primary'", "$filter": odata},
        quote_via=quote,
    )
    return f"{base_url}?{query}"


def _azure_linux_on_demand(item: dict[str, Any]) -> bool:
    """A Linux pay-as-you-go hourly USD meter: not spot, low priority, Windows or reserved."""
    sku_name = str(item.get("skuName", ""))
    return (
        item.get("type") == "Consumption"
        and item.get("currencyCode", "USD") == "USD"
        and item.get("unitOfMeasure") == "1 Hour"
        and "Windows" not in str(item.get("productName", ""))
        and "Spot" not in sku_name
        and "Low Priority" not in sku_name
        and item.get("isPrimaryMeterRegion", True) is not False
        and float(item.get("retailPrice") or 0) > 0
    )


def _azure_pages(url: str, *, timeout: float) -> Iterable[dict[str, Any]]:
    for _ in range(_MAX_PAGES):
        page = get_json(url, timeout=timeout)
        if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
            raise CloudError("Azure Retail Prices API: unexpected page (no Items list)")
        yield from page["Items"]
        url = page.get("NextPageLink")
        if not url:
            return
    raise CloudError(f"Azure Retail Prices API: more than {_MAX_PAGES} pages for one SKU")


def azure_prices(skus: Iterable[str], *, base_url: str, timeout: float) -> PriceMap:
    """
    Linux on-demand $/h per (armSkuName, armRegionName) from the Azure Retail Prices API.

    One OData query per SKU, paged through NextPageLink. Where a region has several
    matching meters, the latest effectiveStartDate wins (then the lower price).
    """
    best: dict[tuple[str, str], tuple[str, float]] = {}
    for sku in skus:
        for item in _azure_pages(_azure_url(base_url, sku), timeout=timeout):
            if item.get("armSkuName", "").lower() != sku.lower():
                continue
            if not _azure_linux_on_demand(item):
                continue
            key = (sku, str(item["armRegionName"]).lower())
            candidate = (str(item.get("effectiveStartDate", "")), -float(item["retailPrice"]))
            if key not in best or candidate > (best[key][0], -best[key][1]):
                best[key] = (candidate[0], float(item["retailPrice"]))
    return {key: price for key, (_, price) in best.items()}


# ---------------------------------------------------------------- AWS


@dataclass
class AwsPrices:
    """SageMaker hosting prices plus what the reader saw but could not use."""

    prices: PriceMap = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # region -> offer file version
    unknown_gpu_types: set[str] = field(default_factory=set)


def _hourly_usd(terms: dict[str, Any]) -> float | None:
    for term in terms.values():
        for dim in term.get("priceDimensions", {}).values():
            if dim.get("unit") in ("Hrs", "Hours"):
                usd = float(dim.get("pricePerUnit", {}).get("USD") or 0)
                if usd > 0:
                    return usd
    return None


def _is_gpu(attrs: dict[str, Any]) -> bool:
    return str(attrs.get("gpu", "0")).strip() not in ("", "0", "NA", "N/A")


def _hosting_products(doc: dict[str, Any], region: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """(sku, attributes) of real-time endpoint instances in one regional offer file."""
    for sku, product in doc.get("products", {}).items():
        attrs = product.get("attributes", {})
        name = str(attrs.get("instanceName", ""))
        usage = str(attrs.get("usagetype", ""))
        if (
            product.get("productFamily") == "ML Instance"
            and attrs.get("component") == "Hosting"
            and attrs.get("regionCode", region) == region
            and name.startswith("ml.")
            and (not usage or usage.endswith(f"Host:{name}"))
        ):
            yield sku, attrs


def _read_region(doc: dict[str, Any], region: str, known: set[str], out: AwsPrices) -> None:
    on_demand = doc.get("terms", {}).get("OnDemand", {})
    for sku, attrs in _hosting_products(doc, region):
        name = attrs["instanceName"]
        if name not in known:
            if _is_gpu(attrs):
                out.unknown_gpu_types.add(name)
            continue
        price = _hourly_usd(on_demand.get(sku, {}))
        if price is not None:
            key = (name, region)
            out.prices[key] = min(price, out.prices.get(key, price))


def aws_sagemaker_prices(
    instance_types: set[str], regions: Iterable[str], *, base_url: str, timeout: float
) -> AwsPrices:
    """
    SageMaker real-time hosting on-demand $/h per (ml.* type, region) from the AWS Price
    List bulk files: the AmazonSageMaker region index, then one offer file per region.
    """
    index = get_json(base_url + _AWS_REGION_INDEX, timeout=timeout)
    listed = index.get("regions", {}) if isinstance(index, dict) else {}
    out = AwsPrices()
    for region in sorted(set(regions) & set(listed)):
        doc = get_json(base_url + listed[region]["currentVersionUrl"], timeout=timeout)
        if not isinstance(doc, dict):
            raise CloudError(f"AWS Price List: offer file for {region} is not a JSON object")
        out.versions[region] = str(doc.get("version", ""))
        _read_region(doc, region, instance_types, out)
    return out
