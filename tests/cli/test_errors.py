"""Every failure: a message on stderr, the documented exit code and, with --json, an object."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mdeploy.cli import _common
from mdeploy.cli._common import cli_errors, print_json
from mdeploy.cli.app import app
from mdeploy.cli.deploy_cmd import _reply_json

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples/mistral-7b-eu.yaml")
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def error_of(result) -> dict:
    doc = json.loads(result.stdout)
    assert set(doc) == {"error"}
    assert set(doc["error"]) == {"code", "message", "hint", "issues"}
    assert doc["error"]["code"] == result.exit_code
    return doc["error"]


@pytest.fixture
def bad_spec(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(Path(EXAMPLE).read_text().replace("auth: key", "auth: maybe"))
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["plan"],
        ["compare"],
        ["synth", "--target", "aws"],
        ["up", "--target", "aws"],
        ["invoke", "--target", "aws"],
    ],
    ids=lambda a: a[0],
)
def test_invalid_spec_gives_a_json_error_object_with_located_issues(bad_spec, args):
    result = run(args[0], str(bad_spec), *args[1:], "--json")
    assert result.exit_code == 2
    error = error_of(result)
    (issue,) = error["issues"]
    assert issue["path"] == "serving.auth" and issue["line"] == 24 and issue["column"] == 9
    assert {"path", "line", "column", "message"} <= set(issue)
    assert "Traceback" not in result.output and "serving.auth" in result.stderr


@pytest.mark.parametrize("verb", ["plan", "compare", "synth", "up"])
def test_unknown_target_is_bad_input_exit_2(verb):
    result = run(verb, EXAMPLE, "--target", "nope", "--json")
    assert result.exit_code == 2
    assert "unknown target 'nope'" in error_of(result)["message"]


def test_guardrail_refusal_is_exit_4_with_issues(tmp_path):
    path = tmp_path / "strict.yaml"
    path.write_text(Path(EXAMPLE).read_text() + "guardrails: strict\n")
    result = run("plan", str(path), "--json")
    assert result.exit_code == 4
    assert error_of(result)["issues"][0]["path"] == "model.revision"


def test_invoke_has_json():
    assert "--json" in run("invoke", "--help").stdout


def test_invoke_json_reply_is_parsed_when_it_is_json():
    assert _reply_json("aws", [b'{"choices": []}'], stream=False)["reply"] == {"choices": []}
    streamed = _reply_json("aws", [b"data: a\n\n", b"data: b\n\n"], stream=True)
    assert streamed == {"target": "aws", "stream": True, "reply": "data: a\n\ndata: b\n\n"}


def test_an_unexpected_exception_is_exit_1_without_traceback(monkeypatch, capsys):
    monkeypatch.delenv("MDEPLOY_DEBUG", raising=False)
    with pytest.raises(typer.Exit) as info, cli_errors(json_out=True):
        raise ZeroDivisionError("boom")
    assert info.value.exit_code == 1
    out = capsys.readouterr()
    assert json.loads(out.out)["error"]["message"] == "internal error: ZeroDivisionError: boom"
    assert "MDEPLOY_DEBUG=1" in out.err and "Traceback" not in out.err


def test_mdeploy_debug_shows_the_real_exception(monkeypatch):
    monkeypatch.setenv("MDEPLOY_DEBUG", "1")
    with pytest.raises(ZeroDivisionError), cli_errors():
        raise ZeroDivisionError("boom")


def test_an_unexpected_exception_in_a_command_is_caught(monkeypatch):
    def explode(*_a, **_k):
        raise RuntimeError("kaput")

    monkeypatch.delenv("MDEPLOY_DEBUG", raising=False)
    monkeypatch.setattr("mdeploy.plan.make_plan", explode)
    result = run("plan", EXAMPLE)
    assert result.exit_code == 1 and "internal error: RuntimeError: kaput" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_intended_exits_pass_through():
    with pytest.raises(typer.Exit) as info, cli_errors(json_out=True):
        raise typer.Exit(4)
    assert info.value.exit_code == 4


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_non_finite_numbers_never_reach_stdout_as_json(capsys):
    with pytest.raises(typer.Exit) as info:
        print_json({"a": [1, {"price": float("inf")}]})
    assert info.value.exit_code == 2
    out = capsys.readouterr()
    error = json.loads(out.out, parse_constant=_refuse)["error"]  # strict JSON
    assert "a.1.price is not a finite number" in error["message"]


def test_error_messages_are_redacted_at_the_boundary(capsys):
    token = "hf_" + "Q7xWm2Lp9R" * 4
    with pytest.raises(typer.Exit), cli_errors(json_out=True):
        raise _common.MdeployError(f"bad value {token}", hint=f"not {token}")
    out = capsys.readouterr()
    assert token not in out.out + out.err and "<redacted>" in out.out


def test_a_fifo_as_spec_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    result = run("plan", str(fifo), "--json")
    assert result.exit_code == 2 and "not a regular file (a pipe)" in error_of(result)["message"]
