"""The licence gate: shown by plan, refused in prod until the spec records its acceptance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mdeploy.catalog.models import License
from mdeploy.cli.app import app
from mdeploy.plan.fit import licence_problem
from mdeploy.spec.models import ModelSpec

DIGEST = "sha256:2759430d1e1e75f02ba2b92115d011b49309037301a832c9e3e2ae1ac28f38a9"
PROD = """apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: large}
model:
  id: MODEL
  revision: a60832cb6c88d5cb6e507680d0e9996fbad77050
  max_context: 8192
ACCEPT
serving:
  image: ghcr.io/mdeploy/vllm-adapter@DIGEST
  max_concurrency: 4
  auth: key
placement: {clouds: [aws, azure, gcp, coreweave]}
guardrails: strict
""".replace("DIGEST", DIGEST)
runner = CliRunner()


def _plan(tmp_path: Path, model: str, accept: str = "") -> tuple[int, str, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(PROD.replace("MODEL", model).replace("ACCEPT", accept))
    result = runner.invoke(app, ["plan", str(path), "--json"])
    return result.exit_code, result.stdout, result.stderr


def test_research_only_model_is_refused_in_prod_naming_licence_and_condition(tmp_path):
    code, _, err = _plan(tmp_path, "mistralai/Mistral-Large-Instruct-2411")
    assert code == 4
    assert "MRL" in err and "research" in err and "model.license_accepted: 'MRL'" in err


def test_recording_the_acceptance_lets_the_plan_through(tmp_path):
    code, out, _ = _plan(tmp_path, "mistralai/Mistral-Large-Instruct-2411",
                         "  license_accepted: MRL")  # fmt: skip
    assert code == 0
    licence = json.loads(out)["model"]["license"]
    assert licence["name"] == "MRL" and licence["commercial"] == "no"


def test_a_commercial_licence_passes_and_another_name_does_not_count(tmp_path):
    assert _plan(tmp_path, "mistralai/Mistral-7B-Instruct-v0.3")[0] == 0
    code, _, err = _plan(tmp_path, "mistralai/Mistral-Large-Instruct-2411",
                         "  license_accepted: Apache-2.0")  # fmt: skip
    assert code == 4 and "MRL" in err


def test_without_prod_guardrails_the_licence_is_shown_not_enforced(tmp_path):
    path = tmp_path / "dev.yaml"
    text = PROD.replace("MODEL", "mistralai/Mistral-Large-Instruct-2411").replace("ACCEPT", "")
    path.write_text(text.replace("guardrails: strict\n", ""))
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 0
    assert "licence MRL" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("licence", "accepted", "refused"),
    [
        (None, None, False),  # unknown (a spec's own architecture): not gated
        (License("Apache-2.0", "Apache-2.0", "yes"), None, False),
        (License("Llama 3.3 Community", None, "conditional", "700M MAU"), None, True),
        (License("Llama 3.3 Community", None, "conditional"), "llama 3.3 community", False),
        (License("MNPL", None, "no", "non-production"), "MRL", True),
    ],
)
def test_licence_problem(licence, accepted, refused):
    model = ModelSpec(id="x", license_accepted=accepted)
    assert (licence_problem(licence, model) is not None) is refused
