"""
The build: reproducible from the reference, the right rows per target, errors on gaps.

Build rules run on `fixture_reference` (a few rows of every reference file, in the repo), so
they are tested everywhere; only the byte-for-byte rebuild of the bundled files needs the
full shared reference and skips without it.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from mdeploy.catalog import _provenance as prov
from mdeploy.catalog import build
from mdeploy.catalog._store import BUNDLED_DIR, read_offers, read_regions
from mdeploy.errors import InputError

EXPECTED_COUNTS = {"aws": 433, "azure": 491, "gcp": 362, "coreweave": 42}
FIXTURE_COUNTS = {"aws": 8, "azure": 5, "gcp": 4, "coreweave": 3}


@pytest.fixture(scope="module")
def bundled() -> list:
    return list(read_offers(BUNDLED_DIR))


def test_rebuild_reproduces_committed_files_byte_for_byte(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    counts = build.build(reference_dir, tmp_path)
    assert counts == EXPECTED_COUNTS
    for name in ("offers.csv", "regions.csv", "SOURCES.md"):
        assert (tmp_path / name).read_bytes() == (BUNDLED_DIR / name).read_bytes(), name


def test_main_entry_point_and_build_date(fixture_reference: Path, tmp_path: Path) -> None:
    rc = build.main(
        [
            "--reference",
            str(fixture_reference),
            "--out",
            str(tmp_path),
            "--build-date",
            "2030-01-02",
        ]
    )
    assert rc == 0
    assert "Build date: 2030-01-02" in (tmp_path / "SOURCES.md").read_text()
    assert "Reference snapshot: built 2026-11-24" in (tmp_path / "SOURCES.md").read_text()


@pytest.fixture
def fixture_build(fixture_reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "fixture-out"
    assert build.build(fixture_reference, out) == FIXTURE_COUNTS
    return out


def test_fixture_build_is_deterministic(fixture_reference: Path, fixture_build: Path, tmp_path):
    again = tmp_path / "again"
    build.build(fixture_reference, again)
    for name in ("offers.csv", "regions.csv", "SOURCES.md"):
        assert (again / name).read_bytes() == (fixture_build / name).read_bytes(), name


def test_sagemaker_rows_are_derived_for_the_2025_26_gpus(fixture_build: Path) -> None:
    aws = {(o.region, o.instance_type): o for o in read_offers(fixture_build) if o.target == "aws"}
    h200 = aws[("us-east-1", "ml.p5en.48xlarge")]
    assert (h200.gpu, h200.gpu_count, h200.gpu_memory_gib) == ("H200", 8, 141.0)
    assert h200.hourly_usd == round(63.296 * 1.25, 6) and h200.estimate
    assert "derived by mdeploy from aws_gpu_vms.csv" in h200.source
    assert aws[("us-east-1", "ml.g7e.2xlarge")].gpu == "RTXPRO6000"
    assert aws[("eu-central-1", "ml.p4de.24xlarge")].gpu == "A100-80GB"
    b300 = aws[("us-west-2", "ml.p6-b300.48xlarge")]
    assert b300.gpu == "B300" and b300.gpu_memory_gib == 288.0  # not the reference's 268
    # Rows the reference file has keep its provenance; g4dn (T4) is left out.
    assert "derived" not in aws[("us-east-1", "ml.g5.xlarge")].source
    assert not any(name.startswith("ml.g4dn") for _, name in aws)


def test_sagemaker_types_are_in_botocores_production_variant_enum() -> None:
    botocore = pytest.importorskip("botocore.session")
    model = botocore.get_session().get_service_model("sagemaker")
    enum = set(model.shape_for("ProductionVariantInstanceType").enum)
    assert enum >= prov.SAGEMAKER_GPU_TYPES


def test_region_access_is_marked(fixture_build: Path) -> None:
    access = {k: r.access for k, r in read_regions(fixture_build).items()}
    assert access[("aws", "eu-south-2")] == "opt-in"
    assert access[("aws", "us-gov-west-1")] == "partition"
    assert access[("azure", "germanynorth")] == "restricted"
    assert access[("aws", "us-east-1")] == access[("gcp", "europe-west4")] == "open"
    assert access[("coreweave", "EU-SOUTH-03B")] == "open"
    assert (
        "Regions per access: open 12, opt-in 1, restricted 1, partition 1"
        in (fixture_build / "SOURCES.md").read_text()
    )


def test_access_tables_agree_with_botocore() -> None:
    import json

    botocore = pytest.importorskip("botocore")
    data = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())
    by_id = {p["id"]: p for p in data["partitions"]}
    for pattern, partition in prov.AWS_PARTITIONS:
        assert by_id[partition]["regionRegex"].strip("^$").replace("\\", "") == pattern.replace(
            "\\", ""
        )
        for region in by_id[partition]["regions"]:
            if not region.endswith("-global"):
                assert prov.region_access("aws", region) == "partition", region
    commercial = set(by_id["aws"]["regions"])
    assert commercial >= prov.AWS_OPT_IN_REGIONS
    assert prov.region_access("aws", "eu-west-1") == "open"


def test_notes_that_disagree_with_the_access_table_fail_the_build(
    fixture_reference: Path, tmp_path: Path
) -> None:
    ref = _copy_reference(fixture_reference, tmp_path / "ref")
    table = ref / "sovereign_regions.csv"
    table.write_text(table.read_text().replace("Frankfurt", "Frankfurt; opt-in region"))
    with pytest.raises(InputError, match=r"eu-central-1.*disagree with the region access"):
        build.build(ref, tmp_path / "out")


def test_row_counts_per_target(bundled: list) -> None:
    assert Counter(o.target for o in bundled) == EXPECTED_COUNTS


def test_every_offer_has_country_and_jurisdiction_from_the_regions_table(bundled: list) -> None:
    regions = read_regions(BUNDLED_DIR)
    for o in bundled:
        region = regions[(o.target, o.region)]
        assert (o.country, o.jurisdiction) == (region.country, region.jurisdiction)
        assert len(o.country) == 2 and o.country.isupper()
        assert o.jurisdiction in ("EU", "EEA", "UK", "CH", "US", "other")


def test_known_residency_facts(bundled: list) -> None:
    where = {(o.target, o.region): (o.country, o.jurisdiction) for o in bundled}
    assert where[("gcp", "europe-west6")] == ("CH", "CH")
    assert where[("azure", "norwayeast")] == ("NO", "EEA")
    assert where[("aws", "eu-west-2")] == ("GB", "UK")
    assert where[("coreweave", "EU-SOUTH-03B")] == ("ES", "EU")
    assert where[("aws", "us-gov-west-1")] == ("US", "US")


def test_aws_rows_are_sagemaker_estimates(bundled: list) -> None:
    aws = [o for o in bundled if o.target == "aws"]
    assert all(o.instance_type.startswith("ml.") and o.estimate for o in aws)
    assert all("EC2 on-demand ×1.25 estimate" in o.price_source for o in aws)
    g5 = next(o for o in aws if (o.region, o.instance_type) == ("us-east-1", "ml.g5.xlarge"))
    assert g5.hourly_usd == pytest.approx(1.006 * 1.25)
    assert (g5.gpu, g5.gpu_count, g5.gpu_memory_gib) == ("A10G", 1, 22.49)


def test_azure_rows_are_exactly_the_managed_endpoint_skus(bundled: list) -> None:
    azure = {o.instance_type for o in bundled if o.target == "azure"}
    assert {s.upper() for s in azure} <= set(prov.AZURE_MANAGED_SKUS)
    for left_out in ("Standard_ND96isr_H200_v5", "Standard_NV12s_v3", "Standard_NC8ads_A10_v4"):
        assert left_out not in azure
    assert {
        "Standard_NC24ads_A100_v4",
        "Standard_NV36ads_A10_v5",
        "Standard_ND96isr_H100_v5",
    } <= azure


def test_azure_gpu_names_keep_distinct_parts_distinct(bundled: list) -> None:
    gpu = {o.instance_type: o.gpu for o in bundled if o.target == "azure"}
    assert gpu["Standard_NV36ads_A10_v5"] == "A10"  # not the AWS A10G
    assert gpu["Standard_NC40ads_H100_v5"] == "H100-NVL"  # 94 GB part
    assert gpu["Standard_ND96isr_H100_v5"] == "H100"
    nc = next(o for o in bundled if o.instance_type == "Standard_NC24ads_A100_v4")
    assert nc.extra == {"quota_reserve_exempt": "true"} and "Azure VM list price" in nc.price_source


def test_gcp_rows_carry_a_valid_vertex_accelerator_enum(bundled: list) -> None:
    from google.cloud.aiplatform_v1.types.accelerator_type import AcceleratorType

    valid = {e.name for e in AcceleratorType}
    gcp = [o for o in bundled if o.target == "gcp"]
    assert all(o.extra["accelerator_type"] in valid for o in gcp)
    assert all(
        o.estimate and "Vertex AI prediction node prices differ" in o.price_source for o in gcp
    )
    pairs = {(o.instance_type.split("-")[0], o.extra["accelerator_type"]) for o in gcp}
    assert ("g2", "NVIDIA_L4") in pairs and ("a2", "NVIDIA_A100_80GB") in pairs
    assert ("a3", "NVIDIA_H100_MEGA_80GB") in pairs
    assert not any(o.gpu in ("P100", "P4") for o in gcp)  # vLLM needs compute capability 7.0
    assert not any(o.instance_type.endswith("-64") for o in gcp)


def test_vertex_accelerator_rules() -> None:
    assert prov.vertex_accelerator("g2-standard-8", "L4") == "NVIDIA_L4"
    assert prov.vertex_accelerator("a2-ultragpu-2g", "A100-80GB") == "NVIDIA_A100_80GB"
    assert prov.vertex_accelerator("n1-highmem-8", "T4") == "NVIDIA_TESLA_T4"
    assert prov.vertex_accelerator("n1-standard-64", "T4") is None
    assert prov.vertex_accelerator("n1-highmem-8", "P4") is None
    assert prov.vertex_accelerator("g2-standard-8", "A100") is None


def test_coreweave_rows_carry_node_selectors(bundled: list) -> None:
    cw = [o for o in bundled if o.target == "coreweave"]
    assert all(o.extra["instance_type_label"] == o.instance_type for o in cw)
    h100 = {o.extra["gpu_class"] for o in cw if o.gpu == "H100"}
    assert h100 == {"H100_NVLINK_80GB"}
    # H200's class value is only inferred in the source: left empty, not guessed.
    assert {o.extra["gpu_class"] for o in cw if o.gpu == "H200"} == {""}
    assert all(o.extra.get("cpu_arch") == "arm64" for o in cw if o.gpu in ("GB200", "GH200"))


def test_flagged_rows_are_kept_with_their_reason(bundled: list, fixture_build: Path) -> None:
    assert sum(1 for o in bundled if o.flagged) == 75
    flagged = [o for o in read_offers(fixture_build) if o.flagged]
    assert [(o.instance_type, o.region) for o in flagged] == [("a3-highgpu-8g", "us-central1")]
    assert "suspiciously low" in (flagged[0].flagged or "")


def test_memory_is_the_sizing_rule_m_and_estimates_are_marked(bundled: list) -> None:
    measured = {
        "H100": 79.65,
        "A100-80GB": 80.0,
        "A100": 40.0,
        "A10G": 22.49,
        "L4": 22.49,
        "L40S": 44.99,
    }
    estimated = {"T4": 14.99, "A10": 22.49, "H100-NVL": 94.0, "H200": 141.0, "RTXPRO6000": 89.95}
    for o in bundled:
        if o.gpu in measured:
            assert o.gpu_memory_gib == measured[o.gpu]
            assert "memory estimated" not in o.price_source
        if o.gpu in estimated:
            assert o.gpu_memory_gib == estimated[o.gpu]
            assert o.estimate and o.price_source.endswith("memory estimated")


def _copy_reference(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_region_missing_from_the_table_is_a_build_error(
    fixture_reference: Path, tmp_path: Path
) -> None:
    ref = _copy_reference(fixture_reference, tmp_path / "ref")
    table = ref / "sovereign_regions.csv"
    lines = table.read_text().splitlines(keepends=True)
    table.write_text("".join(line for line in lines if not line.startswith("azure,westeurope,")))
    with pytest.raises(InputError, match=r"azure/westeurope is not in sovereign_regions\.csv"):
        build.build(ref, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_gpu_is_a_build_error(fixture_reference: Path, tmp_path: Path) -> None:
    ref = _copy_reference(fixture_reference, tmp_path / "ref")
    path = ref / "aws_sagemaker_gpu.csv"
    path.write_text(path.read_text() + "ml.x9.xlarge,X9,1,24,us-east-1,1.0\n")
    with pytest.raises(InputError, match="'X9' is not in the catalog's GPU table"):
        build.build(ref, tmp_path / "out")
    assert build.main(["--reference", str(ref), "--out", str(tmp_path / "out")]) == 2


def test_bad_jurisdiction_in_a_k8s_row_is_a_build_error(
    fixture_reference: Path, tmp_path: Path
) -> None:
    ref = _copy_reference(fixture_reference, tmp_path / "ref")
    path = ref / "k8s_gpu_offers.csv"
    text = path.read_text().replace("CoreWeave,US-EAST-04A,US,US,", "CoreWeave,US-EAST-04A,US,,", 1)
    path.write_text(text)
    with pytest.raises(InputError, match="US-EAST-04A"):
        build.build(ref, tmp_path / "out")
