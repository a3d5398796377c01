"""A command whose optional extra is not installed exits 3 with the pip line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from mdeploy.cli._common import cli_errors, missing_package_hint

ROOT = Path(__file__).resolve().parents[2]

# Runs the CLI with an import hook that makes the named top-level packages unimportable,
# as on a core-only install (`pip install mdeploy` without extras).
_WITHOUT = """
import sys
blocked = set(sys.argv[1].split(","))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["mdeploy", *sys.argv[2:]]
from mdeploy.cli.app import main
main()
"""


def _run_without(packages: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT, packages, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_synth_without_pulumi_exits_3_with_the_extra_to_install():
    proc = _run_without("pulumi", "synth", str(ROOT / "examples/mistral-7b-eu.yaml"), "-t", "aws")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "'pulumi'" in proc.stderr and "mdeploy[aws]" in proc.stderr


def test_offline_planning_needs_no_extra():
    proc = _run_without(
        "pulumi,boto3,botocore,azure,google,uvicorn,httpx",
        "plan", str(ROOT / "examples/mistral-7b-eu.yaml"), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("module", "extra"),
    [("pulumi_aws.sagemaker", "mdeploy[aws]"), ("google.auth", "mdeploy[gcp]"),
     ("uvicorn", "mdeploy[serve]"), ("pulumi_random", "mdeploy[kubernetes]")],
)  # fmt: skip
def test_hint_names_the_extra(module, extra):
    assert extra in missing_package_hint(module)


def test_a_missing_mdeploy_module_is_a_bug_not_a_missing_extra():
    with pytest.raises(ModuleNotFoundError), cli_errors():
        raise ModuleNotFoundError("No module named 'mdeploy.nope'", name="mdeploy.nope")
    with pytest.raises(typer.Exit) as exit_info, cli_errors():
        raise ModuleNotFoundError("No module named 'boto3'", name="boto3")
    assert exit_info.value.exit_code == 3
