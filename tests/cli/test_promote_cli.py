"""
`mdeploy promote | rollback | ls` through the CLI: exit codes, one JSON document, the
dry-run contract, the spec's rollout rules. The live ops client is replaced by the
in-memory TrafficOps (tests/ops/fakes.py); MDEPLOY_HOME is a temporary folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ops.fakes import MemoryOps
from typer.testing import CliRunner

from mdeploy.cli import promote_cmd
from mdeploy.cli.app import app

REVISION = "e0bc86c23ce5aae1db576c8cca6f06f1f73af2db"
IMAGE = "ghcr.io/mdeploy/vllm-adapter@sha256:" + "5a" * 32
STACK = "mistral-7b-chat-default-gcp"
SPEC = f"""\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {{name: mistral-7b-chat}}
model:
  id: mistralai/Mistral-7B-Instruct-v0.3
  revision: {REVISION}
  version: "2"
  max_context: 16384
serving:
  image: {IMAGE}
  auth: key
placement:
  clouds: [gcp]
  residency: [EU]
rollout:
  strategy: canary
  steps: [20, 100]
  bake_minutes: 0
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MDEPLOY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CI", raising=False)
    return tmp_path / "home"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def ops(monkeypatch: pytest.MonkeyPatch) -> MemoryOps:
    fake = MemoryOps()
    monkeypatch.setattr(
        promote_cmd, "live_ops", lambda loaded, target, resolved=None: (STACK, fake)
    )
    return fake


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_dry_run_json_is_the_documented_contract_and_touches_nothing(
    spec: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(promote_cmd, "live_ops", lambda *a: pytest.fail("dry-run went live"))
    result = run("promote", str(spec), "-t", "gcp", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dry_run"] is True and doc["contract"] == "mdeploy/promote-plan/v1"
    assert doc["stack"] == STACK and doc["strategy"] == "canary"
    assert doc["to"]["image"] == IMAGE and doc["to"]["model_revision"] == REVISION
    assert doc["to"]["name"].startswith("v2-") and doc["to"]["model_version"] == "2"
    assert [(s["to_percent"], s["bake_s"]) for s in doc["steps"]] == [(20, 0.0), (100, 0.0)]
    assert doc["checks"]["smoke"]["kind"] == "prompt"
    assert not home.exists() or not any(home.rglob("*.lock"))


def test_dry_run_flags_override_the_spec(spec: Path, home: Path) -> None:
    result = run("promote", str(spec), "-t", "gcp", "--dry-run", "--json", "--steps",
                 "5,25,100", "--bake", "2m", "--smoke", "./smoke.sh", "--max-p95-ms", "1500",
                 "--metrics-url", "http://127.0.0.1:9/metrics")  # fmt: skip
    doc = json.loads(result.stdout)
    assert [s["to_percent"] for s in doc["steps"]] == [5, 25, 100]
    assert doc["steps"][0]["bake_s"] == 120 and doc["checks"]["max_p95_ms"] == 1500
    assert doc["checks"]["smoke"] == {"kind": "command", "command": "./smoke.sh"}
    assert doc["checks"]["metrics_available"] and "metrics" in doc["steps"][0]["checks"]


def test_blue_green_dry_run_warms_at_0_then_switches(spec: Path, home: Path) -> None:
    spec.write_text(
        SPEC.replace("strategy: canary\n  steps: [20, 100]\n", "strategy: blue-green\n")
    )
    doc = json.loads(run("promote", str(spec), "-t", "gcp", "--dry-run", "--json").stdout)
    assert [s["to_percent"] for s in doc["steps"]] == [0, 100]
    assert doc["steps"][0]["checks"] == ["health"]


@pytest.mark.parametrize(
    ("rollout", "field", "message"),
    [
        ("strategy: all-at-once", "rollout.strategy", "'canary' or 'blue-green'"),
        ("strategy: blue-green\n  steps: [10, 100]", "rollout.steps", "blue-green switches"),
    ],
)
def test_validate_refuses_an_unknown_strategy_and_blue_green_steps(
    spec: Path, rollout: str, field: str, message: str
) -> None:
    text = SPEC.replace("strategy: canary\n  steps: [20, 100]", rollout)
    spec.write_text(text)
    result = run("validate", str(spec), "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    issue = doc["issues"][0]
    assert issue["field"] == field and message in issue["message"]
    wanted = rollout.splitlines()[-1].strip()
    assert text.splitlines()[issue["line"] - 1].strip() == wanted  # file:line points at it


def test_promote_json_reports_each_step_and_exit_0(spec: Path, home: Path, ops: MemoryOps) -> None:
    result = run("promote", str(spec), "-t", "gcp", "--json", "--yes")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["result"] == "promoted" and report["removed"] == ["v-1"]
    assert [s["to_percent"] for s in report["steps"]] == [20, 100]
    assert ops.traffic == {report["to"]: 100}
    assert json.loads((home / "promotions" / f"{STACK}.json").read_text())["hourly_usd"] > 0


def test_a_failed_smoke_exits_1_with_one_json_report(
    spec: Path, home: Path, ops: MemoryOps
) -> None:
    name = json.loads(run("promote", str(spec), "-t", "gcp", "--dry-run", "--json").stdout)
    ops.broken = {name["to"]["name"]}
    result = run("promote", str(spec), "-t", "gcp", "--json", "--yes")
    assert result.exit_code == 1
    report = json.loads(result.stdout)  # exactly one document
    assert report["result"] == "rolled-back" and "model crashed" in report["error"]
    assert "error:" in result.stderr and ops.traffic == {"v-1": 100}


def test_promote_needs_yes_when_not_interactive(spec: Path, home: Path, ops: MemoryOps) -> None:
    result = run("promote", str(spec), "-t", "gcp")
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert ops.calls == []


def test_a_second_promotion_is_refused_with_exit_4(spec: Path, home: Path, ops: MemoryOps) -> None:
    from mdeploy.ops.state import StateStore

    with StateStore(home / "promotions").lock(STACK, "promote"):
        result = run("promote", str(spec), "-t", "gcp", "--yes")
    assert result.exit_code == 4
    assert f"pid {os.getpid()}" in result.stderr and "refusing" in result.stderr


def test_rollback_and_ls(spec: Path, home: Path, ops: MemoryOps) -> None:
    assert run("promote", str(spec), "-t", "gcp", "--yes").exit_code == 0
    listing = json.loads(run("ls", "--json").stdout)["stacks"]
    assert [(r["stack"], r["target"], r["region"]) for r in listing] == [
        (STACK, "gcp", "europe-west4")
    ]
    assert [v["role"] for v in listing[0]["versions"]] == ["current", "last good (removed)"]
    result = run("rollback", str(spec), "-t", "gcp", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == "rolled-back" and ops.traffic == {"v-1": 100}
    again = run("rollback", str(spec), "-t", "gcp", "--yes", "--json")
    assert json.loads(again.stdout)["result"] == "unchanged"


def test_ls_reads_the_pulumi_file_backend_without_the_cli(home: Path) -> None:
    folder = home / "state" / ".pulumi" / "stacks" / "mdeploy"
    folder.mkdir(parents=True)
    root = {
        "urn": "urn:pulumi:m-default-aws::mdeploy::pulumi:pulumi:Stack::mdeploy-m-default-aws",
        "type": "pulumi:pulumi:Stack",
        "outputs": {
            "endpoint_name": "m-default",
            "api_key": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                        "ciphertext": "v1:abc"},
        },
    }  # fmt: skip
    child = {"urn": "urn:x", "type": "aws:sagemaker/endpoint:Endpoint"}
    doc = {"version": 3, "checkpoint": {"latest": {"resources": [root, child]}}}
    (folder / "m-default-aws.json").write_text(json.dumps(doc))
    (folder / "gone-default-azure.json").write_text(json.dumps({"checkpoint": {"latest": {}}}))
    rows = json.loads(run("ls", "--json").stdout)["stacks"]
    assert [(r["stack"], r["target"], r["state"], r["resources"]) for r in rows] == [
        ("gone-default-azure", "azure", "empty (destroyed or never deployed)", 0),
        ("m-default-aws", "aws", "deployed", 1),
    ]
    assert rows[1]["endpoint"] == "m-default" and rows[1]["hourly_usd"] is None
    assert "v1:abc" not in run("ls").stdout


def test_text_output_shows_each_step_and_what_failed(
    spec: Path, home: Path, ops: MemoryOps
) -> None:
    name = json.loads(run("promote", str(spec), "-t", "gcp", "--dry-run", "--json").stdout)
    ops.broken = {name["to"]["name"]}
    result = run("promote", str(spec), "-t", "gcp", "--yes")
    assert result.exit_code == 1
    assert "rolled-back" in result.stdout and "step 1:  20 %" in result.stdout
    assert "smoke FAILED" in result.stdout and "model crashed" in result.stdout
    ops.broken = set()
    ok = run("promote", str(spec), "-t", "gcp", "--yes")
    assert ok.exit_code == 0 and "promoted" in ok.stdout and "removed v-1" in ok.stdout


def test_the_metrics_token_is_sent_and_never_shown(
    spec: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDEPLOY_METRICS_TOKEN", "tok-SECRET-123")
    metrics = promote_cmd._metrics("http://127.0.0.1:9/metrics")
    assert metrics is not None and metrics.headers == {"Authorization": "Bearer tok-SECRET-123"}
    result = run("promote", str(spec), "-t", "gcp", "--dry-run", "--json",
                 "--metrics-url", "http://127.0.0.1:9/metrics")  # fmt: skip
    assert "tok-SECRET" not in result.stdout + result.stderr
    bad = run("promote", str(spec), "-t", "gcp", "--dry-run", "--metrics-url", "ftp://x")
    assert bad.exit_code == 2 and "--metrics-url" in bad.stderr


@pytest.mark.parametrize(
    ("target", "auth", "metrics"),
    [
        ("aws", "iam", "cloudwatch AWS/SageMaker Invocations"),
        ("azure", "key", "azure-monitor Azure Monitor RequestsPerMinute"),
    ],
)
def test_the_dry_run_names_the_platform_metrics(tmp_path, monkeypatch, target, auth, metrics):
    monkeypatch.setenv("MDEPLOY_HOME", str(tmp_path / "home"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "apiVersion: mdeploy/v1\nkind: Deployment\nmetadata: {name: m}\n"
        "model: {id: mistralai/Mistral-7B-Instruct-v0.3, "
        "revision: e0bc86c23ce5aae1db576c8cca6f06f1f73af2db, version: '2', max_context: 16384}\n"
        f"serving: {{image: 'ghcr.io/mdeploy/vllm-adapter@sha256:{'5a' * 32}', auth: {auth}}}\n"
        f"placement: {{clouds: [{target}], residency: [EU]}}\n"
    )
    result = CliRunner().invoke(app, ["promote", str(spec), "--target", target, "--dry-run",
                                      "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    checks = json.loads(result.stdout)["checks"]
    assert checks["metrics_available"] is True
    assert checks["metrics"].startswith(metrics)
