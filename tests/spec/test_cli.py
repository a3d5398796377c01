"""`mdeploy validate`, `init` and `schema` through the CLI, as people and CI run them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mdeploy.spec.scaffold import DEFAULT_MODEL, default_name, render_starter
from mdeploy.spec.schema import schema

SECRET = "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH"


def test_validate_valid_spec(cli, write, valid_text):
    path = write(valid_text)
    result = cli("validate", path)
    assert result.exit_code == 0, result.output
    assert f"✓ {path} valid: tiny-chat, model acme/tiny-7b (7 B)" in result.stdout


def test_validate_prod_env_applies_guardrails_and_says_so(cli, write, valid_text):
    result = cli("validate", write(valid_text), "--env", "prod")
    assert result.exit_code == 0, result.output
    assert "valid (env prod)" in result.stdout and "prod guardrails pass" in result.stdout


def test_invalid_spec_exits_2_with_located_errors_on_stderr(cli, write, valid_text):
    path = write(valid_text.replace("  auth: key", "  auth: maybe"))
    result = cli("validate", path)
    assert result.exit_code == 2
    assert f"{path}:19:9: serving.auth: Input should be" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output


def test_json_output_for_valid_and_invalid(cli, write, valid_text):
    ok = json.loads(cli("validate", write(valid_text), "--json").stdout)
    assert ok["valid"] is True and ok["issues"] == [] and ok["env"] is None
    assert ok["model"] == {"id": "acme/tiny-7b", "params_b": 7.0} and len(ok["spec_hash"]) == 64

    path = write(valid_text.replace("kind: Deployment", "kind: Service"))
    result = cli("validate", path, "--json", "--env", "staging")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc == {
        "valid": False,
        "file": str(path),
        "env": "staging",
        "issues": [
            {
                "file": str(path),
                "line": 2,
                "column": 7,
                "field": "kind",
                "message": "Input should be 'Deployment'",
            }
        ],
    }


def test_guardrail_refusal_exits_4_and_json_still_printed(cli, write, valid_text):
    path = write(valid_text.replace("environments:\n", "guardrails: strict\nenvironments:\n"))
    result = cli("validate", path, "--json")
    assert result.exit_code == 4
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    assert [i["field"] for i in doc["issues"]] == ["model.revision", "serving.image"]
    assert "refused by prod guardrails" in result.stderr


def test_secret_value_is_never_echoed(cli, write, valid_text):
    text = valid_text.replace("env:HF_TOKEN", SECRET).replace(
        "  auth: key", f"  auth: key\n  engine_args: {{tokenizer: '{SECRET}x'}}"
    )
    path = write(text)
    for args in (["validate", path], ["validate", path, "--json"]):
        result = cli(*args)
        assert result.exit_code == 2
        assert SECRET not in result.output
    doc = json.loads(cli("validate", path, "--json").stdout)
    assert {i["field"] for i in doc["issues"]} == {
        "serving.secrets.HF_TOKEN",
        "serving.engine_args.tokenizer",
    }


def test_unknown_model_is_reported_at_model_id(cli, write, line_of):
    text = (
        "apiVersion: mdeploy/v1\nkind: Deployment\nmetadata: {name: a}\nmodel:\n  id: acme/nope\n"
    )
    result = cli("validate", write(text), "--json")
    assert result.exit_code == 2
    (issue,) = json.loads(result.stdout)["issues"]
    assert (issue["line"], issue["column"], issue["field"]) == (5, 7, "model.id")
    assert "unknown model 'acme/nope'" in issue["message"]


def test_unknown_env_exits_2_and_lists_envs(cli, write, valid_text):
    result = cli("validate", write(valid_text), "--env", "qa")
    assert result.exit_code == 2
    assert "unknown environment 'qa'" in result.stderr and "staging, prod" in result.stderr
    doc = json.loads(cli("validate", write(valid_text), "--env", "qa", "--json").stdout)
    assert doc["valid"] is False and "unknown environment" in doc["issues"][0]["message"]


def test_all_envs_checks_base_and_each_overlay(cli, write, valid_text, line_of):
    result = cli("validate", write(valid_text), "--all-envs")
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        f"✓ {write(valid_text)} valid",
        f"✓ {write(valid_text)} valid (env staging)",
        f"✓ {write(valid_text)} valid (env prod)",
    ]

    text = valid_text.replace("      revision: 0123", "      revision: x0123").replace(
        "replicas: {min: 1, max: 1}", "replicas: {min: 2, max: 1}"
    )
    result = cli("validate", write(text), "--all-envs", "--json")
    assert result.exit_code == 2  # a spec error outranks the guardrail refusal
    doc = json.loads(result.stdout)
    assert [r["valid"] for r in doc["results"]] == [True, False, False]
    assert [(i["env"], i["field"]) for i in doc["issues"]] == [
        ("staging", "serving.replicas"),
        ("prod", "model.revision"),
    ]
    assert doc["issues"][0]["line"] == line_of(text, "min: 2, max: 1")
    assert "[env staging]" in result.stderr


def test_env_and_all_envs_exclude_each_other(cli, write, valid_text):
    result = cli("validate", write(valid_text), "--all-envs", "--env", "prod")
    assert result.exit_code == 2 and "exclude each other" in result.stderr


def test_missing_file_exits_2(cli, tmp_path):
    result = cli("validate", tmp_path / "absent.yaml")
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_subprocess_bad_input_has_no_traceback(write):
    bad = write("apiVersion: mdeploy/v1\nkind: [\n")
    code = "from mdeploy.cli.app import main; main()"
    for args in (["validate", str(bad)], ["validate", str(bad), "--json"]):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr + proc.stdout
        assert f"{bad}:3:1" in proc.stderr


# --------------------------------------------------------------------------- init


def test_init_writes_a_spec_that_validates(cli, tmp_path):
    path = tmp_path / "mdeploy.yaml"
    result = cli("init", path)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "warning" not in result.output
    check = cli("validate", path, "--all-envs")
    assert check.exit_code == 0, check.output
    assert f"model {DEFAULT_MODEL}" in check.stdout


def test_init_refuses_to_overwrite_without_force(cli, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("keep me\n")
    result = cli("init", path)
    assert result.exit_code == 2 and "--force" in result.stderr
    assert path.read_text() == "keep me\n"
    assert cli("init", path, "--force", "--name", "chat").exit_code == 0
    assert "name: chat\n" in path.read_text()


def test_init_with_model_and_name(cli, tmp_path):
    path = tmp_path / "q.yaml"
    assert cli("init", path, "--model", "Qwen/Qwen2.5-7B-Instruct").exit_code == 0
    text = path.read_text()
    assert 'id: "Qwen/Qwen2.5-7B-Instruct"' in text and "name: qwen2-5-7b-instruct" in text
    assert 'source: "hf://Qwen/Qwen2.5-7B-Instruct"' in text


def test_init_unknown_model_warns_but_writes(cli, tmp_path):
    path = tmp_path / "u.yaml"
    result = cli("init", path, "--model", "acme/unknown-1b")
    assert result.exit_code == 0 and path.exists()
    assert "does not validate yet" in result.stderr and "model.architecture" in result.stderr


@pytest.mark.parametrize("name", ["Bad_Name", "x" * 41, "-x"])
def test_init_refuses_a_bad_name(cli, tmp_path, name):
    result = cli("init", tmp_path / "n.yaml", "--name", name)
    assert result.exit_code == 2 and not (tmp_path / "n.yaml").exists()


def test_init_model_id_cannot_inject_yaml(tmp_path, write):
    text = render_starter(model_id='a/b"\nkind: Other #', name="ok")
    assert "\nkind: Other" not in text
    assert 'id: "a/b\\"\\nkind: Other #"' in text


def test_default_name_is_a_dns_label():
    assert default_name("mistralai/Mistral-7B-Instruct-v0.3") == "mistral-7b-instruct-v0-3"
    assert default_name("org/" + "A" * 80) == "a" * 40
    assert default_name("org/___") == "model"


def test_starter_documents_every_field():
    text = render_starter(model_id=DEFAULT_MODEL)
    defs = schema()["$defs"]
    fields = set(schema()["properties"])
    for name in ("Metadata", "ModelSpec", "Architecture", "Serving", "Replicas", "Placement"):
        fields |= set(defs[name]["properties"])
    for name in ("ClusterPlacement", "ClusterPool", "Rollout"):
        fields |= set(defs[name]["properties"])
    missing = sorted(f for f in fields if f"{f}:" not in text)
    assert missing == []


def test_init_help_names_the_real_default_model(cli):
    assert DEFAULT_MODEL in cli("init", "--help").stdout
