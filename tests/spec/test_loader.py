"""load_spec: valid specs, and every kind of error at its exact line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdeploy.errors import InputError, SpecError
from mdeploy.spec import LoadedSpec, load_spec

HEAD = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata:
  name: tiny-chat
model:
  id: acme/tiny-7b
"""


def issues_of(path: Path, env: str | None = None) -> list:
    with pytest.raises(SpecError) as info:
        load_spec(path, env)
    return info.value.issues


def only_issue(path: Path):
    issues = issues_of(path)
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


def test_valid_spec_loads_with_its_context(write, valid_text):
    path = write(valid_text)
    loaded = load_spec(path)
    assert isinstance(loaded, LoadedSpec)
    assert loaded.spec.metadata.name == "tiny-chat"
    assert loaded.spec.model.architecture.kv_heads == 8
    assert loaded.spec.serving.replicas.max == 2
    assert loaded.env is None and loaded.strict is False
    assert loaded.base_dir == path.parent
    assert loaded.spec.environments.keys() == {"staging", "prod"}


def test_locate_dotted_and_sequence_paths(write, valid_text, line_of):
    loaded = load_spec(write(valid_text))
    assert loaded.locate("serving.secrets.HF_TOKEN") == (line_of(valid_text, "HF_TOKEN"), 15)
    assert loaded.locate(("placement", "clouds", 1)) == (line_of(valid_text, "clouds"), 17)
    assert loaded.locate("placement.clouds.1")[0] == line_of(valid_text, "clouds")
    # Not written: the closest written ancestor.
    serving_line = line_of(valid_text, "replicas: {min: 1, max: 2}") - 1
    assert loaded.locate("serving.image") == (serving_line, 1)
    issue = loaded.issue("model.revision", "needs a sha")
    line = line_of(valid_text, "revision: main")
    assert str(issue) == f"{loaded.path}:{line}:13: model.revision: needs a sha"


def test_unknown_field_suggests_the_close_name(write):
    path = write(HEAD + "  revison: main\n")
    issue = only_issue(path)
    assert (issue.line, issue.column, issue.field) == (7, 3, "model.revison")
    assert issue.message == "unknown field; did you mean 'revision'?"
    assert issue.file == str(path)


def test_unknown_field_without_close_match_lists_the_fields(write):
    issue = only_issue(write(HEAD + "serving:\n  zzz: 1\n"))
    assert (issue.line, issue.field) == (8, "serving.zzz")
    assert issue.message.startswith("unknown field; expected one of: engine, image,")


def test_python_field_name_is_not_accepted_for_an_alias(write):
    text = HEAD.replace("apiVersion:", "api_version:")
    issues = issues_of(write(text))
    assert {(i.line, i.column, i.field, i.message) for i in issues} == {
        (1, 1, "api_version", "unknown field; did you mean 'apiVersion'?"),
        (1, 1, "apiVersion", "required field is missing"),
    }


def test_missing_field_points_at_the_parent_mapping(write):
    text = HEAD.replace("  name: tiny-chat\n", "  labels: {a: b}\n")
    issue = only_issue(write(text))
    assert (issue.line, issue.column, issue.field) == (3, 1, "metadata.name")
    assert issue.message == "required field is missing"


def test_missing_top_level_field_points_at_line_one(write):
    issue = only_issue(write("apiVersion: mdeploy/v1\nkind: Deployment\nmetadata: {name: x}\n"))
    assert (issue.line, issue.field) == (1, "model")


def test_missing_field_in_a_list_item_points_at_the_item(write):
    text = HEAD + "placement:\n  kubernetes:\n    pools:\n      - name: a\n        gpu: H100\n"
    issues = issues_of(write(text))
    assert {(i.line, i.field) for i in issues} == {
        (10, "placement.kubernetes.pools.0.gpu_count"),
        (10, "placement.kubernetes.pools.0.country"),
    }


def test_scalar_errors_point_at_the_value(write):
    issue = only_issue(write(HEAD + "  dtype: bf16\n"))
    assert (issue.line, issue.column, issue.field) == (7, 10, "model.dtype")
    assert issue.message.startswith("Input should be 'bfloat16', 'float16'")


def test_model_validator_error_points_at_the_mapping_key(write):
    issue = only_issue(write(HEAD + "serving:\n  replicas:\n    min: 3\n    max: 1\n"))
    assert (issue.line, issue.column, issue.field) == (8, 3, "serving.replicas")
    assert issue.message == "max (1) is below min (3)"  # "Value error, " stripped


def test_union_branch_errors_fold_into_one(write):
    issue = only_issue(write(HEAD + "serving:\n  engine_args:\n    foo: [1, 2]\n"))
    assert (issue.line, issue.field) == (9, "serving.engine_args.foo")
    assert issue.message == "Input should be a string, an integer, a number or a boolean"


def test_norway_problem_gets_a_quoting_hint(write):
    issue = only_issue(write(HEAD + "placement:\n  residency: [EU, NO]\n"))
    assert (issue.line, issue.column, issue.field) == (8, 19, "placement.residency.1")
    assert 'quote it: "NO"' in issue.message
    load_spec(write(HEAD + 'placement:\n  residency: [EU, "NO"]\n'))  # quoted is fine


