"""Prod guardrails (each rule, located) and the spec hash."""

from __future__ import annotations

import pytest

from mdeploy.errors import EXIT_POLICY, GuardrailError
from mdeploy.spec import check_guardrails, guardrail_issues, load_spec, spec_hash

SHA = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "ab" * 32

STRICT = f"""\
apiVersion: mdeploy/v1
kind: Deployment
guardrails: strict
metadata: {{name: tiny-chat}}
model:
  id: acme/tiny
  source: ./weights
  revision: {SHA}
serving:
  image: registry.example.com/vllm@sha256:{DIGEST}
  auth: iam
"""


def test_a_pinned_spec_passes(write):
    loaded = load_spec(write(STRICT))
    assert loaded.strict
    check_guardrails(loaded)  # local model source is fine
    assert guardrail_issues(loaded) == []


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        (f"revision: {SHA}", "revision: main", "model.revision", "40-character commit sha"),
        (f"revision: {SHA}", f"revision: {SHA[:12]}", "model.revision", "commit sha"),
        (f"revision: {SHA}", f"revision: {SHA}0", "model.revision", "commit sha"),
        (f"@sha256:{DIGEST}", ":latest", "serving.image", "not pinned by digest"),
        (f"@sha256:{DIGEST}", f"@sha256:{DIGEST[:-1]}", "serving.image", "not pinned"),
        (f"@sha256:{DIGEST}", f"@sha256:{DIGEST.upper()}", "serving.image", "not pinned"),
        ("auth: iam", "auth: none", "serving.auth", "unauthenticated"),
    ],
)
def test_each_rule_is_enforced_at_its_line(write, line_of, old, new, field, needle):
    text = STRICT.replace(old, new)
    with pytest.raises(GuardrailError) as info:
        check_guardrails(load_spec(write(text)))
    (issue,) = info.value.issues
    assert issue.field == field and needle in issue.message
    assert issue.line == line_of(text, new)
    assert info.value.exit_code == EXIT_POLICY


def test_tag_before_digest_is_allowed(write):
    text = STRICT.replace("vllm@sha256", "vllm:0.6.3@sha256")
    assert guardrail_issues(load_spec(write(text))) == []


def test_missing_image_points_at_serving(write, line_of):
    text = STRICT.replace(f"  image: registry.example.com/vllm@sha256:{DIGEST}\n", "")
    (issue,) = guardrail_issues(load_spec(write(text)))
    assert (issue.field, issue.line) == ("serving.image", line_of(text, "serving:"))
    assert "not set" in issue.message


def test_every_violation_is_listed_at_once(write):
    text = """\
    apiVersion: mdeploy/v1
    kind: Deployment
    metadata: {name: tiny-chat}
    model: {id: acme/tiny}
    serving: {auth: none, image: "vllm:latest"}
    environments: {prod: {}}
    """
    path = write(text)
    with pytest.raises(GuardrailError) as info:
        check_guardrails(load_spec(path, "prod"))
    assert [(i.line, i.field) for i in info.value.issues] == [
        (4, "model.revision"),
        (5, "serving.image"),
        (5, "serving.auth"),
    ]
    assert "refused by prod guardrails" in info.value.message
    assert not load_spec(path).strict  # the same spec without prod is not strict


def test_hash_ignores_layout_defaults_and_overlays(write):
    plain = "apiVersion: mdeploy/v1\nkind: Deployment\nmetadata: {name: a}\nmodel: {id: x/y}\n"
    same = """\
    # the same deployment, written differently
    model:
      id: x/y
      revision: main
    kind: Deployment
    apiVersion: mdeploy/v1
    metadata:
      name: a
    serving: {max_concurrency: 16}
    environments: {prod: {serving: {max_concurrency: 4}}}
    """
    a, b = load_spec(write(plain, "a.yaml")), load_spec(write(same, "b.yaml"))
    assert spec_hash(a) == spec_hash(b)
    assert len(spec_hash(a)) == 64 and int(spec_hash(a), 16) >= 0
    prod = load_spec(write(same, "b.yaml"), "prod")
    assert spec_hash(prod) != spec_hash(b)
    changed = load_spec(write(plain.replace("x/y", "x/z"), "c.yaml"))
    assert spec_hash(changed) != spec_hash(a)
