"""
The whole promote → rollback → ls flow through the CLI with nothing replaced inside mdeploy:
the stack is opened by the Automation API driving the fake `pulumi` CLI
(tests/deploy/fake_pulumi.py), its outputs build the Vertex target's GcpOps, and GcpOps talks
HTTP to the Vertex REST fake (tests/targets/test_gcp_ops.py) on 127.0.0.1. Only Google's
token source is a stub (google.auth.default), as in the Vertex ops tests, and the
operations are polled every 10 ms instead of 5 s.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ops.fakes import vertex_api
from typer.testing import CliRunner

from mdeploy.cli.app import app

gcp = pytest.importorskip("targets.test_gcp_ops")
pytest.importorskip("pulumi_gcp")

FAKE_PULUMI = Path(__file__).resolve().parents[1] / "deploy" / "fake_pulumi.py"
STACK = "mistral-7b-chat-default-gcp"
SPEC = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: mistral-7b-chat}
model:
  id: mistralai/Mistral-7B-Instruct-v0.3
  revision: e0bc86c23ce5aae1db576c8cca6f06f1f73af2db
  version: "2"
  max_context: 16384
serving:
  image: ghcr.io/mdeploy/vllm-adapter@sha256:%s
  auth: iam
placement:
  clouds: [gcp]
  residency: [EU]
rollout:
  steps: [25, 100]
  bake_minutes: 0
""" % ("5a" * 32)


@pytest.fixture
def vertex(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The Vertex fake with one deployed model at 100 %."""
    api = vertex_api()
    server = ThreadingHTTPServer(("127.0.0.1", 0), gcp._handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(gcp.API_URL_ENV, api.url)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def deployed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake pulumi first on PATH, holding the stack as `up` left it; Google creds stubbed."""
    root = tmp_path / "fake"
    (root / "bin").mkdir(parents=True)
    wrapper = root / "bin" / "pulumi"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_PULUMI}" "$@"\n')
    wrapper.chmod(0o755)
    state = root / "state"
    state.mkdir()
    outputs = {"endpoint_name": {"value": gcp.ENDPOINT, "secret": False}}
    (state / f"{STACK}.stack.json").write_text(
        json.dumps({"config": {}, "outputs": outputs, "history": [], "resources": 3})
    )
    adc = tmp_path / "adc.json"
    adc.write_text("{}")
    for name, value in {
        "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_PULUMI_STATE": str(state),
        "MDEPLOY_HOME": str(tmp_path / "home"),
        "PULUMI_CONFIG_PASSPHRASE": "test-passphrase",
        "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
        "GOOGLE_CLOUD_PROJECT": "my-proj-123",
        "CI": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    import google.auth

    monkeypatch.setattr(google.auth, "default", lambda **_: (gcp.StubCredentials(), "p"))
    from mdeploy.targets.gcp.ops import GcpOps

    built = GcpOps.from_outputs.__func__  # type: ignore[attr-defined]

    def fast(cls: type[GcpOps], outputs: dict[str, Any]) -> GcpOps:
        ops = built(cls, outputs)
        ops.poll_interval_s = 0.01  # the fake's operations finish at the first poll
        return ops

    monkeypatch.setattr(GcpOps, "from_outputs", classmethod(fast))
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    return spec


def run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_promote_rollback_and_ls_through_the_stack_outputs(deployed: Path, vertex: Any) -> None:
    result = run("promote", deployed, "-t", "gcp", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["stack"] == STACK and report["result"] == "promoted"
    assert report["from"] == "m-default-v1" and report["removed"] == ["m-default-v1"]
    new = report["to"]
    assert [d["displayName"] for d in vertex.deployed] == [new]
    assert list(vertex.split.values()) == [100]
    patches = [json.loads(r.body) for r in vertex.requests if r.method == "PATCH"]
    assert [sorted(p["trafficSplit"].values()) for p in patches] == [[25, 75], [0, 100]]

    rows = json.loads(run("ls", "--json").stdout)["stacks"]
    assert rows[0]["stack"] == STACK and rows[0]["region"] == "europe-west4"
    assert rows[0]["hourly_usd"] and rows[0]["promotion"] == "done"

    back = run("rollback", deployed, "-t", "gcp", "--yes", "--json")
    assert back.exit_code == 0, back.stderr
    assert json.loads(back.stdout)["result"] == "rolled-back"
    assert [d["displayName"] for d in vertex.deployed] == ["m-default-v1"]


def test_a_smoke_failure_through_the_platform_rolls_back_and_exits_1(
    deployed: Path, vertex: Any
) -> None:
    vertex.predict_status = 500
    result = run("promote", deployed, "-t", "gcp", "--yes", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["result"] == "rolled-back" and "model crashed" in report["error"]
    assert [d["displayName"] for d in vertex.deployed] == ["m-default-v1"]
    assert list(vertex.split.values()) == [100]


def test_a_stack_never_deployed_is_a_clear_error(deployed: Path, vertex: Any) -> None:
    state = Path(os.environ["FAKE_PULUMI_STATE"])
    (state / f"{STACK}.stack.json").unlink()
    result = run("promote", deployed, "-t", "gcp", "--yes")
    assert result.exit_code == 1 and "never deployed" in result.stderr
    assert vertex.requests == []
