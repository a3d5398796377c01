"""The loader: filters, flagged rows, the env override, GPU memory and speed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from mdeploy import catalog
from mdeploy.catalog._store import BUNDLED_DIR, format_offers, read_offers
from mdeploy.errors import InputError


def test_flagged_offers_are_left_out_by_default() -> None:
    default = catalog.load_offers()
    everything = catalog.load_offers(include_flagged=True)
    assert all(o.flagged is None for o in default)
    assert len(everything) - len(default) == 75
    assert {o.target for o in everything if o.flagged} == {"gcp"}


def test_targets_filter_and_validation() -> None:
    azure = catalog.load_offers(["azure"])
    assert azure and {o.target for o in azure} == {"azure"}
    assert catalog.load_offers(("kubernetes",)) == []  # pools come from the spec
    with pytest.raises(InputError, match="unknown target 'ibm'"):
        catalog.load_offers(["ibm"])


def test_regions_cover_every_target() -> None:
    regions = catalog.load_regions()
    assert {t for t, _ in regions} == {"aws", "azure", "gcp", "coreweave"}
    assert regions[("coreweave", "EU-SOUTH-04A")].country == "ES"
    assert regions[("azure", "francecentral")].jurisdiction == "EU"


def test_gpu_names_and_memory() -> None:
    names = catalog.gpu_names()
    assert {"A10", "A10G", "H100", "H100-NVL", "L4", "L40S"} <= set(names)
    assert catalog.gpu_memory_gib("h100") == 79.65
    assert catalog.gpu_memory_gib("A100-80GB") == 80.0
    assert catalog.gpu_memory_gib("L40") == round(48 * 0.937, 2)
    assert catalog.gpu_spec("H100-MEGA").name == "H100"
    with pytest.raises(InputError, match="unknown GPU 'Z9'"):
        catalog.gpu_memory_gib("Z9")


def test_find_offers_filters_combine_and_sort_by_target_then_price() -> None:
    offers = catalog.find_offers(gpus=["l4"], jurisdictions=["eu"])
    assert offers and all(o.gpu == "L4" and o.jurisdiction == "EU" for o in offers)
    assert {o.target for o in offers} == {"aws", "gcp"}
    keys = [(o.target, o.hourly_usd) for o in offers]
    assert keys == sorted(keys)
    french = catalog.find_offers(["azure"], countries=["fr"])
    assert french and {o.country for o in french} == {"FR"}
    one = catalog.find_offers(regions=["EU-SOUTH-03B"])
    assert [o.instance_type for o in one] == ["gd-8xh200ib-i128"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpus": ["X100"]}, "--gpu 'X100'"),
        ({"jurisdictions": ["Mars"]}, "--jurisdiction 'Mars'"),
        ({"countries": ["FRA"]}, "--country 'FRA'"),
    ],
)
def test_find_offers_rejects_bad_filter_values(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        catalog.find_offers(**kwargs)


def test_find_regions() -> None:
    swiss = catalog.find_regions(jurisdictions=["CH"])
    assert {(r.target, r.region) for r in swiss} >= {
        ("gcp", "europe-west6"),
        ("aws", "eu-central-2"),
    }
    assert all(r.target == "coreweave" for r in catalog.find_regions(["coreweave"]))


def test_gpu_summary_prices_per_gpu_hour() -> None:
    rows = {r.gpu: r for r in catalog.gpu_summary()}
    l4 = rows["L4"]
    assert l4.memory_gib == 22.49 and not l4.estimated and set(l4.targets) == {"aws", "gcp"}
    cheapest = min(o.hourly_usd / o.gpu_count for o in catalog.load_offers() if o.gpu == "L4")
    assert l4.min_usd_per_gpu_hour == pytest.approx(cheapest, abs=1e-4)
    assert rows["T4"].estimated


def test_env_var_points_the_loader_at_another_catalog(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(BUNDLED_DIR / "regions.csv", tmp_path / "regions.csv")
    few = [o for o in read_offers(BUNDLED_DIR) if o.target == "coreweave"][:3]
    (tmp_path / "offers.csv").write_text(format_offers(few))
    monkeypatch.setenv(catalog.CATALOG_DIR_ENV, str(tmp_path))
    assert catalog.catalog_dir() == tmp_path.resolve()
    assert catalog.load_offers() == sorted(few, key=lambda o: (o.region, o.instance_type))
    assert catalog.get_architecture("mixtral-8x7b") is not None  # models fall back to bundled


def test_env_var_pointing_at_an_empty_dir_is_a_clear_input_error(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(catalog.CATALOG_DIR_ENV, str(tmp_path))
    with pytest.raises(InputError, match=r"offers\.csv is missing") as info:
        catalog.load_offers()
    assert "MDEPLOY_CATALOG_DIR" in (info.value.hint or "")


def test_offers_csv_round_trips(tmp_path: Path) -> None:
    offers = read_offers(BUNDLED_DIR)
    text = format_offers(offers)
    assert text == (BUNDLED_DIR / "offers.csv").read_text()
    (tmp_path / "offers.csv").write_text(text)
    assert read_offers(tmp_path) == offers
    assert [o.extra for o in read_offers(tmp_path)] == [o.extra for o in offers]


def test_loading_all_offers_takes_under_30_ms() -> None:
    parse = read_offers.__wrapped__  # bypass the cache: measure a real parse
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        offers = parse(BUNDLED_DIR)
        best = min(best, time.perf_counter() - start)
    assert len(offers) == 1294
    assert best < 0.030, f"parsing offers.csv took {best * 1000:.1f} ms"


def test_offer_json_contract() -> None:
    offer = catalog.load_offers(["gcp"])[0]
    row = offer.to_json()
    assert set(row) == {
        "target",
        "region",
        "instance_type",
        "gpu",
        "gpu_count",
        "gpu_memory_gib",
        "hourly_usd",
        "country",
        "jurisdiction",
        "price_source",
        "estimate",
        "source",
    }
    flagged = next(o for o in catalog.load_offers(include_flagged=True) if o.flagged)
    assert flagged.to_json()["flagged"] == flagged.flagged
