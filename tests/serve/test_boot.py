"""
mdeploy.serve.boot as a module: the one place that finds the weights and builds the engine
flags (the image start and the adapter's owned engine both call it), and that it stays
runnable in the image: the standard library only, nothing else from mdeploy.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mdeploy.serve import boot
from mdeploy.serve.boot import BootError, engine_args, find_model, model_root

BOOT = Path(boot.__file__)


def model_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text("{}")
    return root


def test_model_root_takes_the_shallowest_config_in_sorted_order(tmp_path: Path) -> None:
    model_dir(tmp_path / "b" / "model")
    model_dir(tmp_path / "a" / "model" / "tokenizer")  # deeper: never wins
    model_dir(tmp_path / "c" / "model")
    assert model_root(tmp_path) == tmp_path / "b" / "model"
    model_dir(tmp_path)
    assert model_root(tmp_path) == tmp_path


def test_model_root_looks_three_levels_deep_then_gives_the_tree(tmp_path: Path) -> None:
    model_dir(tmp_path / "x" / "y")
    assert model_root(tmp_path) == tmp_path / "x" / "y"
    deep = tmp_path / "deep"
    model_dir(deep / "1" / "2" / "3")
    assert model_root(deep) == deep
    assert model_root(tmp_path / "absent") == tmp_path / "absent"


def test_every_rule_in_order(tmp_path: Path) -> None:
    sagemaker = model_dir(tmp_path / "sm")
    azure = model_dir(tmp_path / "az" / "model")
    env = {
        "MDEPLOY_MODEL": "/explicit",
        "AIP_STORAGE_URI": "gs://b/m",
        "AZUREML_MODEL_DIR": str(tmp_path / "az"),
        "MDEPLOY_MODEL_SOURCE": "hf://acme/src",
        "MDEPLOY_MODEL_ID": "acme/id",
    }
    order = [
        ("explicit", "/explicit"),
        ("vertex", "gs://b/m"),
        ("azureml", str(azure)),
        ("sagemaker", str(sagemaker)),
        ("source", "acme/src"),
        ("hub", "acme/id"),
    ]
    keys = ["MDEPLOY_MODEL", "AIP_STORAGE_URI", "AZUREML_MODEL_DIR", None, "MDEPLOY_MODEL_SOURCE"]
    for expected, key in zip(order, [*keys, "MDEPLOY_MODEL_ID"], strict=True):
        assert find_model(env, sagemaker_dir=sagemaker) == expected
        if key is None:
            sagemaker = tmp_path / "empty-sm"
        else:
            env.pop(key)
    with pytest.raises(BootError) as info:
        find_model(env, sagemaker_dir=sagemaker)
    assert info.value.code == boot.NO_MODEL and "MDEPLOY_MODEL_SOURCE" in str(info.value)


def test_a_platform_looks_at_its_own_location_only(tmp_path: Path) -> None:
    sagemaker = model_dir(tmp_path / "sm")
    env = {"AIP_STORAGE_URI": "gs://b/m", "MDEPLOY_MODEL_ID": "acme/id"}
    assert find_model(env, platform="plain", sagemaker_dir=sagemaker) == ("hub", "acme/id")
    assert find_model(env, platform="sagemaker", sagemaker_dir=sagemaker)[0] == "sagemaker"
    assert find_model(env, platform="vertex", sagemaker_dir=sagemaker) == ("vertex", "gs://b/m")


def test_object_store_trees_are_downloaded_when_a_downloader_is_given(tmp_path: Path) -> None:
    fetched: list[str] = []
    nowhere = tmp_path / "no-sagemaker"

    def download(uri: str) -> Path:
        fetched.append(uri)
        return model_dir(tmp_path / "weights" / "wrapped").parent

    wrapped = str(tmp_path / "weights" / "wrapped")
    for name, uri in (("AIP_STORAGE_URI", "gs://b/m"), ("MDEPLOY_MODEL_SOURCE", "s3://b/m")):
        env = {name: uri}
        assert find_model(env, sagemaker_dir=nowhere, download=download)[1] == wrapped
        assert find_model(env, sagemaker_dir=nowhere)[1] == uri  # the adapter: as is
    assert fetched == ["gs://b/m", "s3://b/m"]


def test_sagemaker_dir_comes_from_the_environment_when_not_given(tmp_path: Path) -> None:
    sagemaker = model_dir(tmp_path / "sm" / "inner")
    env = {"MDEPLOY_SAGEMAKER_MODEL_DIR": str(tmp_path / "sm")}
    assert find_model(env) == ("sagemaker", str(sagemaker))


def test_engine_args_are_idempotent_and_the_plan_wins(tmp_path: Path) -> None:
    env = {
        "MDEPLOY_ENGINE_ARGS": json.dumps(["--max-num-seqs=16"]),
        "MDEPLOY_MODEL_REVISION": "r1",
        "SM_VLLM_MAX_NUM_SEQS": "64",
        "SM_VLLM_SWAP_SPACE": "4",
    }
    first = engine_args("acme/m", env)
    assert first == [
        "--model", "acme/m", "--max-num-seqs=16", "--revision", "r1", "--swap-space", "4",
    ]  # fmt: skip
    assert engine_args(None, {**env, "MDEPLOY_ENGINE_ARGS": json.dumps(first)}) == first
    local = engine_args(str(tmp_path), env)
    assert "--revision" not in local
    assert "--revision" not in engine_args(None, {**env, "MDEPLOY_ENGINE_ARGS": json.dumps(local)})
    assert "--revision" not in engine_args("gs://b/m", env)


def test_boot_imports_the_standard_library_only() -> None:
    """It runs in the image before anything else, and the image has no other mdeploy."""
    tree = ast.parse(BOOT.read_text())
    top = set()
    for node in tree.body:  # module level: the lazy boto3 imports sit inside functions
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert top <= set(sys.stdlib_module_names) | {"__future__"}, top


def test_runs_as_a_module_and_refuses_bad_usage(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mdeploy.serve.boot", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "usage" in proc.stderr and "start" in proc.stderr
