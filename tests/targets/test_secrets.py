"""One reader for env:/file: secrets, one trimming rule, used by every target."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from mdeploy.errors import InputError
from mdeploy.targets._secrets import read_local_secret

TARGETS_DIR = Path(__file__).resolve().parents[2] / "mdeploy" / "targets"


def test_whitespace_around_a_value_is_dropped_and_empty_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text("  hf_abc123 \r\n")
    monkeypatch.setenv("MDEPLOY_TEST_TOKEN", "\thf_abc123\n")
    assert read_local_secret("file", str(token)) == "hf_abc123"
    assert read_local_secret("env", "MDEPLOY_TEST_TOKEN") == "hf_abc123"
    monkeypatch.setenv("MDEPLOY_TEST_TOKEN", "  \n")
    assert read_local_secret("env", "MDEPLOY_TEST_TOKEN") is None
    assert read_local_secret("file", str(tmp_path / "absent")) is None
    monkeypatch.delenv("MDEPLOY_TEST_TOKEN")
    assert read_local_secret("env", "MDEPLOY_TEST_TOKEN") is None


def test_unreadable_file_names_the_field_never_the_value(tmp_path: Path) -> None:
    secret = tmp_path / "bin"
    secret.write_bytes(b"\xff\xfe secret-bytes")
    with pytest.raises(InputError, match=r"serving\.secrets\.HF_TOKEN: cannot read") as err:
        read_local_secret("file", str(secret), field="serving.secrets.HF_TOKEN")
    assert "secret-bytes" not in err.value.message
    with pytest.raises(InputError, match="not a local reference"):
        read_local_secret("aws-sm", "x")


def test_every_target_reads_the_same_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pulumi_mocks: Any
) -> None:
    from mdeploy.targets.aws.component import _read_local_secret as aws
    from mdeploy.targets.azure.rules import read_local_secret as azure
    from mdeploy.targets.gcp.component import _local_value as gcp
    from mdeploy.targets.kubernetes.component import _read_local as kubernetes

    token = tmp_path / "token"
    token.write_text("hf_abc123\n")
    got = {
        "azure": azure("file", str(token)),
        "gcp": gcp("HF_TOKEN", "file", str(token)),
        "kubernetes": kubernetes("file", str(token)),
        "aws": pulumi_mocks.resolve(aws("file", str(token), "HF_TOKEN")),
    }
    assert set(got.values()) == {"hf_abc123"}, got


def test_no_target_reads_environment_secrets_itself() -> None:
    """Only _secrets.py turns an env:/file: reference into a value (AST check)."""
    offenders = []
    for path in sorted(TARGETS_DIR.rglob("*component.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("read_text", "environ"):
                offenders.append(f"{path.relative_to(TARGETS_DIR)}:{node.lineno}")
    assert offenders == []
