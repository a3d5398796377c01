"""
The dependency lower bounds in pyproject.toml are true: synth of every target works with the
lowest allowed versions of pulumi and the provider packages.

A virtual environment with exactly those versions (and the core dependencies as pyproject
states them) is built once under ~/.cache/mdeploy/lowest-deps/<key> (the key hashes the pins
and the Python version, so a changed bound builds a new one), then `mdeploy synth
--all-targets --json` runs there from this checkout (PYTHONPATH). Cold, it installs about
870 MB of provider packages: 248 s on the project's loaded 2-core machine with pip's download
cache warm (2026-12-06); warm, it costs one synth run (16 s). MDEPLOY_SKIP_LOWEST_DEPS=1
skips it (for offline machines; .ci/run does not set it). It needs the package index, as
`pip install` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "pulumi",
    "pulumi-aws",
    "pulumi-azure-native",
    "pulumi-gcp",
    "pulumi-kubernetes",
    "pulumi-random",
)
EXAMPLE = REPO / "examples" / "mistral-7b-eu.yaml"
INSTALL_TIMEOUT_S = 1800


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def lowest_pins(project: dict) -> dict[str, str]:
    """{package: lowest allowed version} for PACKAGES, from every extra that names them."""
    pins: dict[str, str] = {}
    for requirements in project["project"]["optional-dependencies"].values():
        for req in requirements:
            match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)", req)
            if match and match.group(1).lower() in PACKAGES:
                name, low = match.group(1).lower(), match.group(2)
                known = pins.get(name)
                if known is not None and known != low:
                    raise AssertionError(
                        f"{name}: lower bounds differ across extras: {known}, {low}"
                    )
                pins[name] = low
    return pins


def _venv(pins: dict[str, str], core: list[str]) -> Path:
    key_text = json.dumps([sorted(pins.items()), core, sys.version_info[:2]])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = root / "mdeploy" / "lowest-deps" / key
    python = venv / "bin" / "python"
    if (venv / "ready").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    constraints = venv / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--only-binary", ":all:", "-c", str(constraints), *core, *sorted(pins)]  # fmt: skip
    proc = subprocess.run(install, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if proc.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        pytest.fail(f"cannot install the lowest allowed versions {pins}:\n{proc.stderr[-3000:]}")
    (venv / "ready").write_text(constraints.read_text())
    return python


def _release(version: str) -> tuple[int, ...]:
    """(4, 1, 0) for "4.1" and "4.1.0": compare releases the way PEP 440 pads them."""
    parts = [int(p) for p in re.findall(r"\d+", version.split("+")[0])[:4]]
    return tuple(parts + [0] * (4 - len(parts)))


def test_lower_bounds_are_read_from_every_extra() -> None:
    pins = lowest_pins(_pyproject())
    assert set(pins) == set(PACKAGES)


def test_synth_every_target_with_the_lowest_allowed_versions() -> None:
    if os.environ.get("MDEPLOY_SKIP_LOWEST_DEPS") == "1":
        pytest.skip("MDEPLOY_SKIP_LOWEST_DEPS=1")
    project = _pyproject()
    pins = lowest_pins(project)
    python = _venv(pins, list(project["project"]["dependencies"]))
    probe = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    found = json.loads(subprocess.run(
        [str(python), "-c", probe, *pins], check=True, capture_output=True, text=True, timeout=60,
    ).stdout)  # fmt: skip
    for name, low in pins.items():  # exactly the bound: "4.1" is 4.1.0
        assert _release(found[name]) == _release(low), (name, found[name], low)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "")}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(
        [str(python), "-m", "mdeploy", "synth", str(EXAMPLE), "--all-targets", "--json"],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["skipped"] == []
    assert sorted(g["target"] for g in doc["targets"]) == ["aws", "azure", "gcp", "kubernetes"]
    assert all(g["resources"] for g in doc["targets"])
