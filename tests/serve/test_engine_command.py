"""Where the model is on each platform, the engine's command line, and what gets printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mdeploy.serve.engine import (
    DEFAULT_ENGINE_CMD,
    EngineConfigError,
    engine_command,
    resolve_model,
)
from mdeploy.serve.server import masked


@pytest.fixture
def sm_dir(tmp_path: Path) -> Path:
    model = tmp_path / "opt-ml-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return model


def test_sagemaker_uses_opt_ml_model_when_it_holds_files(sm_dir, tmp_path):
    env = {"MDEPLOY_MODEL_ID": "org/m"}
    assert resolve_model("sagemaker", env, sagemaker_dir=sm_dir) == str(sm_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    # No ModelDataUrl: the directory is empty, so the model id is used.
    assert resolve_model("sagemaker", env, sagemaker_dir=empty) == "org/m"
    assert resolve_model("sagemaker", env, sagemaker_dir=tmp_path / "absent") == "org/m"


def test_vertex_uses_the_storage_uri():
    env = {"AIP_STORAGE_URI": "gs://bucket/model", "MDEPLOY_MODEL_ID": "org/m"}
    assert resolve_model("vertex", env) == "gs://bucket/model"
    assert resolve_model("vertex", {"MDEPLOY_MODEL_ID": "org/m"}) == "org/m"


def test_azureml_descends_into_a_lone_registered_folder(tmp_path):
    mount = tmp_path / "azureml-models" / "mistral" / "1"
    (mount / "mistral").mkdir(parents=True)
    (mount / "mistral" / "config.json").write_text("{}")
    assert resolve_model("azureml", {"AZUREML_MODEL_DIR": str(mount)}) == str(mount / "mistral")
    (mount / "mistral" / "config.json").rename(mount / "config.json")
    assert resolve_model("azureml", {"AZUREML_MODEL_DIR": str(mount)}) == str(mount)


def test_explicit_model_wins_over_the_platform_location(sm_dir):
    # As the image start always did: MDEPLOY_MODEL, an operator's override, comes first.
    env = {"MDEPLOY_MODEL": "/models/m"}
    assert resolve_model("sagemaker", env, sagemaker_dir=sm_dir) == "/models/m"


def test_image_start_flags_pass_through_the_owned_engine_unchanged(sm_dir):
    # boot wrote MDEPLOY_ENGINE_ARGS in the image; the adapter builds them again: no flag
    # is added twice, and a local model gets no --revision on the second pass either.
    env = {
        "MDEPLOY_MODEL_REVISION": "abc",
        "MDEPLOY_SERVED_MODEL_NAME": "tiny",
        "SM_VLLM_ENFORCE_EAGER": "true",
        "MDEPLOY_ENGINE_ARGS": json.dumps(["--max-model-len", "4096"]),
    }
    first = engine_command("sagemaker", env, port=1, sagemaker_dir=sm_dir)
    flags = first[len(DEFAULT_ENGINE_CMD) : -4]
    assert flags == [
        "--model", str(sm_dir), "--max-model-len", "4096",
        "--served-model-name", "tiny", "--enforce-eager",
    ]  # fmt: skip
    again = engine_command(
        "sagemaker", {**env, "MDEPLOY_ENGINE_ARGS": json.dumps(flags)}, port=1, sagemaker_dir=sm_dir
    )
    assert again == first


def test_owned_engine_reads_the_model_source_and_the_revision():
    env = {"MDEPLOY_MODEL_SOURCE": "hf://acme/m", "MDEPLOY_MODEL_ID": "acme/other"}
    env["MDEPLOY_MODEL_REVISION"] = "0" * 40
    cmd = engine_command("plain", env, port=1)
    assert cmd[cmd.index("--model") + 1] == "acme/m"
    assert cmd[cmd.index("--revision") + 1] == "0" * 40
    with pytest.raises(EngineConfigError, match="unsupported scheme"):
        resolve_model("plain", {"MDEPLOY_MODEL_SOURCE": "ftp://x/m"})


def test_plain_prefers_a_location_over_an_id():
    assert (
        resolve_model("plain", {"MDEPLOY_MODEL": "/models/m", "MDEPLOY_MODEL_ID": "org/m"})
        == "/models/m"
    )
    # A cloud's own location is not used on another platform.
    assert (
        resolve_model("plain", {"AIP_STORAGE_URI": "gs://x", "MDEPLOY_MODEL_ID": "org/m"})
        == "org/m"
    )


def test_no_model_anywhere_is_an_error():
    with pytest.raises(EngineConfigError, match="MDEPLOY_MODEL"):
        resolve_model("plain", {})


def test_command_puts_the_plan_flags_then_loopback_host_and_port():
    env = {
        "MDEPLOY_MODEL_ID": "org/m",
        "MDEPLOY_ENGINE_ARGS": json.dumps(["--max-model-len", "4096"]),
    }
    cmd = engine_command("plain", env, port=8011)
    assert cmd[: len(DEFAULT_ENGINE_CMD)] == list(DEFAULT_ENGINE_CMD)
    assert cmd[len(DEFAULT_ENGINE_CMD) :] == [
        "--model",
        "org/m",
        "--max-model-len",
        "4096",
        "--host",
        "127.0.0.1",
        "--port",
        "8011",
    ]


def test_plan_may_name_the_model_but_not_the_port():
    env = {"MDEPLOY_ENGINE_ARGS": json.dumps(["--model", "/weights"])}
    cmd = engine_command("plain", env, port=8000)
    assert cmd.count("--model") == 1 and "/weights" in cmd
    with pytest.raises(EngineConfigError, match="--port"):
        engine_command(
            "plain", {"MDEPLOY_ENGINE_ARGS": '["--port=9000"]', "MDEPLOY_MODEL_ID": "m"}, port=1
        )
    with pytest.raises(EngineConfigError, match="--host"):
        engine_command(
            "plain",
            {"MDEPLOY_ENGINE_ARGS": '["--host", "0.0.0.0"]', "MDEPLOY_MODEL_ID": "m"},
            port=1,
        )


def test_engine_command_override_for_a_stand_in():
    env = {"MDEPLOY_ENGINE_CMD": json.dumps([sys.executable, "fake.py"]), "MDEPLOY_MODEL_ID": "m"}
    assert engine_command("plain", env, port=9)[:2] == [sys.executable, "fake.py"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MDEPLOY_ENGINE_ARGS", "--max-model-len 4096"),
        ("MDEPLOY_ENGINE_ARGS", '{"max": 1}'),
        ("MDEPLOY_ENGINE_CMD", "[1, 2]"),
    ],
)
def test_malformed_json_lists_are_refused(name, value):
    with pytest.raises(EngineConfigError, match=name):
        engine_command("plain", {name: value, "MDEPLOY_MODEL_ID": "m"}, port=1)


def test_secret_flag_values_are_masked_for_printing():
    cmd = ["vllm", "--api-key", "s3cr3t", "--hf-token=abc", "--model", "m", "--max-model-len", "8"]
    out = masked(cmd)
    assert "s3cr3t" not in out and "--hf-token=abc" not in out
    assert out == [
        "vllm",
        "--api-key",
        "***",
        "--hf-token=***",
        "--model",
        "m",
        "--max-model-len",
        "8",
    ]
