"""Tables people read: user strings shown literally, and names whole (or cut) at 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mdeploy.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
runner = CliRunner()

POOLS = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: chat}
model: {id: mistralai/Mistral-7B-Instruct-v0.3}
placement:
  clouds: [kubernetes, aws, azure, gcp]
  kubernetes:
    pools:
      - {name: "[/]pool[bold]-with-a-very-long-name-indeed", gpu: H100, gpu_count: 8,
         country: FR, region: "eu[/red]-site-with-a-long-name", hourly_usd: 0.5}
"""


def plan(path: Path, columns: int, *extra: str):
    return runner.invoke(app, ["plan", str(path), *extra], env={"COLUMNS": str(columns)})


def rows_by_target(path: Path) -> list[dict]:
    """The best candidate per target, as the table lists them (from --json)."""
    doc = json.loads(plan(path, 80, "--json").stdout)
    best: dict[str, dict] = {}
    for c in doc["candidates"]:
        best.setdefault(c["target"], c)
    return list(best.values())


def shown_whole_or_cut(line: str, value: str) -> bool:
    """`value` appears whole, or as a prefix ending in an ellipsis, on this one line."""
    if value in line:
        return True
    return any(f"{value[:n]}…" in line for n in range(4, len(value)))


@pytest.fixture
def pools_spec(tmp_path: Path) -> Path:
    path = tmp_path / "pools.yaml"
    path.write_text(POOLS, encoding="utf-8")
    return path


def test_markup_in_pool_name_and_region_is_shown_not_parsed(pools_spec):
    result = plan(pools_spec, 200)
    assert result.exit_code == 0, result.output
    assert "[/]pool[bold]-with-a-very-long-name-indeed" in result.stdout
    assert "eu[/red]-site-with-a-long-name" in result.stdout


@pytest.mark.parametrize("spec", [*EXAMPLES, None], ids=lambda p: p.stem if p else "pools")
def test_at_80_columns_no_name_is_split(spec, pools_spec):
    path = spec or pools_spec
    result = plan(path, 80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    start = lines.index(next(line for line in lines if line.startswith("target ")))
    table = lines[start + 1 : start + 1 + len(rows_by_target(path))]
    for row, line in zip(rows_by_target(path), table, strict=True):
        assert line.startswith(row["target"]), (line, row["target"])
        assert shown_whole_or_cut(line, row["region"]), (line, row["region"])
        assert shown_whole_or_cut(line, row["instance_type"]), (line, row["instance_type"])
        assert f"{row['gpu']}×{row['gpu_count']}" in line  # fixed columns never cut


def test_too_narrow_for_a_table_stacks_each_row(pools_spec):
    result = plan(pools_spec, 40)
    assert result.exit_code == 0
    assert "target kubernetes · region" in result.stdout.replace("\n", " ")
    assert all(len(line) <= 40 for line in result.stdout.splitlines())


def compare(path: Path, columns: int, *extra: str):
    return runner.invoke(app, ["compare", str(path), *extra], env={"COLUMNS": str(columns)})


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("spec", [*EXAMPLES, None], ids=lambda p: p.stem if p else "pools")
def test_compare_fits_the_width_and_never_cuts_a_name(spec, columns, pools_spec):
    path = spec or pools_spec
    result = compare(path, columns)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert all(len(line) <= columns for line in text.splitlines()), text
    for row in json.loads(compare(path, columns, "--json").stdout)["regions"]:
        assert row["region"] in text  # regions whole, in the table or stacked
        if row["fits"]:
            assert row["instance_type"] in text, row["instance_type"]
