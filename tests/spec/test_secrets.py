"""The one credential detector: refused anywhere in a spec, never printed back."""

from __future__ import annotations

import pytest

from mdeploy.errors import SpecError
from mdeploy.spec import load_spec
from mdeploy.spec._secrets import REDACTED, looks_like_secret, redact

HF = "hf_" + "Q7xWm2Lp9R" * 4
AKIA = "AKIA" + "J7Q2WZ8K4L6M3N5P"
GHP = "ghp_" + "x9Y8w7V6u5" * 4
SK = "sk-" + "proj_Z8k2Lq" * 3

HEAD = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: chat}
"""
MODEL = "model: {id: acme/x, architecture: {params_b: 7, layers: 32, attention_heads: 32, \
kv_heads: 8, head_dim: 128}}\n"


def refused(write, text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(write(text))
    return info.value


LABELLED = HEAD.replace("{name: chat}", f"{{name: chat, labels: {{team: {HF}}}}}")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (HEAD + MODEL + f"serving: {{engine_args: {{{SK.lower()}: 1}}}}\n", None),
        (HEAD + MODEL + f"placement: {{residency: [{AKIA}]}}\n", "placement.residency.0"),
        (HEAD + f"model: {{id: {HF}}}\n", "model.id"),
        (HEAD + MODEL + f"serving: {{{GHP}: 1}}\n", f"serving.{REDACTED}"),
        (HEAD + MODEL.replace("acme/x,", f"acme/x, revision: {GHP},"), "model.revision"),
        (LABELLED + MODEL, "metadata.labels.team"),
    ],
    ids=["engine-flag-name", "residency", "model-id", "unknown-key", "revision", "label"],
)
def test_a_token_anywhere_is_refused_and_never_echoed(write, text, field):
    err = refused(write, text)
    for token in (HF, AKIA, GHP, SK, SK.lower()):
        assert token not in err.message
        assert all(token not in i.field and token not in i.message for i in err.issues)
    assert any("looks like" in i.message for i in err.issues), err.message
    if field:
        assert field in {i.field for i in err.issues}, err.message


def test_password_in_a_source_url_is_refused(write):
    err = refused(write, HEAD + MODEL.replace("acme/x,", "acme/x, source: 's3://u:pw@bucket/x',"))
    (issue,) = [i for i in err.issues if i.field == "model.source"]
    assert "password in a URL" in issue.message and "pw@" not in err.message


def test_user_without_password_in_a_url_is_not_a_secret():
    assert looks_like_secret("hf://user@host/x") is None
    assert looks_like_secret("s3://user:secret@host/x") is not None


@pytest.mark.parametrize("name", ["bad-name", "1A", "A.B", "a b"])
def test_secret_names_must_be_environment_variable_names(write, name):
    err = refused(write, HEAD + MODEL + f"serving: {{secrets: {{'{name}': env:X}}}}\n")
    (issue,) = err.issues
    assert "environment variable names" in issue.message


@pytest.mark.parametrize("name", ["HF_TOKEN", "_X", "a1"])
def test_valid_secret_names_pass(write, name):
    load_spec(write(HEAD + MODEL + f"serving: {{secrets: {{{name}: env:X}}}}\n"))


def test_one_issue_where_a_credential_is_in_a_typed_field(write):
    err = refused(write, HEAD + MODEL + f"serving: {{max_concurrency: {HF}}}\n")
    assert len(err.issues) == 1 and "Hugging Face token" in err.issues[0].message


def test_redact_replaces_every_shape_and_url_passwords():
    text = f"a {HF} b {AKIA} c https://u:p4ss@h/x d {GHP}"
    out = redact(text)
    assert out == f"a {REDACTED} b {REDACTED} c https://{REDACTED}@h/x d {REDACTED}"
    assert redact("nothing to hide: hf_short, sk-1") == "nothing to hide: hf_short, sk-1"
