"""`catalog refresh` against a local fake of the Azure and AWS price APIs, and offline."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from mdeploy import catalog
from mdeploy.catalog import refresh as refresh_mod
from mdeploy.catalog._prices import aws_sagemaker_prices, azure_prices
from mdeploy.errors import CloudError, InputError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_azure_reader_pages_and_keeps_linux_on_demand_only(price_server: Any) -> None:
    skus = ["Standard_NC24ads_A100_v4", "Standard_NV36ads_A10_v5", "Standard_NC4as_T4_v3"]
    prices = azure_prices(skus, base_url=price_server.azure_url, timeout=5)
    in_table = {k: v for k, v in prices.items() if k[1] != "usgovvirginia"}
    assert in_table == price_server.azure_expected
    pages = [p for p in price_server.requests if "NC24ads_A100_v4" in p]
    assert len(pages) == 4 and sum("$skip=" in p for p in pages) == 3  # 10 items, 3 per page


def test_aws_reader_takes_hosting_prices_of_known_types(price_server: Any) -> None:
    known = {"ml.g5.xlarge", "ml.g6.xlarge", "ml.p5.48xlarge"}
    result = aws_sagemaker_prices(
        known, ["us-east-1", "eu-west-1", "ap-south-1"], base_url=price_server.url, timeout=5
    )
    assert result.prices == price_server.aws_expected
    assert result.unknown_gpu_types == {"ml.p3.2xlarge"}  # ml.m5.large has no GPU
    assert set(result.versions) == {"us-east-1", "eu-west-1"}
    assert not any("mx-central-1/index.json" in p for p in price_server.requests)


def test_refresh_writes_a_catalog_the_loader_can_use(
    price_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = refresh_mod.refresh(
        tmp_path, azure_url=price_server.azure_url, aws_url=price_server.url, timeout=5
    )
    assert report.refreshed == ["aws", "azure"]
    assert report.counts["azure"] == 4 and report.counts["aws"] == 4
    assert report.counts["gcp"] == 362 and report.counts["coreweave"] == 42
    assert any("usgovvirginia" in n for n in report.notes)
    assert any("ml.p3.2xlarge" in n for n in report.notes)
    assert any(n.startswith("gcp: kept") and "API key" in n for n in report.notes)

    monkeypatch.setenv(catalog.CATALOG_DIR_ENV, str(tmp_path))
    azure = {(o.instance_type, o.region): o for o in catalog.load_offers(["azure"])}
    assert {k: o.hourly_usd for k, o in azure.items()} == price_server.azure_expected
    a100 = azure[("Standard_NC24ads_A100_v4", "westeurope")]
    assert (a100.gpu, a100.gpu_memory_gib, a100.country, a100.jurisdiction) == (
        "A100-80GB",
        80.0,
        "NL",
        "EU",
    )
    assert a100.estimate is False and "Azure Retail Prices API" in a100.price_source
    a10 = azure[("Standard_NV36ads_A10_v5", "swedencentral")]
    assert a10.estimate is True and a10.price_source.endswith("memory estimated")

    aws = {(o.instance_type, o.region): o for o in catalog.load_offers(["aws"])}
    assert {k: o.hourly_usd for k, o in aws.items()} == price_server.aws_expected
    g5 = aws[("ml.g5.xlarge", "us-east-1")]
    assert g5.estimate is False and "SageMaker real-time Hosting" in g5.price_source
    assert "20251101000000" in g5.source
    flagged_gcp = [o for o in catalog.load_offers(["gcp"], include_flagged=True) if o.flagged]
    assert len(flagged_gcp) == 75  # kept rows keep their flags
    assert "export MDEPLOY_CATALOG_DIR" in (tmp_path / "SOURCES.md").read_text()


def test_refresh_one_target_keeps_the_other(price_server: Any, tmp_path: Path) -> None:
    report = refresh_mod.refresh(tmp_path, targets=["azure"], azure_url=price_server.azure_url)
    assert report.refreshed == ["azure"] and report.counts["aws"] == 433
    assert not any("AmazonSageMaker" in p for p in price_server.requests)


def test_refresh_offline_is_a_cloud_error_and_writes_nothing(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/api/retail/prices"
    with pytest.raises(CloudError, match=r"cannot reach 127\.0\.0\.1:\d+") as info:
        refresh_mod.refresh(tmp_path / "out", targets=["azure"], azure_url=url, timeout=2)
    assert info.value.exit_code == 1 and "bundled catalog still works" in info.value.hint
    assert not (tmp_path / "out").exists()


def test_http_error_is_a_cloud_error(price_server: Any, tmp_path: Path) -> None:
    with pytest.raises(CloudError, match="HTTP 404"):
        refresh_mod.refresh(tmp_path, targets=["aws"], aws_url=price_server.url + "/nothing")


def test_gcp_refresh_is_refused_honestly(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot refresh gcp") as info:
        refresh_mod.refresh(tmp_path, targets=["gcp"])
    assert "API key" in info.value.hint


def test_cli_refresh_uses_env_urls_and_prints_json(
    cli: Any, price_server: Any, tmp_path: Path
) -> None:
    env = {
        "MDEPLOY_AZURE_PRICES_URL": price_server.azure_url,
        "MDEPLOY_AWS_PRICING_URL": price_server.url,
    }
    result = cli("refresh", "--out", str(tmp_path), "--json", env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["out"] == str(tmp_path) and doc["offers"]["azure"] == 4
    human = cli("refresh", "--out", str(tmp_path), "--target", "azure", env=env)
    assert human.exit_code == 0 and "export MDEPLOY_CATALOG_DIR=" in human.stdout


def test_cli_refresh_offline_exits_1_without_traceback(cli: Any, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    env = {"MDEPLOY_AZURE_PRICES_URL": dead + "/api/retail/prices", "MDEPLOY_AWS_PRICING_URL": dead}
    result = cli("refresh", "--out", str(tmp_path / "x"), "--timeout", "2", env=env)
    assert result.exit_code == 1
    assert "cannot reach 127.0.0.1" in result.stderr
    assert "bundled catalog still works" in result.stderr
    assert "Traceback" not in result.output
