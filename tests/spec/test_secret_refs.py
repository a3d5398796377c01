"""
Secret-reference and model-source shapes, built from what the targets declare (issue 12).

spec/models.py no longer hand-lists `aws-sm:`, `k8s:`, `s3://` ...: each target.py declares
`secret_ref_forms` (kubernetes an exact `secret_ref_patterns`) and `model_source_schemes`.
These tests pin that the texts read as before and that `validate` still refuses exactly the
shapes it refused, at the entry's line and field, exit 2, without printing the value.
"""

from __future__ import annotations

import json

import pytest

from mdeploy.errors import SpecError
from mdeploy.spec import load_spec, models

HEAD = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: chat}
model: {id: acme/x, architecture: {params_b: 7, layers: 32, attention_heads: 32, \
kv_heads: 8, head_dim: 128}}
"""


def test_texts_read_as_they_did_when_hand_written() -> None:
    assert models.SECRET_REF_FORMS == (
        "env:NAME, file:PATH, aws-sm:ARN, azure-kv:VAULT/NAME, gcp-sm:NAME, k8s:SECRET/KEY"
    )
    # Folder order (aws, azure, gcp): was "hf://, s3://, gs://, az://" when hand-written.
    assert models._SOURCE_FORMS == "hf://, s3://, az://, gs:// or a local path"
    source = models.ModelSpec.model_json_schema()["properties"]["source"]
    assert source["description"] == f"Where weights come from: {models._SOURCE_FORMS}."


@pytest.mark.parametrize(
    "ref",
    [
        "env:HF_TOKEN",
        "file:/run/secrets/hf",
        "aws-sm:arn:aws:secretsmanager:eu-west-3:123456789012:secret:hf",
        "aws-sm:team/api-key",
        "azure-kv:vault/name",
        "azure-kv:vault/name/0123abcd",
        "azure-kv:https://v.vault.azure.net/secrets/n",
        "gcp-sm:projects/p/secrets/hf/versions/1",
        "gcp-sm:hf",
        "k8s:db-creds/password",
        "k8s:a.b-c/KEY_1.x",
    ],
)
def test_references_every_target_reads_load(write, ref: str) -> None:
    spec = load_spec(write(HEAD + f"serving: {{secrets: {{K: '{ref}'}}}}\n")).spec
    assert spec.serving.secrets == {"K": ref}


@pytest.mark.parametrize(
    "ref",
    [
        "env:1BAD",  # not an environment variable name
        "aws-sm:",  # nothing after the scheme
        "azure-kv:vault",  # VAULT/NAME has a slash
        "k8s:Bad_Name/key",  # not a DNS-1123 Secret name: the exact pattern kubernetes declares
        "k8s:-db/key",
        "k8s:db-/key",
        "k8s:db/",
        "k8s:db/bad key",
        "vault:abc",  # no target declares it
        "hunter2",
    ],
)
def test_other_shapes_are_refused_at_the_entry(write, ref: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(HEAD + f"serving:\n  secrets:\n    K: '{ref}'\n"))
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (7, "serving.secrets.K")
    assert issue.message == (
        f"must be a reference ({models.SECRET_REF_FORMS}), not a value; the value was not printed"
    )


def test_validate_refuses_a_bad_k8s_name_with_exit_2_at_its_line(cli, write) -> None:
    path = write(HEAD + "serving:\n  secrets:\n    DB: k8s:Db_Creds/password\n")
    result = cli("validate", path, "--json")
    assert result.exit_code == 2
    (issue,) = json.loads(result.stdout)["issues"]
    assert (issue["line"], issue["field"]) == (7, "serving.secrets.DB")
    assert "Db_Creds" not in result.output


@pytest.mark.parametrize("source", ["hf://acme/x", "s3://b/m", "gs://b/m", "az://c/m", "/w/m"])
def test_sources_the_targets_declare_load(write, source: str) -> None:
    text = HEAD.replace("{id: acme/x,", f"{{id: acme/x, source: '{source}',")
    assert load_spec(write(text)).spec.model.source == source


@pytest.mark.parametrize("source", ["ftp://b/m", "lab://b/m", "s3://", "S3://b/m"])
def test_other_source_schemes_are_refused(write, source: str) -> None:
    text = HEAD.replace("{id: acme/x,", f"{{id: acme/x, source: '{source}',")
    with pytest.raises(SpecError) as info:
        load_spec(write(text))
    (issue,) = info.value.issues
    assert issue.field == "model.source"
    assert issue.message.endswith(f"must be {models._SOURCE_FORMS}")
