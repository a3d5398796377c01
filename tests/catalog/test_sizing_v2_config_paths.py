"""A model sized from its own config.json: `architecture.config` and `catalog models add`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalog.sizing_v2_configs import DEEPSEEK_V3, QWEN3_30B_A3B
from typer.testing import CliRunner

from mdeploy import catalog
from mdeploy.catalog._store import BUNDLED_DIR
from mdeploy.cli.app import app
from mdeploy.errors import InputError
from mdeploy.spec.models import ModelSpec

runner = CliRunner()


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch) -> Path:
    """The user's config home, away from the real one and from the package."""
    monkeypatch.delenv("MDEPLOY_CATALOG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "mdeploy"


def test_spec_architecture_config_is_read_relative_to_the_spec(tmp_path: Path):
    folder = tmp_path / "weights" / "acme"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(QWEN3_30B_A3B))
    spec = ModelSpec(id="acme/moe", architecture={"config": "weights/acme"})
    arch = catalog.resolve_model(spec, base_dir=tmp_path)
    assert arch.id == "acme/moe" and arch.params_b == pytest.approx(30.53, abs=0.01)
    with_size = ModelSpec(id="acme/moe", architecture={"config": "weights/acme/config.json",
                                                       "weights_gib": 60.0})  # fmt: skip
    assert catalog.resolve_model(with_size, base_dir=tmp_path).weights_gib == 60.0


def test_a_missing_config_path_names_the_field(tmp_path: Path):
    spec = ModelSpec(id="acme/moe", architecture={"config": "nowhere/config.json"})
    with pytest.raises(InputError, match=r"^model\.architecture\.config: .*does not exist"):
        catalog.resolve_model(spec, base_dir=tmp_path)


def test_architecture_needs_a_config_or_the_shape():
    with pytest.raises(ValueError, match="needs config: PATH"):
        ModelSpec(id="x", architecture={"params_b": 7.0})


def test_models_add_writes_the_user_file_and_plan_resolves_it(tmp_path: Path, user_dir: Path):
    (tmp_path / "config.json").write_text(json.dumps(DEEPSEEK_V3))
    result = runner.invoke(app, ["catalog", "models", "add", str(tmp_path), "--id", "acme/ds"])
    assert result.exit_code == 0, result.output
    assert "fine-grained MoE+MLA" in result.stdout
    stored = json.loads((user_dir / "models.user.json").read_text())
    assert [m["id"] for m in stored["models"]] == ["acme/ds"]
    found = catalog.get_architecture("ACME/DS")
    assert found is not None and found.attention == "mla" and found.checkpoint == "fp8"
    listed = json.loads(runner.invoke(app, ["catalog", "models", "--json"]).stdout)
    assert "acme/ds" in {m["id"] for m in listed}
    # Adding again replaces, never duplicates.
    runner.invoke(app, ["catalog", "models", "add", str(tmp_path), "--id", "acme/ds"])
    assert len(json.loads((user_dir / "models.user.json").read_text())["models"]) == 1
    assert not (BUNDLED_DIR / "models.user.json").exists()


def test_models_add_refuses_an_unsizable_config_with_the_field(tmp_path: Path, user_dir: Path):
    (tmp_path / "config.json").write_text(json.dumps({**QWEN3_30B_A3B, "hidden_size": "big"}))
    result = runner.invoke(app, ["catalog", "models", "add", str(tmp_path)])
    assert result.exit_code == 2
    assert "hidden_size" in result.stderr and "Traceback" not in result.output
    assert not (user_dir / "models.user.json").exists()


def test_models_add_never_writes_into_the_package(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MDEPLOY_CATALOG_DIR", str(BUNDLED_DIR))
    (tmp_path / "config.json").write_text(json.dumps(QWEN3_30B_A3B))
    result = runner.invoke(app, ["catalog", "models", "add", str(tmp_path)])
    assert result.exit_code == 2 and "inside the installed package" in result.stderr
    assert not (BUNDLED_DIR / "models.user.json").exists()


def test_a_catalog_entry_without_config_says_how_to_size_it(tmp_path: Path, monkeypatch):
    entry = {
        "id": "acme/big-3",
        "aliases": ["big-3"],
        "config": None,
        "checkpoints": [{"format": "fp8", "repo": "acme/big-3-fp8"}],
        "license": None,
    }
    sized = {"id": "acme/small", "config": QWEN3_30B_A3B, "license": None}  # fmt: skip
    (tmp_path / "models.json").write_text(json.dumps({"models": [entry, sized]}))
    monkeypatch.setenv("MDEPLOY_CATALOG_DIR", str(tmp_path))
    assert catalog.get_architecture("acme/small") is not None
    for name in ("BIG-3", "acme/big-3-fp8"):
        with pytest.raises(InputError, match=r"config\.json is not bundled") as info:
            catalog.resolve_model(ModelSpec(id=name))
        assert "model.architecture.config" in info.value.hint


@pytest.mark.parametrize(
    "text", ['{"models": "abc"}', '{"models": [1, 2]}', '{"models": [{"config": {}}]}', "[]", "{"]
)
def test_a_broken_models_file_is_an_input_error(tmp_path: Path, monkeypatch, text: str):
    (tmp_path / "models.user.json").write_text(text)
    monkeypatch.setenv("MDEPLOY_CATALOG_DIR", str(tmp_path))
    with pytest.raises(InputError, match="models"):
        catalog.get_architecture("anything")
