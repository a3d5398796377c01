"""
Hostile YAML is refused with exit 2 before anything is constructed.

"Fast" is a property of the limits (bytes, depth, aliases and nodes are counted while
composing, so the work is bounded), not a timing asserted here: a loaded CI box makes
wall-clock assertions flaky. The timings live in benchmarks/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdeploy.errors import EXIT_INPUT, InputError, SpecError
from mdeploy.spec import load_spec
from mdeploy.spec._yaml import MAX_ALIASES, MAX_BYTES, MAX_DEPTH, MAX_NODES


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def refused(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.exit_code == EXIT_INPUT
    return info.value


def only(err: SpecError):
    assert len(err.issues) == 1, err.message
    return err.issues[0]


def test_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:  # sparse: 64 MiB that would take long to parse
        f.truncate(64 * MAX_BYTES)
    assert "larger than 1024 KiB" in only(refused(path)).message


def test_just_over_the_limit_is_refused_and_just_under_is_read(tmp_path):
    over = tmp_path / "over.yaml"
    over.write_bytes(b"#" * (MAX_BYTES + 1))
    assert "larger than" in only(refused(over)).message
    under = tmp_path / "under.yaml"
    under.write_bytes(b"#" * MAX_BYTES)
    assert "empty file" in only(refused(under)).message


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "zero.yaml"  # a device reports size 0 and never ends
    path.symlink_to("/dev/zero")
    with pytest.raises(InputError, match=r"not a regular file \(a device\)") as info:
        load_spec(path)
    assert info.value.exit_code == EXIT_INPUT


def test_a_fifo_without_a_writer_is_refused_instead_of_blocking(tmp_path):
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    with pytest.raises(InputError, match=r"not a regular file \(a pipe\)"):
        load_spec(path)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"not a regular file \(a directory\)"):
        load_spec(tmp_path)


def test_binary_file_is_refused_with_the_nul_position(write, tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"apiVersion: mdeploy/v1\nkind: \x00\x01\x02")
    issue = only(refused(path))
    assert (issue.line, issue.column) == (2, 7)
    assert "binary" in issue.message


def test_invalid_utf8_is_refused_with_its_position(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("apiVersion: mdeploy/v1\nkind: café\n".encode("latin-1"))
    issue = only(refused(path))
    assert (issue.line, issue.column) == (2, 10)
    assert "UTF-8" in issue.message


def test_control_characters_are_refused(write):
    issue = only(refused(write("kind: a\x07b\n")))
    assert (issue.line, issue.column) == (1, 8)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 10_000])
def test_deep_flow_nesting_is_refused(write, depth):
    issue = only(refused(write("a: " + "[" * depth + "]" * depth + "\n")))
    assert f"deeper than {MAX_DEPTH}" in issue.message


def test_deep_block_nesting_is_refused(write):
    text = "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n"
    assert f"deeper than {MAX_DEPTH}" in only(refused(write(text))).message


def test_nesting_at_the_limit_is_allowed_by_the_reader(write):
    # MAX_DEPTH levels counting the root mapping: refused only as an unknown field.
    text = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    err = refused(write(text))
    assert all("deeper" not in i.message for i in err.issues)


def test_billion_laughs_is_refused_while_composing(write):
    issue = only(refused(write(billion_laughs())))
    assert f"more than {MAX_NODES} values once aliases expand" in issue.message
    assert issue.line is not None


def test_too_many_aliases_are_refused(write):
    text = "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    issue = only(refused(write(text)))
    assert f"more than {MAX_ALIASES} aliases" in issue.message
    assert issue.line == 2


def test_deep_expansion_through_aliases_is_refused(write):
    # Each part is 40 levels deep, legal alone; the alias puts one inside the other.
    deep = "[" * 40 + "x" + "]" * 40
    text = f"a: &d {deep}\nb: " + "[" * 40 + "*d" + "]" * 40 + "\n"
    issue = only(refused(write(text)))
    assert issue.message == f"nesting deeper than {MAX_DEPTH} levels once aliases expand"
    assert issue.line == 2


def test_recursive_alias_is_refused(write):
    issue = only(refused(write("a: &a [1, *a]\n")))
    assert "recursive alias" in issue.message and issue.line == 1


def test_a_wide_file_without_aliases_is_bounded_too(write):
    text = "a: [" + ",".join(["x"] * (MAX_NODES + 10)) + "]\n"
    issue = only(refused(write(text)))
    assert f"more than {MAX_NODES} values;" in issue.message


def test_python_tags_are_refused_and_never_run(write, tmp_path):
    marker = tmp_path / "pwned"
    text = f"apiVersion: !!python/object/apply:os.system ['touch {marker}']\n"
    issue = only(refused(write(text)))
    assert "unsupported tag" in issue.message and issue.field == "apiVersion"
    assert not marker.exists()
    assert "unsupported tag" in only(refused(write("a: !!python/name:os.system\n"))).message


@pytest.mark.parametrize("value", ["!env HF_TOKEN", "!!binary aGVsbG8=", "!!set {a, b}"])
def test_other_tags_are_refused(write, value):
    issue = only(refused(write(f"kind: {value}\n")))
    assert (issue.line, issue.column, issue.field) == (1, 7, "kind")


def test_multiple_documents_are_refused(write):
    issue = only(refused(write("apiVersion: mdeploy/v1\n---\nkind: Deployment\n")))
    assert (issue.line, issue.message) == (2, "more than one YAML document; a spec file holds one")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_documents_are_refused(write, text):
    issue = only(refused(write(text)))
    assert "empty" in issue.message or "top level must be a mapping" in issue.message


@pytest.mark.parametrize("text", ["hello\n", "- a\n- b\n"])
def test_top_level_must_be_a_mapping(write, text):
    assert "top level must be a mapping" in only(refused(write(text))).message


def test_hostile_inputs_exit_2_from_the_cli(write, tmp_path, cli):
    cases = [
        write(billion_laughs(), "bomb.yaml"),
        write("a: !!python/name:os.system\n", "tag.yaml"),
    ]
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x00\xff")
    for path in [*cases, binary]:
        result = cli("validate", path)
        assert result.exit_code == EXIT_INPUT, result.output
        assert "Traceback" not in result.output


def test_a_problem_inside_an_anchor_is_reported_once_per_use(write):
    err = refused(write("a: &a {k: !!binary aGk=}\nb: *a\nc: {<<: [*a, *a]}\n"))
    assert [(i.line, i.field) for i in err.issues] == [(1, "a.k"), (1, "b.k"), (1, "c.k")]
