"""
Shared fixtures for the catalog tests.

- `reference_dir`: the shared reference catalog (MDEPLOY_REFERENCE_DIR, default
  ../shared/reference/catalog next to the repository); tests that rebuild skip without it.
- `fixture_reference`: a few rows of every reference file, in the repository, so the build
  rules are tested even where the shared reference data is absent.
- `bundled_catalog`: makes sure no MDEPLOY_CATALOG_DIR override leaks into a test, and gives
  each test its own catalog cache dir (XDG_CACHE_HOME).
- `price_server`: a local HTTP fake on 127.0.0.1 serving realistic Azure Retail Prices pages
  (paged, with spot / Windows / low-priority / reserved meters mixed in) and AWS Price List
  files for AmazonSageMaker. `price_server.requests` records every path asked for.
- `cli`: invoke `mdeploy catalog ...` through Typer's CliRunner.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import typer
from httpfakes import JsonHandler
from typer.testing import CliRunner

from mdeploy.catalog._store import CATALOG_DIR_ENV
from mdeploy.cli import catalog_cmd

REPO = Path(__file__).resolve().parents[2]
AZURE_PATH = "/api/retail/prices"
AWS_OFFERS = "/offers/v1.0/aws/AmazonSageMaker"
AWS_INDEX = f"{AWS_OFFERS}/current/region_index.json"
AWS_VERSION = "20251101000000"
PAGE_SIZE = 3


# ---------------------------------------------------------------- Azure fake data


def _azure_item(sku: str, region: str, price: float, **over: Any) -> dict[str, Any]:
    short = sku.removeprefix("Standard_").replace("_", " ")
    item = {
        "currencyCode": "USD",
        "tierMinimumUnits": 0.0,
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": region,
        "location": region,
        "effectiveStartDate": "2024-05-01T00:00:00Z",
        "meterId": f"meter-{sku}-{region}",
        "meterName": short,
        "productId": "DZH318Z0BQPS",
        "skuId": "DZH318Z0BQPS/00TG",
        "productName": "Virtual Machines NCads A100 v4 Series",
        "skuName": short,
        "serviceName": "Virtual Machines",
        "serviceId": "DZH313Z7MMC8",
        "serviceFamily": "Compute",
        "unitOfMeasure": "1 Hour",
        "type": "Consumption",
        "isPrimaryMeterRegion": True,
        "armSkuName": sku,
    }
    item.update(over)
    return item


A100 = "Standard_NC24ads_A100_v4"
A10 = "Standard_NV36ads_A10_v5"
AZURE_ITEMS: dict[str, list[dict[str, Any]]] = {
    A100: [
        _azure_item(A100, "westeurope", 3.85),
        _azure_item(A100, "westeurope", 3.95, effectiveStartDate="2025-06-01T00:00:00Z"),
        _azure_item(
            A100, "westeurope", 4.6, productName="Virtual Machines NCads A100 v4 Series Windows"
        ),
        _azure_item(A100, "westeurope", 0.9, skuName="NC24ads A100 v4 Spot"),
        _azure_item(A100, "westeurope", 0.8, skuName="NC24ads A100 v4 Low Priority"),
        _azure_item(A100, "westeurope", 20000.0, type="Reservation", reservationTerm="1 Year"),
        _azure_item(A100, "eastus", 3.673),
        _azure_item(A100, "francecentral", 9.99, isPrimaryMeterRegion=False),
        _azure_item(A100, "francecentral", 4.04),
        _azure_item(A100, "usgovvirginia", 4.4),
    ],
    A10: [_azure_item(A10, "swedencentral", 3.2, productName="Virtual Machines NVadsA10 v5")],
}
AZURE_EXPECTED = {
    (A100, "westeurope"): 3.95,
    (A100, "eastus"): 3.673,
    (A100, "francecentral"): 4.04,
    (A10, "swedencentral"): 3.2,
}


# ---------------------------------------------------------------- AWS fake data


def _aws_product(sku: str, region: str, name: str, component: str, gpu: str, usage: str) -> dict:
    return {
        "sku": sku,
        "productFamily": "ML Instance",
        "attributes": {
            "servicecode": "AmazonSageMaker",
            "location": region,
            "regionCode": region,
            "instanceName": name,
            "component": component,
            "gpu": gpu,
            "usagetype": usage,
            "operation": "RunInstance",
        },
    }


def _aws_term(sku: str, usd: float) -> dict:
    code = f"{sku}.JRTCKXETXF"
    return {
        code: {
            "offerTermCode": "JRTCKXETXF",
            "sku": sku,
            "priceDimensions": {
                f"{code}.6YS6EN2CT7": {
                    "unit": "Hrs",
                    "pricePerUnit": {"USD": f"{usd:.10f}"},
                    "description": f"${usd} per hour",
                }
            },
        }
    }


# (sku, instance, component, gpu count, usage type prefix, price)
AWS_ROWS = {
    "us-east-1": [
        ("A1", "ml.g5.xlarge", "Hosting", "1", "USE1-Host", 1.408),
        ("A2", "ml.g5.xlarge", "Training", "1", "USE1-Train", 1.212),
        ("A3", "ml.p3.2xlarge", "Hosting", "1", "USE1-Host", 3.825),
        ("A4", "ml.m5.large", "Hosting", "0", "USE1-Host", 0.115),
        ("A5", "ml.p5.48xlarge", "Hosting", "8", "USE1-Host", 113.068),
        ("A6", "ml.g5.xlarge", "Hosting", "1", "USE1-ServerlessInf", 0.5),
    ],
    "eu-west-1": [
        ("B1", "ml.g5.xlarge", "Hosting", "1", "EU-Host", 1.58),
        ("B2", "ml.g6.xlarge", "Hosting", "1", "EU-Host", 1.2),
    ],
}
AWS_EXPECTED = {
    ("ml.g5.xlarge", "us-east-1"): 1.408,
    ("ml.p5.48xlarge", "us-east-1"): 113.068,
    ("ml.g5.xlarge", "eu-west-1"): 1.58,
    ("ml.g6.xlarge", "eu-west-1"): 1.2,
}


def _aws_region_doc(region: str) -> dict:
    products, terms = {}, {}
    for sku, name, component, gpu, usage, usd in AWS_ROWS[region]:
        products[sku] = _aws_product(sku, region, name, component, gpu, f"{usage}:{name}")
        terms[sku] = _aws_term(sku, usd)
    products["S1"] = {"sku": "S1", "productFamily": "Storage", "attributes": {}}
    return {
        "formatVersion": "v1.0",
        "offerCode": "AmazonSageMaker",
        "version": AWS_VERSION,
        "publicationDate": "2025-11-01T00:00:00Z",
        "products": products,
        "terms": {"OnDemand": terms},
    }


def _aws_index() -> dict:
    regions = {**{r: r for r in AWS_ROWS}, "mx-central-1": "mx-central-1"}
    return {
        "formatVersion": "v1.0",
        "publicationDate": "2025-11-01T00:00:00Z",
        "regions": {
            r: {
                "regionCode": r,
                "currentVersionUrl": f"{AWS_OFFERS}/{AWS_VERSION}/{r}/index.json",
            }
            for r in regions
        },
    }


# ---------------------------------------------------------------- server


@dataclass
class PriceServer:
    """The running fake: its base URL, the paths it served and the prices it should yield."""

    url: str
    requests: list[str] = field(default_factory=list)
    azure_expected: dict[tuple[str, str], float] = field(default_factory=lambda: AZURE_EXPECTED)
    aws_expected: dict[tuple[str, str], float] = field(default_factory=lambda: AWS_EXPECTED)

    @property
    def azure_url(self) -> str:
        return self.url + AZURE_PATH


def _azure_page(server: PriceServer, query: str) -> dict[str, Any]:
    params = parse_qs(query)
    found = re.search(r"armSkuName eq '([^']+)'", params.get("$filter", [""])[0])
    items = AZURE_ITEMS.get(found.group(1), []) if found else []
    skip = int(params.get("$skip", ["0"])[0])
    page = items[skip : skip + PAGE_SIZE]
    more = skip + PAGE_SIZE < len(items)
    base = query.split("&$skip=")[0]
    next_link = f"{server.azure_url}?{base}&$skip={skip + PAGE_SIZE}" if more else None
    return {
        "BillingCurrency": "USD",
        "CustomerEntityId": "Default",
        "CustomerEntityType": "Retail",
        "Items": page,
        "NextPageLink": next_link,
        "Count": len(page),
    }


def _route(server: PriceServer, path: str, query: str) -> tuple[int, Any]:
    if path == AZURE_PATH:
        return 200, _azure_page(server, query)
    if path == AWS_INDEX:
        return 200, _aws_index()
    found = re.fullmatch(
        rf"/offers/v1.0/aws/AmazonSageMaker/{AWS_VERSION}/([a-z0-9-]+)/index.json", path
    )
    if found and found.group(1) in AWS_ROWS:
        return 200, _aws_region_doc(found.group(1))
    return 404, {"error": "not found"}


@pytest.fixture
def price_server() -> Iterator[PriceServer]:
    server_state: dict[str, PriceServer] = {}

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            state = server_state["s"]
            parts = urlsplit(self.path)
            state.requests.append(self.path)
            self._send(*_route(state, parts.path, parts.query))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state["s"] = PriceServer(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state["s"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------- other fixtures


@pytest.fixture
def reference_dir() -> Path:
    import os

    path = Path(os.environ.get("MDEPLOY_REFERENCE_DIR") or REPO.parent / "shared/reference/catalog")
    if not (path / "aws_sagemaker_gpu.csv").exists():
        pytest.skip(f"reference catalog not found at {path} (set MDEPLOY_REFERENCE_DIR)")
    return path


FIXTURE_REFERENCE = Path(__file__).parent / "fixtures" / "reference"


@pytest.fixture
def fixture_reference() -> Path:
    """A few rows of every reference file (tests/catalog/fixtures/reference): always there."""
    return FIXTURE_REFERENCE


@pytest.fixture(autouse=True)
def bundled_catalog(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """
    Every test starts on the bundled catalog, whatever the developer's shell exports, with
    its own parsed-catalog cache dir (never the developer's ~/.cache).
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv(CATALOG_DIR_ENV, raising=False)
    monkeypatch.delenv("MDEPLOY_AZURE_PRICES_URL", raising=False)
    monkeypatch.delenv("MDEPLOY_AWS_PRICING_URL", raising=False)


@pytest.fixture
def cli() -> Any:
    """Run `catalog ...` through the real command module mounted on a bare root app."""
    app = typer.Typer()
    catalog_cmd.register(app)

    @app.callback()
    def _root() -> None:
        """Test root."""

    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
        wide = {"COLUMNS": "220", **(env or {})}  # tables unwrapped, so cells can be asserted
        return runner.invoke(app, ["catalog", *args], env=wide)

    return invoke
