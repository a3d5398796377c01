"""`validate` runs every check `plan` would refuse the spec for, each with file:line."""

from __future__ import annotations

import json

import pytest

import mdeploy.spec._yaml as spec_yaml

ARCH = "architecture: {params_b: 7, layers: 32, attention_heads: 32, kv_heads: 8, head_dim: 128}"
BASE = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: chat}
model:
  id: mistralai/Mistral-7B-Instruct-v0.3
  max_context: CONTEXT
serving:
  engine_args:
    seed: 1
    FLAG: 2
placement:
  clouds: [aws, kubernetes]
  kubernetes:
    pools:
      - {name: p, gpu: GPU, gpu_count: 1, country: FR, hourly_usd: 1}
"""


def spec(context: int = 4096, flag: str = "enforce-eager", gpu: str = "H100") -> str:
    return BASE.replace("CONTEXT", str(context)).replace("FLAG", flag).replace("GPU", gpu)


def issues(cli, path, *extra: str) -> tuple[int, list[dict]]:
    result = cli("validate", path, "--json", *extra)
    return result.exit_code, json.loads(result.stdout)["issues"]


def test_the_base_spec_is_valid(cli, write):
    assert cli("validate", write(spec())).exit_code == 0


@pytest.mark.parametrize(
    ("kwargs", "line", "field", "words"),
    [
        ({"context": 2_000_000}, 6, "model.max_context", "trained for"),
        ({"flag": "max-model-len"}, 10, "serving.engine_args.max-model-len", "set by the planner"),
        ({"gpu": "NOPE-GPU"}, 15, "placement.kubernetes.pools.0.gpu", "unknown GPU"),
    ],
    ids=["context-beyond-training", "planner-owned-flag", "unknown-pool-gpu"],
)
def test_plan_time_checks_run_in_validate_with_their_line(cli, write, kwargs, line, field, words):
    code, found = issues(cli, write(spec(**kwargs)))
    assert code == 2
    (issue,) = found
    assert (issue["line"], issue["field"]) == (line, field) and words in issue["message"]


def test_all_plan_time_problems_at_once(cli, write):
    code, found = issues(cli, write(spec(2_000_000, "max-model-len", "NOPE-GPU")))
    assert code == 2 and len(found) == 3


def test_plan_reports_the_same_location(cli, write):
    result = cli("plan", write(spec(flag="tensor-parallel-size")), "--json")
    assert result.exit_code == 2
    (issue,) = json.loads(result.stdout)["error"]["issues"]
    assert issue["path"] == "serving.engine_args.tensor-parallel-size" and issue["line"] == 10


def test_unknown_model_without_architecture_is_located(cli, write):
    text = spec().replace("mistralai/Mistral-7B-Instruct-v0.3", "acme/unknown-model")
    code, found = issues(cli, write(text))
    assert code == 2 and found[0]["field"] == "model.id" and found[0]["line"] == 5


def test_all_envs_reads_the_file_once_whatever_the_overlay_count(cli, write, monkeypatch):
    overlays = "".join(f"  e{i}: {{serving: {{max_concurrency: {i + 1}}}}}\n" for i in range(200))
    path = write(spec() + "environments:\n" + overlays)
    reads = []
    original = spec_yaml._read_text  # every read of a spec file goes through it
    monkeypatch.setattr(spec_yaml, "_read_text", lambda p: reads.append(p) or original(p))
    result = cli("validate", path, "--all-envs", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["results"]) == 201
    assert len(reads) == 1
