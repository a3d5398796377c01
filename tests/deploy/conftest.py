"""
Shared fixtures for the deploy tests: a spec on disk, a kubeconfig, the fake Pulumi CLI.

The fake CLI (fake_pulumi.py beside this file) is put on PATH as `bin/pulumi`; it logs each
call, so tests can check stack naming, config, plugins and the order of operations.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from httpfakes import JsonHandler
from typer.testing import CliRunner

HERE = Path(__file__).parent
DIGEST = "sha256:" + "5a" * 32
IMAGE = f"ghcr.io/mdeploy/vllm-adapter@{DIGEST}"
REVISION = "e0bc86c23ce5aae1db576c8cca6f06f1f73af2db"
CANARY = "hf_synthCANARYsecretVALUE0123456789abcdefgh"

SPEC = f"""\
apiVersion: mdeploy/v1
kind: Deployment
metadata:
  name: mistral-7b-chat
  labels: {{team: platform}}
model:
  id: mistralai/Mistral-7B-Instruct-v0.3
  source: hf://mistralai/Mistral-7B-Instruct-v0.3
  revision: {REVISION}
  max_context: 16384
serving:
  image: {IMAGE}
  max_concurrency: 8
  replicas: {{min: 1, max: 2}}
  auth: key
  secrets: {{HF_TOKEN: env:HF_TOKEN}}
placement:
  clouds: [aws, azure, gcp, coreweave]
  residency: [EU]
environments:
  prod:
    model: {{revision: main}}
"""

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: cw
contexts: [{name: cw, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "SERVER"}}]
users: [{name: u, user: {token: not-a-real-token}}]
"""


@pytest.fixture
def facts() -> SimpleNamespace:
    """The spec's pinned image, digest and the canary secret value (conftest is not importable)."""
    return SimpleNamespace(canary=CANARY, digest=DIGEST, image=IMAGE, revision=REVISION)


@pytest.fixture(scope="session")
def spec_text() -> str:
    """The spec's YAML, for module-scoped fixtures that write it themselves."""
    return SPEC


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    """A Mistral-7B spec for all four targets, EU residency, image pinned by digest."""
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="session")
def kube_api() -> Iterator[str]:
    """
    A stand-in Kubernetes API server on 127.0.0.1 that lists one GPU node per catalog region
    of the coreweave target (zone label = the region), so `up`'s placement check passes in
    processes the tests start too. The check's refusals are tested in test_kubernetes_nodes.
    """
    from mdeploy.catalog import load_regions

    zones = sorted(r for (target, r) in load_regions() if target == "coreweave")
    items = [
        {"metadata": {"name": f"gpu-{i}", "labels": {"topology.kubernetes.io/zone": zone}}}
        for i, zone in enumerate(zones)
    ]
    node_list = {"kind": "NodeList", "apiVersion": "v1", "items": items}

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/api/v1/nodes":
                self._send(200, node_list)
            else:
                self._send(404, {})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kube_api: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG.replace("SERVER", kube_api))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@dataclass
class FakePulumi:
    """The fake CLI's state folder and helpers to script and read it."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state"

    def calls(self) -> list[list[str]]:
        """argv of every call so far, without the --non-interactive flag."""
        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        lines = log.read_text().splitlines()
        return [[a for a in json.loads(ln)["argv"] if a != "--non-interactive"] for ln in lines]

    def commands(self) -> list[str]:
        """The first word(s) of each call: 'stack select', 'up', 'plugin install'..."""
        out = []
        for argv in self.calls():
            words = [a for a in argv if not a.startswith("-")]
            out.append(" ".join(words[:2]) if words[:1] in (["stack"], ["plugin"]) else words[0])
        return out

    def passphrase_seen(self) -> bool:
        log = (self.state / "calls.jsonl").read_text().splitlines()
        return all(json.loads(ln)["passphrase"] for ln in log if "version" not in ln)

    def stack(self, name: str) -> dict[str, Any]:
        return json.loads((self.state / f"{name}.stack.json").read_text())

    def script(self, monkeypatch: pytest.MonkeyPatch, *, events=None, outputs=None) -> None:
        """Script the next operations' resource steps and stack outputs."""
        if events is not None:
            path = self.root / "events.json"
            path.write_text(json.dumps(events))
            monkeypatch.setenv("FAKE_PULUMI_EVENTS", str(path))
        if outputs is not None:
            path = self.root / "outputs.json"
            path.write_text(json.dumps(outputs))
            monkeypatch.setenv("FAKE_PULUMI_OUTPUTS", str(path))


@pytest.fixture
def fake_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kubeconfig: Path) -> FakePulumi:
    """Fake `pulumi` first on PATH, a passphrase, HF_TOKEN and a private MDEPLOY_HOME."""
    root = tmp_path / "fake"
    (root / "bin").mkdir(parents=True)
    wrapper = root / "bin" / "pulumi"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "fake_pulumi.py"}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PULUMI_STATE", str(root / "state"))
    monkeypatch.setenv("MDEPLOY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-passphrase")
    monkeypatch.setenv("HF_TOKEN", CANARY)
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    return FakePulumi(root)


@pytest.fixture
def cli() -> Any:
    """Invoke the mdeploy CLI in-process; returns the click Result (stdout/stderr apart)."""
    from mdeploy.cli.app import app

    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def python_only_path(tmp_path: Path) -> str:
    """A PATH holding only the interpreter (so no `pulumi` can be found)."""
    bin_dir = tmp_path / "pyonly"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    assert shutil.which("pulumi", path=str(bin_dir)) is None
    return str(bin_dir)


@pytest.fixture(autouse=True)
def _no_cloud_quota_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    `up` asks the cloud's quota service first; here no test may reach a real cloud, so each
    cloud's `quota_problem` answers "no problem" unless a test scripts it (test_preflight).
    """
    from mdeploy.targets.aws.target import AwsTarget
    from mdeploy.targets.azure.target import AzureTarget
    from mdeploy.targets.gcp.target import GcpTarget

    for target in (AwsTarget, AzureTarget, GcpTarget):
        monkeypatch.setattr(target, "quota_problem", lambda self, args: None)
