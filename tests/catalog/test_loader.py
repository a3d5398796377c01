"""The loader: filters, flagged rows, the env override, GPU memory and speed."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest

from mdeploy import catalog
from mdeploy.catalog import _store
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


def _fresh_process_view(directory: Path) -> tuple:
    """What a new process would load: forget this process's memo, keep the disk cache."""
    _store.clear_caches()
    return read_offers(directory)


def test_parsed_catalog_is_cached_on_disk_and_reused(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(BUNDLED_DIR / "regions.csv", tmp_path / "regions.csv")
    shutil.copy(BUNDLED_DIR / "offers.csv", tmp_path / "offers.csv")
    first = _fresh_process_view(tmp_path)
    [cache_file] = (Path(os.environ["XDG_CACHE_HOME"]) / "mdeploy").glob("catalog-*.pickle")
    calls = []
    monkeypatch.setattr(_store, "_offer_rows", lambda path: calls.append(path) or ())
    assert _fresh_process_view(tmp_path) == first and calls == []  # served from the cache
    # Changing the file (size or mtime) changes the key: it is parsed again.
    with (tmp_path / "offers.csv").open("a") as fh:
        fh.write("\n")
    _fresh_process_view(tmp_path)
    assert calls == [tmp_path / "offers.csv"]
    # The new state's cache replaces the old one: stale files do not pile up.
    [now] = (Path(os.environ["XDG_CACHE_HOME"]) / "mdeploy").glob("catalog-*.pickle")
    assert now != cache_file and not cache_file.exists()


def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path: Path) -> None:
    shutil.copy(BUNDLED_DIR / "regions.csv", tmp_path / "regions.csv")
    shutil.copy(BUNDLED_DIR / "offers.csv", tmp_path / "offers.csv")
    first = _fresh_process_view(tmp_path)
    [cache_file] = (Path(os.environ["XDG_CACHE_HOME"]) / "mdeploy").glob("catalog-*.pickle")
    for garbage in (b"not a pickle", pickle.dumps(("mdeploy-catalog-1", "wrong", ()))):
        cache_file.write_bytes(garbage)
        assert _fresh_process_view(tmp_path) == first
        assert cache_file.read_bytes() != garbage  # rewritten with the real parse


def test_unwritable_cache_dir_is_not_an_error(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # mkdir under a file fails
    _store.clear_caches()
    assert len(read_offers(BUNDLED_DIR)) == 1328


def test_regions_csv_without_access_column_still_loads(tmp_path: Path) -> None:
    shutil.copy(BUNDLED_DIR / "offers.csv", tmp_path / "offers.csv")
    lines = (BUNDLED_DIR / "regions.csv").read_text().splitlines()
    old = [line.rsplit(",", 1)[0] for line in lines]  # drop the access column
    (tmp_path / "regions.csv").write_text("\n".join(old) + "\n")
    _store.clear_caches()
    regions = _store.read_regions(tmp_path)
    assert regions[("aws", "eu-south-2")].access == "opt-in"
    assert regions[("azure", "germanynorth")].access == "restricted"
    assert regions[("aws", "us-gov-east-1")].access == "partition"


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