def test_dates_stay_text(write):
    loaded = load_spec(write(HEAD + "  revision: 2024-06-01\n"))
    assert loaded.spec.model.revision == "2024-06-01"


def test_many_errors_reported_at_once_in_line_order(write):
    text = """\
    apiVersion: mdeploy/v2
    kind: Deployment
    metadata:
      name: Not_DNS
    model:
      id: acme/tiny
      dtype: fp4
      max_context: 16
    serving:
      auth: maybe
      gpu_memory_utilization: 1.5
    placement:
      clouds: [aws, moon]
    rollout:
      steps: [50, 10]
    """
    issues = issues_of(write(text))
    assert [(i.line, i.field) for i in issues] == [
        (1, "apiVersion"),
        (4, "metadata.name"),
        (7, "model.dtype"),
        (8, "model.max_context"),
        (10, "serving.auth"),
        (11, "serving.gpu_memory_utilization"),
        (13, "placement.clouds.1"),
        (15, "rollout.steps"),
    ]
    message = SpecError(issues).message
    assert message.startswith("8 problem(s) in spec:")


def test_duplicate_key_is_an_error(write):
    issue = only_issue(write(HEAD + "  id: other/model\n"))
    assert (issue.line, issue.column, issue.field) == (7, 3, "model.id")
    assert issue.message == "duplicate key (first at line 6)"


def test_non_text_keys_are_errors(write):
    issues = issues_of(write(HEAD + "metadata2:\n  1: x\n  on: y\n"))
    assert [(i.line, i.message) for i in issues] == [
        (8, "key '1' is not text; quote it"),
        (9, "key 'on' is not text; quote it"),
    ]


def test_yaml_syntax_error_has_the_problem_position(write):
    issue = only_issue(write(HEAD + "  dtype: [bfloat16\n"))
    assert issue.line == 8 and issue.column == 1
    assert issue.message.startswith("YAML syntax: did not find expected ',' or ']'")
    assert "at line 7" in issue.message

    issue = only_issue(write(HEAD + "\tkind: x\n"))
    assert (issue.line, issue.column) == (7, 1)
    assert "tab" in issue.message


def test_merge_keys_apply_and_explicit_keys_win(write):
    text = """\
    apiVersion: mdeploy/v1
    kind: Deployment
    metadata: {name: tiny-chat}
    model: {id: acme/tiny}
    placement:
      kubernetes:
        pools:
          - &pool {name: a, gpu: H100, gpu_count: 8, country: DE}
          - <<: *pool
            name: b
            country: FR
    """
    pools = load_spec(write(text)).spec.placement.kubernetes.pools
    assert [(p.name, p.gpu, p.country) for p in pools] == [("a", "H100", "DE"), ("b", "H100", "FR")]


def test_missing_file_and_directory_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_spec(tmp_path / "absent.yaml")
    with pytest.raises(InputError):
        load_spec(tmp_path)


SECRET = "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH"


def test_secret_value_in_secrets_is_refused_at_its_line_and_never_echoed(write):
    text = HEAD + f"serving:\n  secrets:\n    HF_TOKEN: {SECRET}\n    OK: env:OK\n"
    issue = only_issue(write(text))
    assert (issue.line, issue.column, issue.field) == (9, 15, "serving.secrets.HF_TOKEN")
    assert "must be a reference" in issue.message
    with pytest.raises(SpecError) as info:
        load_spec(write(text))
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.issues)
    assert SECRET not in (info.value.hint or "")


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (SECRET, "Hugging Face token"),
        ("sk-proj-abcdefghijklmnopqrstuvwx", "OpenAI-style API key"),
        ("AKIAIOSFODNN7EXAMPLE", "AWS access key id"),
        ("Bearer hf_abcdefghijklmnopqrstuvwxyz0123456789", "Hugging Face token"),
    ],
)
def test_tokens_in_engine_args_are_refused_without_echo(write, value, kind):
    text = HEAD + f"serving:\n  engine_args:\n    enforce-eager: true\n    tokenizer: '{value}'\n"
    issue = only_issue(write(text))
    assert (issue.line, issue.column, issue.field) == (10, 16, "serving.engine_args.tokenizer")
    assert kind in issue.message and "serving.secrets" in issue.message
    assert value not in issue.message


def test_credential_flags_are_refused_in_engine_args(write):
    issue = only_issue(write(HEAD + "serving:\n  engine_args:\n    api-key: hunter2\n"))
    assert (issue.line, issue.field) == (9, "serving.engine_args.api-key")
    assert "serving.secrets.VLLM_API_KEY" in issue.message and "hunter2" not in issue.message


def test_ordinary_engine_args_pass(write):
    args = "{enable-prefix-caching: true, max-num-seqs: 64, tokenizer: hf_x}"
    text = HEAD + f"serving:\n  engine_args: {args}\n"
    assert load_spec(write(text)).spec.serving.engine_args["max-num-seqs"] == 64


def test_validation_messages_never_carry_pydantic_input(write):
    # A secret-looking string where an int is expected: pydantic's input must not leak.
    text = HEAD + f"  max_context: {SECRET}\nserving:\n  max_concurrency: '{SECRET}'\n"
    with pytest.raises(SpecError) as info:
        load_spec(write(text))
    assert SECRET not in info.value.message
    assert len(info.value.issues) == 2
