"""`mdeploy catalog ...` through Typer's CliRunner: JSON contracts, filters, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

OFFER_KEYS = {
    "target",
    "region",
    "instance_type",
    "gpu",
    "gpu_count",
    "gpu_memory_gib",
    "hourly_usd",
    "jurisdiction",
    "country",
    "price_source",
    "estimate",
    "source",
}


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_offers_json_shape(cli: Any) -> None:
    rows = _json(cli("offers", "--json"))
    assert len(rows) == 1253
    assert all(set(r) == OFFER_KEYS for r in rows)
    assert {r["target"] for r in rows} == {"aws", "azure", "gcp", "coreweave"}
    first = rows[0]
    assert isinstance(first["gpu_count"], int) and isinstance(first["estimate"], bool)
    assert isinstance(first["hourly_usd"], float)


def test_offers_all_adds_flagged_rows_with_their_reason(cli: Any) -> None:
    rows = _json(cli("offers", "--json", "--all"))
    flagged = [r for r in rows if "flagged" in r]
    assert len(rows) == 1328 and len(flagged) == 75
    assert all(r["flagged"] for r in flagged) and all(
        set(r) == OFFER_KEYS | {"flagged"} for r in flagged
    )


def test_offers_filters(cli: Any) -> None:
    rows = _json(
        cli("offers", "--json", "-t", "gcp", "-t", "aws", "--gpu", "h100", "--jurisdiction", "EU")
    )
    assert rows and all(r["gpu"] == "H100" and r["jurisdiction"] == "EU" for r in rows)
    assert {r["target"] for r in rows} <= {"gcp", "aws"}
    prices = [(r["target"], r["hourly_usd"]) for r in rows]
    assert prices == sorted(prices)
    de = _json(cli("offers", "--json", "--country", "de", "--region", "germanywestcentral"))
    assert de and {(r["target"], r["region"], r["country"]) for r in de} == {
        ("azure", "germanywestcentral", "DE")
    }


def test_offers_table_for_people(cli: Any) -> None:
    result = cli("offers", "-t", "coreweave", "--gpu", "H200", "--all")
    assert result.exit_code == 0
    assert "gd-8xh200ib-i128" in result.stdout and "flagged" in result.stdout
    assert "ES (EU)" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("offers", "-t", "oracle"), "unknown target 'oracle'"),
        (("offers", "--gpu", "Z80"), "--gpu 'Z80'"),
        (("offers", "--jurisdiction", "ASIA"), "--jurisdiction 'ASIA'"),
        (("regions", "--country", "France"), "--country 'France'"),
    ],
)
def test_bad_flags_exit_2_with_a_message(cli: Any, args: tuple[str, ...], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.output


def test_gpus_json(cli: Any) -> None:
    rows = {r["gpu"]: r for r in _json(cli("gpus", "--json"))}
    assert rows["H100"]["gpu_memory_gib"] == 79.65 and rows["H100"]["estimate"] is False
    assert rows["A10"]["estimate"] is True and rows["A10"]["targets"] == ["azure"]
    assert "GPUs" in cli("gpus").stdout


def test_regions_json_and_filters(cli: Any) -> None:
    rows = _json(cli("regions", "--json", "--jurisdiction", "EEA"))
    assert rows and all(r["jurisdiction"] == "EEA" for r in rows)
    assert {"target", "region", "country", "jurisdiction", "notes", "access"} == set(rows[0])
    cw = _json(cli("regions", "--json", "-t", "coreweave", "--country", "ES"))
    assert {r["region"] for r in cw} == {"EU-SOUTH-03B", "EU-SOUTH-04A"}


def test_models_json(cli: Any) -> None:
    rows = {r["id"]: r for r in _json(cli("models", "--json"))}
    mixtral = rows["mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert mixtral["params_b"] == pytest.approx(46.7, abs=0.01) and mixtral["kv_heads"] == 8
    assert "Mistral-Large-Instruct-2411" in cli("models").stdout


def test_real_console_entry_point_wires_the_catalog_group() -> None:
    code = "from mdeploy.cli.app import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "catalog", "offers", "--json", "-t", "coreweave"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 42
