"""Strict per-cloud stack settings: declared keys only, documented from one source."""

from __future__ import annotations

import importlib

import pytest

from mdeploy.errors import InputError
from mdeploy.targets._config import COMMON_KEYS, StackSettings, settings_table

MODELS = {
    "aws": "AwsSettings",
    "azure": "AzureStackConfig",
    "gcp": "GcpSettings",
    "kubernetes": "KubernetesSettings",
}


def _model(cloud: str) -> tuple[object, type[StackSettings]]:
    module = importlib.import_module(f"mdeploy.targets.{cloud}.settings")
    return module, getattr(module, MODELS[cloud])


@pytest.mark.parametrize("cloud", sorted(MODELS))
def test_the_docstring_table_is_the_rendered_one(cloud: str) -> None:
    module, model = _model(cloud)
    table = settings_table(model, markdown=False)
    assert table in (module.__doc__ or ""), f"regenerate the table in {cloud}/settings.py"
    assert all(len(line) <= 96 for line in table.splitlines())


@pytest.mark.parametrize("cloud", sorted(MODELS))
def test_every_key_is_documented_and_camel_case(cloud: str) -> None:
    _, model = _model(cloud)
    for name, field in model.model_fields.items():
        assert field.description, f"{cloud}: {name} has no description"
        assert field.alias and field.alias[0].islower() and "_" not in field.alias
    markdown = settings_table(model)
    assert markdown.count("\n") == len(model.model_fields) + 1
    assert all(f"`mdeploy:{key}`" in markdown for key in model.stack_keys())


@pytest.mark.parametrize("cloud", sorted(MODELS))
def test_defaults_parse_and_common_keys_pass(cloud: str) -> None:
    _, model = _model(cloud)
    common = {f"mdeploy:{key}": "x" for key in COMMON_KEYS}
    assert model.from_stack({**common, "aws:region": "eu-west-3", "mdeploy:cpu": ""}) == (
        model.from_stack({})
    )


@pytest.mark.parametrize("cloud", sorted(MODELS))
def test_a_key_of_another_cloud_is_refused_with_a_suggestion(cloud: str) -> None:
    _, model = _model(cloud)
    first = model.stack_keys()[0]
    typo = first[:-1] + ("x" if first[-1] != "x" else "y")
    with pytest.raises(InputError, match=f"unknown stack config mdeploy:{typo}") as err:
        model.from_stack({f"mdeploy:{typo}": "v"})
    assert f"did you mean mdeploy:{first}?" in (err.value.hint or "")
    stranger = "ingressHost" if cloud != "kubernetes" else "vpcSubnetIds"
    with pytest.raises(InputError, match=stranger):
        model.from_stack({stranger: "v"})


def test_errors_name_the_key_and_never_the_value() -> None:
    _, model = _model("aws")
    with pytest.raises(InputError) as err:
        model.from_stack({"mdeploy:canaryPercent": "s3cr3t-value"})
    assert err.value.message == "mdeploy:canaryPercent: expected a whole number"
    with pytest.raises(InputError, match="allowed range is 1–50"):
        model.from_stack({"canaryPercent": "51"})
    with pytest.raises(InputError, match="expected true or false"):
        model.from_stack({"enableNetworkIsolation": "maybe"})
