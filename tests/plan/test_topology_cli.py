"""`plan` and `compare` show the replica topology (issue 14 item 4)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mdeploy.cli.app import app

runner = CliRunner()
SPEC = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {{name: big}}
model: {{id: meta-llama/Llama-3.1-405B-Instruct, max_context: 8192}}
serving: {{max_concurrency: 8}}
placement: {{clouds: [{clouds}]{gpus}}}
"""


def _spec(tmp_path: Path, clouds: str, gpus: str = "") -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(clouds=clouds, gpus=f", gpus: [{gpus}]" if gpus else ""))
    return str(path)


def test_plan_prints_topology_and_leader_and_worker_flags(tmp_path: Path):
    result = runner.invoke(
        app, ["plan", _spec(tmp_path, "coreweave", "H100")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "topology: 2 × 8×H100, TP8·PP2" in result.output
    text = " ".join(result.output.split())  # the console wraps long lines
    leader = text.split("engine (leader):")[1].split("engine (workers):")[0]
    workers = text.split("engine (workers):")[1].split("best per target")[0]
    assert "--node-rank 0" in leader and "--headless" not in leader
    assert "--node-rank $(LWS_WORKER_INDEX)" in workers and "--headless" in workers


def test_plan_json_adds_the_topology_fields_to_every_candidate(tmp_path: Path):
    result = runner.invoke(app, ["plan", _spec(tmp_path, "coreweave", "H100"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    for c in doc["candidates"]:
        assert {"nodes", "pipeline_parallel", "data_parallel", "expert_parallel"} <= set(c)
    assert (doc["chosen"]["nodes"], doc["chosen"]["pipeline_parallel"]) == (2, 2)


def test_compare_shows_the_topology(tmp_path: Path):
    result = runner.invoke(
        app, ["compare", _spec(tmp_path, "coreweave", "H100")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "2 × 8×H100, TP8·PP2" in result.output


def test_plan_on_azure_refuses_with_the_largest_managed_sku(tmp_path: Path):
    result = runner.invoke(app, ["plan", _spec(tmp_path, "azure")], env={"COLUMNS": "300"})
    assert result.exit_code == 4
    reason = (
        "largest Azure ML managed SKU is 8×H100 (640 GB): use a target where a replica may "
        "span nodes (coreweave, kubernetes)"
    )
    assert reason in " ".join(result.output.split())
