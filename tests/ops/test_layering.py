"""
mdeploy/ops sits beside mdeploy/deploy (cli → deploy/image/ops → targets → plan → catalog →
spec): it imports neither deploy, image nor the CLI, and no cloud SDK, at any depth of the
module (function-level imports included).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

OPS = Path(__file__).resolve().parents[2] / "mdeploy" / "ops"
FORBIDDEN = ("mdeploy.deploy", "mdeploy.cli", "mdeploy.image", "mdeploy.serve", "pulumi",
             "boto3", "botocore", "azure", "google", "kubernetes")  # fmt: skip


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(OPS.glob("*.py")), ids=lambda p: p.name)
def test_ops_imports_only_lower_layers(path: Path) -> None:
    bad = [n for n in _imports(path) if n.startswith(FORBIDDEN)]
    assert bad == [], f"{path.name} imports {bad}"


def test_the_scan_sees_function_level_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from mdeploy.deploy.stack import up\n")
    assert "mdeploy.deploy.stack" in _imports(probe)
