"""The published JSON Schema: well-formed, complete, and it agrees with the loader."""

from __future__ import annotations

import json

import pytest
import yaml

from mdeploy.errors import SpecError
from mdeploy.spec import load_spec, schema
from mdeploy.spec.models import Deployment, Placement, Serving


def validator():
    """A draft 2020-12 validator (jsonschema comes with the dev extras, via moto)."""
    jsonschema = pytest.importorskip("jsonschema")
    doc = schema()
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc)


def test_schema_header_and_top_level_fields():
    doc = schema()
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].startswith("urn:mdeploy:")
    assert doc["type"] == "object" and doc["additionalProperties"] is False
    assert set(doc["required"]) == {"apiVersion", "kind", "metadata", "model"}
    assert "api_version" not in doc["properties"]
    assert set(doc["properties"]) == {f.alias or n for n, f in Deployment.model_fields.items()}
    assert doc["properties"]["apiVersion"]["const"] == "mdeploy/v1"


def test_every_model_field_is_documented():
    defs = schema()["$defs"]
    for model in (Serving, Placement):
        props = defs[model.__name__]["properties"]
        assert set(props) == set(model.model_fields)
        assert all(p.get("description") for p in props.values()), model.__name__


def test_schema_accepts_what_the_loader_accepts(write, valid_text):
    load_spec(write(valid_text))
    assert list(validator().iter_errors(yaml.safe_load(valid_text))) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("kind: Deployment", "kind: Service"),
        ("  revision: main", "  revison: main"),
        ("auth: key", "auth: maybe"),
        ("max_context: 8192", "max_context: 10"),
    ],
)
def test_schema_rejects_what_the_loader_rejects(write, valid_text, old, new):
    bad = valid_text.replace(old, new)
    assert bad != valid_text
    assert list(validator().iter_errors(yaml.safe_load(bad)))
    with pytest.raises(SpecError):
        load_spec(write(bad))


def test_schema_command_prints_the_schema(cli):
    result = cli("schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(json.dumps(schema()))
