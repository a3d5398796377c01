"""Shared fixtures for the spec layer tests: spec files on disk and the CLI runner."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mdeploy.cli.app import app

DIGEST = "ab" * 32
SHA = "0123456789abcdef0123456789abcdef01234567"

# A valid spec whose model is not in the catalog: the architecture makes it resolve, so
# the tests do not depend on the catalog's contents. The prod overlay passes guardrails.
VALID = f"""\
apiVersion: mdeploy/v1
kind: Deployment
metadata:
  name: tiny-chat
  labels: {{team: platform}}
model:
  id: acme/tiny-7b
  source: hf://acme/tiny-7b
  revision: main
  max_context: 8192
  architecture:
    params_b: 7.0
    layers: 32
    attention_heads: 32
    kv_heads: 8
    head_dim: 128
serving:
  replicas: {{min: 1, max: 2}}
  auth: key
  secrets:
    HF_TOKEN: env:HF_TOKEN
placement:
  clouds: [aws, gcp]
  residency: [EU]
environments:
  staging:
    serving:
      replicas: {{min: 1, max: 1}}
  prod:
    model:
      revision: {SHA}
    serving:
      image: registry.example.com/mdeploy/vllm@sha256:{DIGEST}
    placement:
      residency: [FR]
"""


@pytest.fixture
def valid_text() -> str:
    return VALID


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write a (dedented) spec into tmp_path and return its path."""

    def _write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def line_of() -> Callable[[str, str], int]:
    """1-based line of the only line of `text` that contains `needle`."""

    def _line_of(text: str, needle: str) -> int:
        lines = [
            i for i, line in enumerate(textwrap.dedent(text).splitlines(), 1) if needle in line
        ]
        assert len(lines) == 1, f"{needle!r} found on lines {lines}"
        return lines[0]

    return _line_of


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run `mdeploy ARGS...` in-process; the result has exit_code, stdout and stderr."""
    runner = CliRunner()

    def _run(*args: str) -> object:
        return runner.invoke(app, [str(a) for a in args])

    return _run
